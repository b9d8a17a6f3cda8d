//! The server's SSE request headers: `coffer_store::sse::parse_customer_key` (the three SSE-C
//! headers, also sent on reads and as the copy-source SSE-C headers) and
//! `coffer_store::sse::choose` (a write's six SSE headers plus the bucket default). No panic,
//! every rejection is a client error (`InvalidArgument` / `InvalidRequest`), and:
//!
//! - an accepted customer key is exactly 32 bytes (base64, surrounding whitespace ignored)
//!   whose MD5 is the `…-key-MD5` header, and its echoed `key_md5` is that MD5; conversely a
//!   well-formed AES256 key with its MD5 over a secure connection is accepted;
//! - SSE-C is refused over plain HTTP;
//! - `choose` picks SSE-C only without other SSE headers, SSE-S3 only for `AES256` (or no
//!   header and no KMS bucket default), SSE-KMS only for `aws:kms` (or no header and a KMS
//!   bucket default) carrying exactly the headers' key id and context.
//!
//! Input: byte 0 = flags (bit 0: secure connection; bits 1-2: bucket default none / AES256 /
//! aws:kms with a key id / aws:kms without; bit 3: the key field is raw bytes to base64-encode;
//! bit 4: the MD5 field is replaced by the base64 MD5 of the decoded key; bit 5: pad the
//! generated values with spaces), byte 1 = which of the six fields are present (bits 0-5:
//! sse, kms key id, kms context, customer algorithm, customer key, customer key MD5), then
//! the fields separated by `\n` (lossy UTF-8).
#![no_main]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use coffer_meta::BucketEncryption;
use coffer_store::sse::{choose, parse_customer_key, parse_kms_context, SseChoice, SseHeaders};
use coffer_outcome::ServerError;
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};
use s3s::S3ErrorCode;

fn client_error<T>(r: &Result<T, ServerError>) {
    if let Err(e) = r {
        match e {
            ServerError::S3(S3ErrorCode::InvalidArgument | S3ErrorCode::InvalidRequest, _) => {}
            other => panic!("not a client error: {other:?}"),
        }
    }
}

/// The 32-byte key a well-formed header carries, if any.
fn decoded_key(key: &str) -> Option<Vec<u8>> {
    B64.decode(key.trim()).ok().filter(|k| k.len() == 32)
}

fuzz_target!(|data: &[u8]| {
    let [flags, present, rest @ ..] = data else {
        return;
    };
    let secure = flags & 1 != 0;
    let default = match (flags >> 1) & 3 {
        0 => None,
        1 => Some(BucketEncryption {
            algorithm: "AES256".into(),
            kms_key_id: None,
            bucket_key_enabled: false,
        }),
        2 => Some(BucketEncryption {
            algorithm: "aws:kms".into(),
            kms_key_id: Some("alias/bucket-default".into()),
            bucket_key_enabled: true,
        }),
        _ => Some(BucketEncryption {
            algorithm: "aws:kms".into(),
            kms_key_id: None,
            bucket_key_enabled: false,
        }),
    };
    let pad = |s: String| {
        if flags & 32 != 0 {
            format!(" {s}\t")
        } else {
            s
        }
    };

    let mut parts = rest.splitn(6, |&b| b == b'\n');
    let mut fields: [Option<String>; 6] = Default::default();
    for (i, f) in fields.iter_mut().enumerate() {
        let raw = parts.next().unwrap_or_default();
        if present & (1 << i) == 0 {
            continue;
        }
        *f = Some(if i == 4 && flags & 8 != 0 {
            pad(B64.encode(raw))
        } else {
            String::from_utf8_lossy(raw).into_owned()
        });
    }
    if flags & 16 != 0 {
        if let Some(k) = fields[4].as_deref().and_then(|k| B64.decode(k.trim()).ok()) {
            fields[5] = Some(pad(B64.encode(Md5::digest(&k))));
        }
    }
    let [sse, kms_key_id, kms_context, c_algorithm, c_key, c_key_md5] =
        fields.each_ref().map(|f| f.as_deref());

    // The three SSE-C headers alone (reads, copy sources).
    let customer = parse_customer_key(c_algorithm, c_key, c_key_md5, secure);
    client_error(&customer);
    let any_c = c_algorithm.is_some() || c_key.is_some() || c_key_md5.is_some();
    let well_formed = match (c_algorithm, c_key.and_then(decoded_key), c_key_md5) {
        (Some("AES256"), Some(k), Some(m)) => {
            B64.decode(m.trim()).ok().as_deref() == Some(&Md5::digest(&k)[..])
        }
        _ => false,
    };
    match &customer {
        Ok(None) => assert!(!any_c, "SSE-C headers ignored"),
        Ok(Some(ck)) => {
            assert!(secure, "SSE-C accepted over plain HTTP");
            assert_eq!(c_algorithm, Some("AES256"));
            let key = decoded_key(c_key.unwrap()).expect("accepted key is not 32 bytes");
            let md5 = Md5::digest(&key);
            assert_eq!(ck.key_md5, B64.encode(md5), "echoed MD5 is not the key's");
            let given = B64
                .decode(c_key_md5.unwrap().trim())
                .expect("MD5 header not base64");
            assert_eq!(given, &md5[..], "accepted a key whose MD5 does not match");
        }
        Err(_) => {
            assert!(any_c);
            assert!(
                !(secure && well_formed),
                "rejected a well-formed customer key"
            );
        }
    }

    // A write's six headers and the bucket default.
    let h = SseHeaders {
        sse,
        kms_key_id,
        kms_context,
        c_algorithm,
        c_key,
        c_key_md5,
    };
    let chosen = choose(&h, default.as_ref(), secure);
    client_error(&chosen);
    let kms_headers = kms_key_id.is_some() || kms_context.is_some();
    let default_kms = default.as_ref().is_some_and(|d| d.algorithm == "aws:kms");
    match &chosen {
        Ok(SseChoice::C(ck)) => {
            assert!(sse.is_none() && !kms_headers, "SSE-C combined with {sse:?}");
            let Ok(Some(alone)) = &customer else {
                panic!("choose accepted an SSE-C key parse_customer_key rejects");
            };
            assert_eq!(ck.key_md5, alone.key_md5);
        }
        Ok(SseChoice::S3) => {
            assert!(matches!(customer, Ok(None)) && !kms_headers);
            assert!(sse == Some("AES256") || (sse.is_none() && !default_kms));
        }
        Ok(SseChoice::Kms { key, context }) => {
            assert!(matches!(customer, Ok(None)));
            if sse == Some("aws:kms") {
                assert_eq!(key.as_deref(), kms_key_id);
                assert_eq!(context.as_deref(), kms_context);
                // The context header is parsed when the key is resolved: it must not panic.
                if let Some(c) = context {
                    client_error(&parse_kms_context(c));
                }
            } else {
                assert!(sse.is_none() && !kms_headers && default_kms);
                assert_eq!(key, &default.as_ref().unwrap().kms_key_id);
                assert!(context.is_none());
            }
        }
        Err(_) => {
            assert!(
                sse.is_some() || any_c || kms_headers,
                "no SSE header, yet rejected"
            );
            if customer.is_ok() && sse.is_none() && !kms_headers {
                panic!("a lone valid SSE-C key (or none) rejected by choose");
            }
            if matches!(customer, Ok(None))
                && (sse == Some("aws:kms") || (sse == Some("AES256") && !kms_headers))
            {
                panic!("a valid {sse:?} request rejected by choose");
            }
        }
    }
    if customer.is_err() {
        assert!(
            chosen.is_err(),
            "choose accepted what parse_customer_key rejects"
        );
    }
});
