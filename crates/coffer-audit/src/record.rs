//! The record (spec/audit-log.md §2), its canonical serialization (§3), and the hash and MAC
//! that chain and authenticate it (§4).

use std::collections::BTreeMap;

use aws_lc_rs::{digest, hmac};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{AuditError, Result};

/// Record and anchor format version (`"v"`). Frozen: a change of layout is a new version.
pub const FORMAT_VERSION: u32 = 1;

/// `prev` of the very first record: 64 zeros (spec §4).
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest line (record bytes, without the newline) a reader accepts (spec §3).
pub const MAX_LINE: usize = 1 << 20;

/// Longest string field of an event, in bytes.
pub const MAX_FIELD: usize = 4096;

/// Most encryption-context entries an event may carry.
pub const MAX_CONTEXT_ENTRIES: usize = 64;

/// Domain separation of the record MAC from the anchor MAC (spec §4). Frozen.
const RECORD_MAC_LABEL: &[u8] = b"coffer-audit/record/v1\n";

/// Whether a record is written before the operation runs or after it (spec §2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Written before the operation; if it cannot be written the operation is refused.
    #[default]
    Request,
    /// Written after the operation with its outcome.
    Response,
}

/// What happened: `pending` for the request phase, `success` or `failure` for the response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    #[default]
    Pending,
    Success,
    Failure,
}

/// What the server reports; the log turns it into a [`Record`].
///
/// Never put key material, secrets, signatures or object data in any field: the log stores
/// the strings as given (spec §10).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Event {
    /// When the operation happened; `None` = when the log receives the event.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub time: Option<OffsetDateTime>,
    pub request_id: String,
    pub phase: Phase,
    /// The caller's ARN, or `None` when unauthenticated.
    pub identity: Option<String>,
    /// The access key id (never the secret).
    pub access_key: Option<String>,
    /// `ip:port` of the client.
    pub source: Option<String>,
    /// `s3:PutObject`, `kms:Decrypt`, `admin:CreateUser`, `auth:SignatureDoesNotMatch`…
    pub action: String,
    /// ARN or path of the object, bucket, key or user acted on.
    pub resource: Option<String>,
    pub key_id: Option<String>,
    pub key_version: Option<u32>,
    /// The encryption context. The log keeps only the keys, unless it was opened with
    /// `include_context_values`.
    pub context: Vec<(String, String)>,
    pub outcome: Outcome,
    /// The AWS error code of a failure (`AccessDenied`, `NoSuchKey`…).
    pub error_code: Option<String>,
}

/// One line of the log (spec §2). Field order is the serialization order and is frozen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub v: u32,
    pub seq: u64,
    pub time: String,
    pub request_id: String,
    pub phase: Phase,
    pub identity: Option<String>,
    pub access_key: Option<String>,
    pub source: Option<String>,
    pub action: String,
    pub resource: Option<String>,
    pub key_id: Option<String>,
    pub key_version: Option<u32>,
    pub context_keys: Vec<String>,
    pub context_values: Option<BTreeMap<String, String>>,
    pub outcome: Outcome,
    pub error_code: Option<String>,
    pub prev: String,
    pub hash: String,
    pub mac: String,
}

/// The record without `hash` and `mac`: the bytes the hash and the MAC cover (spec §4).
#[derive(Serialize)]
struct Body<'a> {
    v: u32,
    seq: u64,
    time: &'a str,
    request_id: &'a str,
    phase: Phase,
    identity: &'a Option<String>,
    access_key: &'a Option<String>,
    source: &'a Option<String>,
    action: &'a str,
    resource: &'a Option<String>,
    key_id: &'a Option<String>,
    key_version: Option<u32>,
    context_keys: &'a [String],
    context_values: &'a Option<BTreeMap<String, String>>,
    outcome: Outcome,
    error_code: &'a Option<String>,
    prev: &'a str,
}

fn json_error(e: serde_json::Error) -> AuditError {
    // Serializing strings, integers and string maps cannot fail; if it ever does, refuse.
    AuditError::Failed(format!("serialize record: {e}"))
}

impl Record {
    /// The canonical bytes of the record without `hash` and `mac` (spec §3, §4).
    pub fn body_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&Body {
            v: self.v,
            seq: self.seq,
            time: &self.time,
            request_id: &self.request_id,
            phase: self.phase,
            identity: &self.identity,
            access_key: &self.access_key,
            source: &self.source,
            action: &self.action,
            resource: &self.resource,
            key_id: &self.key_id,
            key_version: self.key_version,
            context_keys: &self.context_keys,
            context_values: &self.context_values,
            outcome: self.outcome,
            error_code: &self.error_code,
            prev: &self.prev,
        })
        .map_err(json_error)
    }

    /// The canonical line, without the newline.
    pub fn line_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(json_error)
    }

    /// Sets `hash` and `mac` from the other fields.
    pub(crate) fn seal(&mut self, key: &hmac::Key) -> Result<()> {
        let body = self.body_bytes()?;
        self.hash = hex::encode(digest::digest(&digest::SHA256, &body));
        self.mac = hex::encode(record_mac(key, &body));
        Ok(())
    }

    /// Parsed `time`.
    pub fn timestamp(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.time, &Rfc3339).ok()
    }

    /// Builds the seq-less record the writer thread completes, checking the event against
    /// spec §2 (lengths, phase/outcome pairing) in the caller's thread.
    pub(crate) fn from_event(ev: Event, include_context_values: bool) -> Result<Record> {
        let invalid = |m: String| AuditError::InvalidEvent(m);
        let time = format_time(ev.time.unwrap_or_else(OffsetDateTime::now_utc))
            .ok_or_else(|| invalid("time outside years 0000-9999".into()))?;
        if ev.action.is_empty() {
            return Err(invalid("empty action".into()));
        }
        match (ev.phase, ev.outcome) {
            (Phase::Request, Outcome::Pending)
            | (Phase::Response, Outcome::Success | Outcome::Failure) => {}
            (p, o) => {
                return Err(invalid(format!(
                "outcome {o:?} in phase {p:?}: a request is pending, a response succeeds or fails"
            )))
            }
        }
        let strings = [
            ("request_id", Some(&ev.request_id)),
            ("action", Some(&ev.action)),
            ("identity", ev.identity.as_ref()),
            ("access_key", ev.access_key.as_ref()),
            ("source", ev.source.as_ref()),
            ("resource", ev.resource.as_ref()),
            ("key_id", ev.key_id.as_ref()),
            ("error_code", ev.error_code.as_ref()),
        ];
        for (name, value) in strings {
            if value.is_some_and(|v| v.len() > MAX_FIELD) {
                return Err(invalid(format!("{name} longer than {MAX_FIELD} bytes")));
            }
        }
        if ev.context.len() > MAX_CONTEXT_ENTRIES {
            return Err(invalid(format!(
                "more than {MAX_CONTEXT_ENTRIES} encryption-context entries"
            )));
        }
        let mut context = BTreeMap::new();
        for (k, v) in ev.context {
            if k.len() > MAX_FIELD || v.len() > MAX_FIELD {
                return Err(invalid(format!(
                    "encryption-context entry longer than {MAX_FIELD} bytes"
                )));
            }
            if context.insert(k, v).is_some() {
                return Err(invalid("duplicate encryption-context key".into()));
            }
        }
        let context_keys: Vec<String> = context.keys().cloned().collect();
        Ok(Record {
            v: FORMAT_VERSION,
            seq: 0,
            time,
            request_id: ev.request_id,
            phase: ev.phase,
            identity: ev.identity,
            access_key: ev.access_key,
            source: ev.source,
            action: ev.action,
            resource: ev.resource,
            key_id: ev.key_id,
            key_version: ev.key_version,
            context_keys,
            // Without the option the values are dropped here, before the writer sees them.
            context_values: include_context_values.then_some(context),
            outcome: ev.outcome,
            error_code: ev.error_code,
            prev: String::new(),
            hash: String::new(),
            mac: String::new(),
        })
    }
}

pub(crate) fn record_mac(key: &hmac::Key, body: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(RECORD_MAC_LABEL);
    ctx.update(body);
    ctx.sign()
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC, milliseconds): the only accepted form.
pub fn format_time(t: OffsetDateTime) -> Option<String> {
    let t = t.to_offset(time::UtcOffset::UTC);
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    ))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses one line (without its newline) and checks everything that does not need the key
/// or the neighbouring records (spec §9, steps 1-3): size, JSON, version, canonical bytes,
/// field forms. The chain, hash and MAC are checked by the verifier.
pub fn parse_line(line: &[u8]) -> Result<Record, String> {
    if line.len() > MAX_LINE {
        return Err(format!("line longer than {MAX_LINE} bytes"));
    }
    if line.is_empty() {
        return Err("empty line".into());
    }
    let record: Record = serde_json::from_slice(line).map_err(|e| format!("not a record: {e}"))?;
    if record.v != FORMAT_VERSION {
        return Err(format!("unknown record version {}", record.v));
    }
    match record.line_bytes() {
        Ok(canonical) if canonical == line => {}
        _ => return Err("not in canonical form (re-serialization differs)".into()),
    }
    match record.timestamp().and_then(format_time) {
        Some(t) if t == record.time => {}
        _ => {
            return Err(format!(
                "time {:?} is not RFC 3339 UTC with ms",
                record.time
            ))
        }
    }
    if !is_hex64(&record.prev) || !is_hex64(&record.hash) || !is_hex64(&record.mac) {
        return Err("prev, hash and mac must be 64 lowercase hex digits".into());
    }
    if !matches!(
        (record.phase, record.outcome),
        (Phase::Request, Outcome::Pending) | (Phase::Response, Outcome::Success | Outcome::Failure)
    ) {
        return Err("phase and outcome do not match".into());
    }
    if record.seq == 0 {
        return Err("seq 0 (seqs start at 1)".into());
    }
    let mut sorted = record.context_keys.clone();
    sorted.sort();
    sorted.dedup();
    if sorted != record.context_keys {
        return Err("context_keys not sorted and unique".into());
    }
    if let Some(values) = &record.context_values {
        if !values.keys().eq(record.context_keys.iter()) {
            return Err("context_values keys differ from context_keys".into());
        }
    }
    Ok(record)
}

/// Checks `hash` and `mac` of a parsed record (spec §9, steps 5-6).
pub(crate) fn check_seal(record: &Record, key: &hmac::Key) -> Result<(), String> {
    let body = record.body_bytes().map_err(|e| e.to_string())?;
    let hash = hex::encode(digest::digest(&digest::SHA256, &body));
    // The hash is public (anyone may recompute it), so a plain comparison is fine.
    if hash != record.hash {
        return Err("hash does not match the record's contents (record edited)".into());
    }
    let tag = hex::decode(&record.mac).map_err(|_| "mac is not hex".to_owned())?;
    let mut ctx_body = RECORD_MAC_LABEL.to_vec();
    ctx_body.extend_from_slice(&body);
    // hmac::verify compares in constant time.
    hmac::verify(key, &ctx_body, &tag)
        .map_err(|_| "MAC does not verify (record forged or edited, or wrong key)".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn key() -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32])
    }

    fn sample() -> Record {
        let mut r = Record::from_event(
            Event {
                time: Some(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()),
                request_id: "req-1".into(),
                action: "kms:Decrypt".into(),
                context: vec![("b".into(), "2".into()), ("a".into(), "1".into())],
                ..Event::default()
            },
            false,
        )
        .unwrap();
        r.seq = 1;
        r.prev = ZERO_HASH.into();
        r.seal(&key()).unwrap();
        r
    }

    #[test]
    fn canonical_line_parses_back_and_verifies() {
        let r = sample();
        let line = r.line_bytes().unwrap();
        assert!(line.starts_with(b"{\"v\":1,\"seq\":1,\"time\":\"2023-11-14T22:13:20.000Z\""));
        let back = parse_line(&line).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.context_keys, ["a", "b"]);
        assert_eq!(back.context_values, None);
        check_seal(&back, &key()).unwrap();
        // The line is the body with hash and mac appended.
        let body = r.body_bytes().unwrap();
        assert_eq!(&line[..body.len() - 1], &body[..body.len() - 1]);
    }

    #[test]
    fn non_canonical_forms_are_rejected() {
        let line = String::from_utf8(sample().line_bytes().unwrap()).unwrap();
        for bad in [
            line.replace(",\"seq\"", ", \"seq\""),
            line.replace("\"identity\":null,", ""),
            line.replace("\"v\":1", "\"v\":2"),
            line.replace("\"}", "\",\"extra\":1}"),
            line.replace(".000Z", "Z"),
            line.replace("req-1", "req\\u002d1"),
            format!("{line} "),
            String::new(),
        ] {
            assert!(parse_line(bad.as_bytes()).is_err(), "accepted {bad}");
        }
        assert!(parse_line(&[0xff, b'{']).is_err());
    }

    #[test]
    fn events_break_rules_are_refused() {
        let bad = [
            Event::default(), // empty action
            Event {
                action: "s3:GetObject".into(),
                outcome: Outcome::Success, // request phase must be pending
                ..Event::default()
            },
            Event {
                action: "s3:GetObject".into(),
                phase: Phase::Response, // response must succeed or fail
                ..Event::default()
            },
            Event {
                action: "x".repeat(MAX_FIELD + 1),
                ..Event::default()
            },
            Event {
                action: "kms:Encrypt".into(),
                context: vec![("k".into(), "1".into()), ("k".into(), "2".into())],
                ..Event::default()
            },
        ];
        for ev in bad {
            assert!(matches!(
                Record::from_event(ev, false),
                Err(AuditError::InvalidEvent(_))
            ));
        }
    }
}
