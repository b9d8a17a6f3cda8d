//! Runs every vector of spec/testkit through every API surface: in-memory, sync reader,
//! async stream, and random-access ranges.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::io::{Cursor, Read};

use bytes::Bytes;
use coffer_format::async_stream::decrypt_stream;
use coffer_format::{
    decrypt_from_slice, decrypt_range, ByteRange, Context, DecryptReader, LocalKek, SecretKey,
    WrappedKey,
};
use futures::StreamExt;
use serde_json::Value;

fn load(name: &str) -> Vec<Value> {
    let path = format!("{}/../../spec/testkit/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).expect("testkit JSON parses");
    doc["vectors"].as_array().expect("vectors array").clone()
}

fn hex_field(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} missing")),
    )
    .expect("hex")
}

fn context(v: &Value) -> Context {
    let obj = v["context"].as_object().expect("context object");
    Context::from_pairs(
        obj.iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("str").to_owned())),
    )
    .expect("context within limits")
}

fn metadata_json(m: &coffer_format::Metadata) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect(),
    )
}

fn sync_read(object: &[u8], ctx: &Context, kek: &SecretKey) -> coffer_format::Result<Vec<u8>> {
    let mut r = DecryptReader::new(Cursor::new(object), ctx, &mut LocalKek(kek))?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}

fn async_read(object: &[u8], ctx: &Context, kek: &SecretKey) -> coffer_format::Result<Vec<u8>> {
    // Odd frame sizes exercise every buffering path.
    let frames: Vec<std::io::Result<Bytes>> = object
        .chunks(7919)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::executor::block_on(async {
        let mut s = decrypt_stream(futures::stream::iter(frames), ctx, &mut LocalKek(kek)).await?;
        let mut out = Vec::new();
        while let Some(b) = s.body.next().await {
            out.extend_from_slice(&b?);
        }
        Ok(out)
    })
}

fn ranges(len: u64) -> Vec<ByteRange> {
    let mut r = vec![
        ByteRange::From(0),
        ByteRange::Suffix(1),
        ByteRange::Suffix(len + 10),
    ];
    if len > 0 {
        r.push(ByteRange::Bounded { first: 0, last: 0 });
        r.push(ByteRange::Bounded {
            first: len - 1,
            last: len + 100,
        });
        r.push(ByteRange::From(len / 2));
    }
    if len > 16384 {
        r.push(ByteRange::Bounded {
            first: 16380,
            last: 16390,
        });
        r.push(ByteRange::Suffix(len - 16384));
    }
    r
}

#[test]
fn object_vectors_through_every_api() {
    let vectors = load("objects.json");
    assert!(vectors.len() >= 30, "testkit has too few vectors");
    let (mut valid, mut invalid) = (0, 0);
    for v in &vectors {
        let name = v["name"].as_str().expect("name");
        let kek = SecretKey::from_slice(&hex_field(v, "wrapping_key")).expect("32-byte key");
        let ctx = context(v);
        let object = hex_field(v, "object");
        let slice = decrypt_from_slice(&object, &ctx, &mut LocalKek(&kek));
        let sync = sync_read(&object, &ctx, &kek);
        let asynch = async_read(&object, &ctx, &kek);
        let full_range = decrypt_range(
            &mut Cursor::new(&object),
            &ctx,
            &mut LocalKek(&kek),
            ByteRange::From(0),
        );
        if v["valid"].as_bool() == Some(true) {
            valid += 1;
            let pt = hex_field(v, "plaintext");
            let (data, md) = slice.unwrap_or_else(|e| panic!("{name}: slice: {e}"));
            assert_eq!(data, pt, "{name}: slice");
            assert_eq!(metadata_json(&md), v["metadata"], "{name}: metadata");
            assert_eq!(
                sync.unwrap_or_else(|e| panic!("{name}: sync: {e}")),
                pt,
                "{name}: sync"
            );
            assert_eq!(
                asynch.unwrap_or_else(|e| panic!("{name}: async: {e}")),
                pt,
                "{name}"
            );
            let len = pt.len() as u64;
            for r in ranges(len) {
                let got = decrypt_range(&mut Cursor::new(&object), &ctx, &mut LocalKek(&kek), r);
                match r.resolve(len) {
                    Ok(want) => {
                        let got = got.unwrap_or_else(|e| panic!("{name}: range {r:?}: {e}"));
                        assert_eq!(got.range, want, "{name}: {r:?}");
                        assert_eq!(
                            got.data,
                            pt[want.start as usize..want.end as usize],
                            "{name}: {r:?}"
                        );
                    }
                    Err(_) => assert!(
                        matches!(got, Err(coffer_format::Error::RangeNotSatisfiable)),
                        "{name}: {r:?} should be unsatisfiable"
                    ),
                }
            }
        } else {
            invalid += 1;
            assert!(slice.is_err(), "{name}: slice accepted an invalid object");
            assert!(
                sync.is_err(),
                "{name}: sync reader accepted an invalid object"
            );
            assert!(
                asynch.is_err(),
                "{name}: async stream accepted an invalid object"
            );
            if v["detected_by_range"].as_bool() != Some(false) {
                assert!(
                    full_range.is_err(),
                    "{name}: range read accepted an invalid object"
                );
            }
        }
    }
    assert!(
        valid >= 8 && invalid >= 25,
        "valid {valid}, invalid {invalid}"
    );
}

#[test]
fn sync_reader_releases_nothing_after_a_failure() {
    let v = load("objects.json")
        .into_iter()
        .find(|v| v["name"] == "bitflip-final-chunk")
        .expect("vector present");
    let kek = SecretKey::from_slice(&hex_field(&v, "wrapping_key")).expect("key");
    let object = hex_field(&v, "object");
    let mut r = DecryptReader::new(Cursor::new(&object), &context(&v), &mut LocalKek(&kek))
        .expect("header is intact");
    let mut out = Vec::new();
    assert!(r.read_to_end(&mut out).is_err());
    // The two full chunks authenticate and may be released; the altered final chunk never is.
    assert!(out.len() <= 2 * 16384);
    let mut more = [0u8; 16];
    assert!(r.read(&mut more).is_err(), "reader must stay failed");
}

#[test]
fn wrapped_key_vectors() {
    let vectors = load("wrapped-key.json");
    assert!(vectors.len() >= 10);
    for v in &vectors {
        let name = v["name"].as_str().expect("name");
        let kek = SecretKey::from_slice(&hex_field(v, "wrapping_key")).expect("key");
        let ctx = context(v);
        let result = WrappedKey::decode(&hex_field(v, "wrapped")).and_then(|w| {
            let pt = w.unwrap(&kek, &ctx)?;
            Ok((w, pt))
        });
        if v["valid"].as_bool() == Some(true) {
            let (w, pt) = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(pt.ct_eq(&hex_field(v, "plaintext")), "{name}: plaintext");
            assert_eq!(
                w.reference().kind as u8 as u64,
                v["kind"].as_u64().expect("kind")
            );
            assert_eq!(w.reference().key_id, hex_field(v, "key_id"), "{name}");
            assert_eq!(
                Some(w.reference().version as u64),
                v["key_version"].as_u64(),
                "{name}"
            );
        } else {
            assert!(result.is_err(), "{name}: accepted");
        }
    }
}
