//! `coffer_store::sse::parse_kms_context`, the parser of the
//! `x-amz-server-side-encryption-context` header (base64 of a JSON object of strings). No
//! panic, every rejection is `InvalidArgument`, and an accepted context re-encodes with
//! `format_kms_context` (the form S3 responses carry) to a header that parses back to the same
//! map, and whose own re-encoding is identical.
//!
//! With `COFFER_FUZZ_STRICT=1` it also checks that an accepted context is one the server can
//! bind the data key to (`coffer_format::Context`, after the `aws:s3:arn` entry the server
//! adds): see fuzz/README.md, "Findings".
//!
//! Input: byte 0 = mode (bits 0-1) and padding (bit 2: surround the generated header with
//! whitespace), then:
//! - mode 0: the header value itself (lossy UTF-8);
//! - mode 1: JSON, base64-encoded into the header (reaches the JSON parser);
//! - mode 2: `name \0 value \0 name \0 value …` (lossy UTF-8), a map the header is generated
//!   from with `format_kms_context`, which must then parse back to exactly that map;
//! - mode 3: JSON, encoded with the URL-safe base64 alphabet and no padding.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use base64::Engine;
use coffer_format::Context;
use coffer_store::sse::{format_kms_context, object_arn, parse_kms_context};
use coffer_outcome::ServerError;
use libfuzzer_sys::fuzz_target;
use s3s::S3ErrorCode;

fn strict() -> bool {
    static S: OnceLock<bool> = OnceLock::new();
    *S.get_or_init(|| std::env::var_os("COFFER_FUZZ_STRICT").is_some_and(|v| v == "1"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let pad = |s: String| if head & 4 != 0 { format!(" \t{s} ") } else { s };
    let mut generated = None;
    let header = match head & 3 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => pad(B64.encode(rest)),
        2 => {
            let text = String::from_utf8_lossy(rest);
            let mut items = text.split('\0');
            let mut map = BTreeMap::new();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                map.insert(k.to_owned(), v.to_owned());
            }
            let h = pad(format_kms_context(&map));
            generated = Some(map);
            h
        }
        _ => pad(URL_SAFE_NO_PAD.encode(rest)),
    };

    let parsed = parse_kms_context(&header);
    match &parsed {
        Err(ServerError::S3(S3ErrorCode::InvalidArgument, _)) => {}
        Err(e) => panic!("not InvalidArgument: {e:?}"),
        Ok(map) => {
            let again = format_kms_context(map);
            assert_eq!(
                parse_kms_context(&again).ok().as_ref(),
                Some(map),
                "re-encoded context parses differently"
            );
            assert_eq!(
                format_kms_context(&parse_kms_context(&again).unwrap()),
                again
            );
            if strict() {
                // What `Keys::resolve` and `new_blob_key` do with it.
                let mut ctx = map.clone();
                ctx.entry("aws:s3:arn".to_owned())
                    .or_insert_with(|| object_arn("bucket", "key"));
                if let Err(e) = Context::from_pairs(ctx.iter().map(|(k, v)| (k.clone(), v.clone())))
                {
                    panic!("accepted a context the server cannot bind the data key to: {e}");
                }
            }
        }
    }
    if let Some(map) = generated {
        // format_kms_context output (padded or not) always parses back to its map.
        assert_eq!(
            parsed.ok().as_ref(),
            Some(&map),
            "format_kms_context did not round-trip"
        );
    }
});
