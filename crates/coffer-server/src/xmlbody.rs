//! XML request bodies (DeleteObjects, CompleteMultipartUpload, PutBucketEncryption,
//! CreateBucket) are read here, before s3s sees them:
//!
//! - with the body idle timeout (a stalled body gets `400 RequestTimeout`, not a held slot);
//! - bounded in size (`400 MaxMessageLengthExceeded`);
//! - checked against `Content-MD5` / `x-amz-checksum-*` (`400 BadDigest` / `InvalidDigest`),
//!   one of which DeleteObjects must carry (`400 InvalidRequest`), as S3 requires;
//! - checked for well-formedness with a strict XML parser (`roxmltree`: no DTD, so no
//!   external entities or entity expansion; matched tags; unique attributes; one root; no
//!   characters XML 1.0 forbids) — `400 MalformedXML`. s3s's reader is lenient and would act
//!   on a body that is not XML.
//!
//! Then the request goes on to s3s with the buffered body.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

/// Largest XML body accepted: a CompleteMultipartUpload of 10 000 parts or a DeleteObjects
/// of 1 000 keys of 1 024 bytes fits.
pub const MAX_XML_BODY: usize = 4 << 20;

/// The S3 operations whose body is an XML document.
pub fn has_xml_body(op: &str) -> bool {
    matches!(
        op,
        "DeleteObjects" | "CompleteMultipartUpload" | "PutBucketEncryption" | "CreateBucket"
    )
}

use crate::Refusal;

fn bad(code: &'static str, msg: impl Into<String>) -> Refusal {
    (http::StatusCode::BAD_REQUEST, code, msg.into())
}

/// Reads the whole body, each frame within `idle`, at most [`MAX_XML_BODY`] bytes.
pub async fn read<B>(mut body: B, idle: Duration) -> Result<Bytes, Refusal>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut buf = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(bad(
                    "RequestTimeout",
                    "Your socket connection to the server was not read from or written to within the timeout period.",
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(bad("IncompleteBody", format!("request body: {e}"))),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_XML_BODY {
                return Err(bad("MaxMessageLengthExceeded", "Your request was too big."));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

const MALFORMED: &str =
    "The XML you provided was not well-formed or did not validate against our published schema";

/// Digest headers, then well-formedness (an empty body is left to s3s).
pub fn check(headers: &http::HeaderMap, body: &[u8], op: &str) -> Result<(), Refusal> {
    // CompleteMultipartUpload's `x-amz-checksum-*` headers are the whole object's checksum
    // (checked at completion), not its XML body's.
    let mut object_headers;
    let headers = if op == "CompleteMultipartUpload" {
        object_headers = headers.clone();
        for n in [
            "x-amz-checksum-crc32",
            "x-amz-checksum-crc32c",
            "x-amz-checksum-crc64nvme",
            "x-amz-checksum-sha1",
            "x-amz-checksum-sha256",
        ] {
            object_headers.remove(n);
        }
        &object_headers
    } else {
        headers
    };
    coffer_s3::verify_small_body(headers, body, op == "DeleteObjects").map_err(|e| {
        let e: s3s::S3Error = e.into();
        (
            e.status_code().unwrap_or(http::StatusCode::BAD_REQUEST),
            static_code(e.code().as_str()),
            e.message().unwrap_or_default().to_owned(),
        )
    })?;
    if body.is_empty() {
        return Ok(());
    }
    well_formed(body).map_err(|why| bad("MalformedXML", format!("{MALFORMED} ({why})")))
}

fn static_code(code: &str) -> &'static str {
    match code {
        "BadDigest" => "BadDigest",
        "InvalidDigest" => "InvalidDigest",
        "InvalidArgument" => "InvalidArgument",
        _ => "InvalidRequest",
    }
}

/// Deepest element nesting accepted (S3's request documents use 3–4 levels).
const MAX_DEPTH: usize = 64;

/// An upper bound of the element nesting depth, without parsing (a `<` inside a comment or
/// CDATA section can only over-count, which errs on the side of refusing).
fn nesting(body: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut prev = 0u8;
    for (i, &b) in body.iter().enumerate() {
        match b {
            b'<' => match body.get(i + 1) {
                Some(b'/') => depth = depth.saturating_sub(1),
                Some(b'?' | b'!') => {}
                _ => {
                    depth += 1;
                    max = max.max(depth);
                }
            },
            b'>' if prev == b'/' => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev = b;
    }
    max
}

/// Strict XML 1.0 well-formedness.
pub fn well_formed(body: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    // XML 1.0 § 2.2: no C0 controls except tab, line feed, carriage return.
    if let Some(c) = text.chars().find(|&c| {
        (c < '\u{20}' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}'
    }) {
        return Err(format!(
            "character U+{:04X} is not allowed in XML",
            c as u32
        ));
    }
    // S3's documents nest a few levels; a deep one would exhaust the parser's stack.
    if nesting(body) > MAX_DEPTH {
        return Err(format!("elements nested deeper than {MAX_DEPTH}"));
    }
    roxmltree::Document::parse(text)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictness() {
        let ok = [
            "<Delete><Object><Key>a</Key></Object></Delete>",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet></Delete>\n",
        ];
        for d in ok {
            assert!(well_formed(d.as_bytes()).is_ok(), "{d}");
        }
        let bad: &[&[u8]] = &[
            b"<Delete>\0</Delete>",
            b"<Delete>\x01</Delete>",
            b"\xff<Delete/>",
            b"<Delete>\xc3\x28</Delete>",
            b"<Delete a></Delete>",
            b"<Delete a=b></Delete>",
            b"<Delete a=\"1\" a=\"2\"></Delete>",
            b"<Delete></Delete>trailing",
            b"<Delete></Delete><?xml version=\"1.0\"?>",
            b"<Delete><Object></Delete>",
            b"<!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><Delete>&x;</Delete>",
            b"<a/><b/>",
        ];
        let deep = "<a>".repeat(100_000);
        assert!(well_formed(deep.as_bytes()).is_err());
        assert_eq!(nesting(b"<a><b/><c>x</c></a>"), 2);
        for d in bad {
            assert!(well_formed(d).is_err(), "{}", String::from_utf8_lossy(d));
        }
    }
}
