//! The request parsers of `coffer_iam::request`, which the audit layer, the front's SigV4
//! scope checks, the IAM condition keys and the KMS API's verifier all read requests through:
//! `Query::parse` (+ `decode`, `decode_or_keep`), `Authorization::parse`,
//! `CredentialScope::parse` and `access_key`. No panic, and each agrees with an independent
//! model:
//!
//! - a query built by percent-encoding fuzzed `(name, value)` pairs parses back to them
//!   (`get` finds the first value of each name), and `decode` inverts the encoding;
//! - `decode` accepts exactly the strings whose escapes are `%` + two hex digits and whose
//!   result is UTF-8, and then agrees with a byte-by-byte model; `decode_or_keep` is
//!   `decode` or the input unchanged;
//! - an `Authorization` header assembled from fuzzed components parses back to them, and any
//!   parsed header's algorithm is its first word;
//! - a credential parses as a scope exactly when it has five `/`-separated parts, which join
//!   back to it;
//! - `access_key` of a request is the first scope part of its credential (header first, else
//!   the presigned `X-Amz-Credential`).
//!
//! Input: byte 0 = mode (low 2 bits); the rest is lossy UTF-8, split at `\0` into fields.
#![no_main]

use coffer_iam::request::{
    access_key, decode, decode_or_keep, Authorization, CredentialScope, Query,
};
use libfuzzer_sys::fuzz_target;

/// Form encoding of every byte that is not unreserved (the inverse `decode` must have).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The model of `decode`: `+` is a space, `%` must be followed by two hex digits.
fn decode_model(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (h, l) = (hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?);
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    let fields: Vec<&str> = text.split('\0').collect();
    match head & 3 {
        0 => {
            // Raw query strings and escapes: no panic, and decode agrees with its model.
            let q = Query::parse(Some(&text));
            for kv in text.split('&').filter(|kv| !kv.is_empty()) {
                let name = kv.split_once('=').map_or(kv, |(k, _)| k);
                assert!(q.get(&decode_or_keep(name)).is_some(), "pair {kv:?} lost");
            }
            assert_eq!(decode(&text), decode_model(&text), "decode({text:?})");
            assert_eq!(
                decode_or_keep(&text),
                decode(&text).unwrap_or_else(|| text.clone())
            );
        }
        1 => {
            // Encoded pairs round-trip through the query parser.
            let pairs: Vec<(&str, &str)> = fields
                .chunks(2)
                .map(|c| (c[0], c.get(1).copied().unwrap_or("")))
                .filter(|(k, _)| !k.is_empty())
                .collect();
            let query = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let q = Query::parse(Some(&query));
            for (k, _) in &pairs {
                let first = pairs.iter().find(|(k2, _)| k2 == k).map(|(_, v)| *v);
                assert_eq!(q.get(k), first, "query {query:?}, name {k:?}");
            }
            for f in &fields {
                assert_eq!(decode(&encode(f)).as_deref(), Some(*f));
            }
        }
        2 => {
            // Authorization headers: raw, and assembled from components.
            if let Some(a) = Authorization::parse(&text) {
                assert_eq!(text.trim().split(' ').next(), Some(a.algorithm));
            }
            let clean = |s: &str| -> String {
                s.chars()
                    .filter(|c| !matches!(c, ',' | ' ') && !c.is_whitespace())
                    .collect()
            };
            let alg = clean(fields[0]);
            if !alg.is_empty() {
                let cred = clean(fields.get(1).copied().unwrap_or("AK/d/r/s/aws4_request"));
                let sh = clean(fields.get(2).copied().unwrap_or("host"));
                let sig = clean(fields.get(3).copied().unwrap_or("ab"));
                let value = format!("{alg} Credential={cred}, SignedHeaders={sh}, Signature={sig}");
                let a = Authorization::parse(&value).expect("assembled header parses");
                assert_eq!(a.algorithm, alg);
                assert_eq!(a.credential, Some(cred.as_str()));
                assert_eq!(a.signed_headers, Some(sh.as_str()));
                assert_eq!(a.signature, Some(sig.as_str()));
                assert!(!a.unknown_component, "{value:?}");
            }
        }
        _ => {
            // Credential scopes, and the access key a request names.
            let cred = fields[0];
            match CredentialScope::parse(cred) {
                Some(s) => {
                    assert_eq!(cred.matches('/').count(), 4);
                    let joined =
                        [s.access_key, s.date, s.region, s.service, s.terminator].join("/");
                    assert_eq!(joined, cred);
                }
                None => assert_ne!(cred.matches('/').count(), 4, "{cred:?} refused"),
            }
            // In a header the credential ends at a comma or whitespace.
            let plain: String = cred
                .chars()
                .filter(|c| *c != ',' && !c.is_whitespace())
                .collect();
            let header =
                format!("AWS4-HMAC-SHA256 Credential={plain}, SignedHeaders=host, Signature=ab");
            if let Ok(req) = http::Request::builder()
                .uri("/b/k")
                .header("authorization", &header)
                .body(())
            {
                // A header that is not visible ASCII names no key (`to_str` refuses it;
                // s3s then refuses the request).
                let ascii = header.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
                let want = if ascii { plain.split('/').next() } else { None };
                assert_eq!(
                    access_key(&req, &Query::default()).as_deref(),
                    want,
                    "header {header:?}"
                );
            }
            let uri = format!("/b/k?X-Amz-Credential={}", encode(cred));
            if let Ok(req) = http::Request::builder().uri(uri.as_str()).body(()) {
                let q = Query::parse(req.uri().query());
                assert_eq!(
                    access_key(&req, &q).as_deref(),
                    cred.split('/').next(),
                    "presigned {uri:?}"
                );
            }
        }
    }
});
