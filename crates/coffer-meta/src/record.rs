//! The records the metadata store keeps, and their stored encoding.
//!
//! Records are stored as JSON objects with a version marker `"v"` beside their fields
//! ([`encode`], [`decode`]). A record without `"v"` was written before the marker existed
//! and has layout 1 (the layout did not change when the marker was added). A record whose
//! `"v"` is newer than this code knows is refused as [`MetaError::Corrupt`] rather than
//! half-read. Readers ignore unknown fields, so older code can still read layout-1 records
//! written with the marker.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{MetaError, MetaResult};

/// Layout version of [`ObjectRecord`], [`UploadRecord`], [`PartRecord`] and
/// [`BucketEncryption`] as stored. Frozen: bump it (and teach [`decode`] the old layout)
/// when a stored field changes meaning or type.
pub const RECORD_VERSION: u32 = 1;

/// The name of the version marker field in a stored record.
pub const VERSION_FIELD: &str = "v";

/// How a segment's data key is protected (and what responses report).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "mode")]
pub enum SseRecord {
    /// SSE-S3: the data key is wrapped by the service key.
    #[serde(rename = "AES256")]
    S3,
    /// SSE-KMS: wrapped by a CMK of Coffer's KMS under `context` (which includes
    /// `aws:s3:arn`).
    #[serde(rename = "aws:kms")]
    Kms {
        key_arn: String,
        context: BTreeMap<String, String>,
    },
    /// SSE-C: wrapped by a key derived from the customer's key; only a keyed fingerprint of
    /// that key is stored.
    #[serde(rename = "SSE-C")]
    C { fingerprint: String },
}

/// One encrypted blob of an object: the whole object, or one multipart part.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Segment {
    /// Blob name under the blob store.
    pub blob: String,
    /// The C2SP context's `version` (object version id or upload id).
    pub version: String,
    pub part_number: u32,
    pub plain_len: u64,
    pub blob_len: u64,
    pub header_len: u64,
    /// MD5 of the part's plaintext, hex (the part ETag).
    pub etag: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checksums {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crc32: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crc32c: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crc64nvme: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
    /// `FULL_OBJECT` or `COMPOSITE`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kind: Option<String>,
}

/// Standard headers stored with an object.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    /// RFC 7231 date string, as received.
    pub expires: Option<String>,
    pub website_redirect_location: Option<String>,
    pub user_metadata: BTreeMap<String, String>,
}

/// A visible object: its metadata and the segments holding its encrypted bytes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectRecord {
    pub version_id: String,
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    /// Unix milliseconds.
    pub last_modified: i64,
    pub headers: ObjectHeaders,
    pub checksums: Checksums,
    pub sse: SseRecord,
    pub bucket_key_enabled: bool,
    pub segments: Vec<Segment>,
    /// Written while the bucket's versioning was `Enabled`: its S3 version id is
    /// `version_id`. `false` (every record from before versioning): the `null` version.
    #[serde(default, skip_serializing_if = "is_false")]
    pub versioned: bool,
    /// A delete marker: no data, no segments; the key reads as deleted while it is the
    /// latest version.
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete_marker: bool,
    /// Object Lock retention of this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Object Lock legal hold of this version.
    #[serde(default, skip_serializing_if = "is_false")]
    pub legal_hold: bool,
    /// The object's tags (key → value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An Object Lock retention mode.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum RetentionMode {
    /// Deletable before the date only with `s3:BypassGovernanceRetention` and
    /// `x-amz-bypass-governance-retention: true`.
    #[serde(rename = "GOVERNANCE")]
    Governance,
    /// Deletable by nobody before the date; the date can only be extended.
    #[serde(rename = "COMPLIANCE")]
    Compliance,
}

impl RetentionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionMode::Governance => "GOVERNANCE",
            RetentionMode::Compliance => "COMPLIANCE",
        }
    }
}

/// A version's Object Lock retention: `mode` until `until` (Unix ms).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Retention {
    pub mode: RetentionMode,
    pub until: i64,
}

impl ObjectRecord {
    /// The version id S3 clients see: `version_id`, or `null` for an unversioned write.
    pub fn s3_version_id(&self) -> &str {
        if self.versioned {
            &self.version_id
        } else {
            "null"
        }
    }

    /// A delete marker with internal version id `version_id`, made at `now` (Unix ms).
    pub fn new_delete_marker(version_id: &str, now: i64) -> ObjectRecord {
        ObjectRecord {
            version_id: version_id.to_owned(),
            size: 0,
            etag: String::new(),
            last_modified: now,
            headers: ObjectHeaders::default(),
            checksums: Checksums::default(),
            sse: SseRecord::S3,
            bucket_key_enabled: false,
            segments: Vec::new(),
            versioned: false,
            delete_marker: true,
            retention: None,
            legal_hold: false,
            tags: BTreeMap::new(),
        }
    }

    /// Why this version may not be deleted or overwritten at `now` (Unix ms), if it may
    /// not: a legal hold, COMPLIANCE retention, or GOVERNANCE retention without
    /// `bypass_governance`.
    pub fn lock_refusal(&self, now: i64, bypass_governance: bool) -> Option<&'static str> {
        if self.legal_hold {
            return Some("the object version is under a legal hold");
        }
        match self.retention {
            Some(r) if r.until > now => match r.mode {
                RetentionMode::Compliance => {
                    Some("the object version is under COMPLIANCE retention")
                }
                RetentionMode::Governance if !bypass_governance => {
                    Some("the object version is under GOVERNANCE retention")
                }
                RetentionMode::Governance => None,
            },
            _ => None,
        }
    }
}

/// A multipart upload in progress.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadRecord {
    pub bucket: String,
    pub key: String,
    /// Unix milliseconds.
    pub initiated: i64,
    pub headers: ObjectHeaders,
    pub sse: SseRecord,
    pub bucket_key_enabled: bool,
    pub checksum_algorithm: Option<String>,
    /// `FULL_OBJECT` or `COMPOSITE` (`None`: from before the field, COMPOSITE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
    /// Object Lock retention and legal hold the completed object gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub legal_hold: bool,
    /// Tags the completed object gets (`x-amz-tagging` at creation).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// One uploaded part of a multipart upload.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartRecord {
    pub segment: Segment,
    /// Unix milliseconds.
    pub last_modified: i64,
    pub checksums: Checksums,
}

/// A bucket's default encryption.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BucketEncryption {
    /// `AES256` or `aws:kms`.
    pub algorithm: String,
    pub kms_key_id: Option<String>,
    pub bucket_key_enabled: bool,
}

/// A bucket as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: String,
    /// Unix milliseconds.
    pub created: i64,
}

/// The stored form of `record`: its JSON object with `"v": RECORD_VERSION` added.
pub fn encode<T: Serialize>(record: &T) -> MetaResult<String> {
    let mut value = serde_json::to_value(record)
        .map_err(|e| MetaError::Backend(format!("encode record: {e}")))?;
    let serde_json::Value::Object(fields) = &mut value else {
        return Err(MetaError::Backend(
            "a record must encode as a JSON object".into(),
        ));
    };
    fields.insert(VERSION_FIELD.to_owned(), RECORD_VERSION.into());
    Ok(value.to_string())
}

/// Reads a stored record (see the module docs for the version rules).
pub fn decode<T: DeserializeOwned>(stored: &str) -> MetaResult<T> {
    let mut value: serde_json::Value = serde_json::from_str(stored)
        .map_err(|e| MetaError::Corrupt(format!("record is not JSON: {e}")))?;
    let serde_json::Value::Object(fields) = &mut value else {
        return Err(MetaError::Corrupt("record is not a JSON object".into()));
    };
    let version = match fields.remove(VERSION_FIELD) {
        None => 1,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| MetaError::Corrupt("record version is not a number".into()))?,
    };
    if version != u64::from(RECORD_VERSION) {
        return Err(MetaError::Corrupt(format!(
            "record version {version} is not supported (this code reads {RECORD_VERSION})"
        )));
    }
    serde_json::from_value(value).map_err(|e| MetaError::Corrupt(format!("record: {e}")))
}

/// The version marker of a stored record, if it has one (for tests and diagnostics).
pub fn stored_version(stored: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(stored)
        .ok()?
        .get(VERSION_FIELD)?
        .as_u64()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn encryption() -> BucketEncryption {
        BucketEncryption {
            algorithm: "aws:kms".into(),
            kms_key_id: Some("k".into()),
            bucket_key_enabled: true,
        }
    }

    #[test]
    fn encoded_records_carry_the_marker_and_round_trip() {
        let stored = encode(&encryption()).unwrap();
        assert_eq!(stored_version(&stored), Some(u64::from(RECORD_VERSION)));
        assert_eq!(decode::<BucketEncryption>(&stored).unwrap(), encryption());
    }

    #[test]
    fn records_without_a_marker_are_layout_one() {
        // Exactly what the server wrote before the marker existed.
        let legacy = r#"{"algorithm":"aws:kms","kms_key_id":"k","bucket_key_enabled":true}"#;
        assert_eq!(decode::<BucketEncryption>(legacy).unwrap(), encryption());
    }

    #[test]
    fn unknown_versions_and_garbage_are_corrupt_not_panics() {
        let future = r#"{"v":2,"algorithm":"AES256","kms_key_id":null,"bucket_key_enabled":false}"#;
        for bad in [
            future,
            "",
            "[]",
            "{\"v\":\"1\"}",
            "{\"algorithm\":1}",
            "\u{0}",
        ] {
            assert!(
                matches!(decode::<BucketEncryption>(bad), Err(MetaError::Corrupt(_))),
                "{bad:?} must be refused as corrupt"
            );
        }
    }
}
