//! Generates spec/testkit/objects.json and wrapped-key.json. Run once when the format is
//! defined; the committed files are then frozen (a changed file means a changed format).
//!
//! `cargo run -p coffer-format --example gen_testkit -- spec/testkit`
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use coffer_format::chunked::{PayloadLayout, ENCRYPTED_CHUNK_SIZE};
use coffer_format::header::{testkit_seal_metadata, testkit_seal_trailer, TRAILER_LEN};
use coffer_format::{
    encrypt_to_vec, Context, KeyKind, KeyReference, Metadata, SecretKey, WrappedKey,
};
use serde_json::{json, Value};

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

fn map(pairs: &[(&str, &str)]) -> R<Context> {
    Ok(Context::from_pairs(pairs.iter().copied())?)
}

fn map_json(m: &Context) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect(),
    )
}

struct Obj {
    dek: SecretKey,
    bytes: Vec<u8>,
    header_len: usize,
}

fn make(kek: &SecretKey, ctx: &Context, md: &Metadata, pt: &[u8]) -> R<Obj> {
    let dek = SecretKey::generate()?;
    let reference = KeyReference::new(KeyKind::ClientKek, b"testkit-kek-0001".to_vec(), 1)?;
    let wrapped = WrappedKey::wrap(reference, kek, dek.expose(), ctx)?;
    let bytes = encrypt_to_vec(&dek, &wrapped, ctx, md, pt)?;
    let header_len = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    Ok(Obj {
        dek,
        bytes,
        header_len,
    })
}

impl Obj {
    fn chunk(&self, i: u64) -> std::ops::Range<usize> {
        let layout = PayloadLayout::from_payload_len(
            (self.bytes.len() - self.header_len - TRAILER_LEN) as u64,
        )
        .expect("generator builds valid objects");
        let start = self.header_len + PayloadLayout::chunk_offset(i) as usize;
        start..start + layout.chunk_len(i) as usize
    }
    fn payload_start(&self) -> usize {
        self.header_len
    }
    fn trailer(&self) -> std::ops::Range<usize> {
        self.bytes.len() - TRAILER_LEN..self.bytes.len()
    }
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 0x01;
    b
}

fn main() -> R<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "spec/testkit".into());
    let kek_bytes: Vec<u8> = (1..=32).collect();
    let kek = SecretKey::from_slice(&kek_bytes)?;
    let other_kek = SecretKey::from_slice(&[0xA5; 32])?;
    let md = map(&[
        ("content-type", "application/octet-stream"),
        ("x-amz-meta-purpose", "testkit"),
    ])?;
    let mut vectors = Vec::new();

    let valid = |name: &str, ctx: &Context, obj: &Obj, pt: &[u8]| {
        json!({"name": name, "wrapping_key": hex::encode(&kek_bytes), "context": map_json(ctx),
               "object": hex::encode(&obj.bytes), "valid": true, "plaintext": hex::encode(pt),
               "metadata": map_json(&md)})
    };
    let invalid = |name: &str, ctx: &Context, key: &[u8], bytes: &[u8], reason: &str| {
        json!({"name": name, "wrapping_key": hex::encode(key), "context": map_json(ctx),
               "object": hex::encode(bytes), "valid": false, "reason": reason})
    };

    for len in [0usize, 1, 16383, 16384, 16385, 65536, 3 * 16384 + 100] {
        let ctx = map(&[
            ("bucket", "testkit"),
            ("key", &format!("objects/len-{len}")),
        ])?;
        let pt = plaintext(len);
        let obj = make(&kek, &ctx, &md, &pt)?;
        vectors.push(valid(&format!("len-{len}"), &ctx, &obj, &pt));
    }
    let ctx_empty = Context::new();
    let pt = plaintext(100);
    vectors.push(valid(
        "empty-context",
        &ctx_empty,
        &make(&kek, &ctx_empty, &md, &pt)?,
        &pt,
    ));

    // Reject cases, from a three-chunk object.
    let ctx = map(&[("bucket", "testkit"), ("key", "objects/victim")])?;
    let pt = plaintext(2 * 16384 + 100);
    let base = make(&kek, &ctx, &md, &pt)?;
    let other = make(&kek, &ctx, &md, &pt)?;
    let b = &base.bytes;
    let k = &kek_bytes;
    let mut push = |name: &str, bytes: Vec<u8>, reason: &str| {
        vectors.push(invalid(name, &ctx, k, &bytes, reason))
    };

    let mut t = b[..base.chunk(2).start].to_vec();
    t.extend_from_slice(&b[base.trailer()]);
    push(
        "truncated-final-chunk-removed",
        t,
        "truncated at a chunk boundary (final chunk removed)",
    );
    let mut t = b[..base.chunk(1).start].to_vec();
    t.extend_from_slice(&b[base.trailer()]);
    push(
        "truncated-after-first-chunk",
        t,
        "truncated at a chunk boundary (full chunk is last)",
    );
    push(
        "truncated-trailer",
        b[..b.len() - 1].to_vec(),
        "truncated inside the trailer",
    );
    push(
        "truncated-header",
        b[..base.header_len - 1].to_vec(),
        "truncated inside the header",
    );
    let mut t = b.clone();
    t.push(0);
    push("extended-one-byte", t, "extended by one byte");
    let mut t = b[..base.trailer().start].to_vec();
    t.extend_from_slice(&[0u8; 16]);
    t.extend_from_slice(&b[base.trailer()]);
    push(
        "extended-extra-chunk",
        t,
        "an extra 16-byte chunk before the trailer",
    );
    push("bitflip-magic", flip(b, 0), "unknown magic");
    push("bitflip-version", flip(b, 6), "unknown format version");
    push("bitflip-suite", flip(b, 7), "unknown suite");
    push(
        "bitflip-header-len",
        flip(b, 11),
        "header length does not match its fields",
    );
    push(
        "bitflip-wrapped-key-id",
        flip(b, 12 + 7),
        "wrapped DEK key id altered",
    );
    push(
        "bitflip-wrapped-key-ciphertext",
        flip(b, 12 + 25 + 16 + 3),
        "wrapped DEK ciphertext altered",
    );
    push(
        "bitflip-metadata-block",
        flip(b, base.header_len - 3),
        "metadata block tag altered",
    );
    push(
        "bitflip-salt",
        flip(b, base.payload_start() + 2),
        "salt altered",
    );
    push(
        "bitflip-commitment",
        flip(b, base.payload_start() + 30),
        "commitment altered",
    );
    push(
        "bitflip-chunk0",
        flip(b, base.chunk(0).start + 100),
        "chunk 0 ciphertext altered",
    );
    push(
        "bitflip-chunk1-tag",
        flip(b, base.chunk(1).end - 1),
        "chunk 1 tag altered",
    );
    push(
        "bitflip-final-chunk",
        flip(b, base.chunk(2).start + 5),
        "final chunk altered",
    );
    push(
        "bitflip-trailer",
        flip(b, base.trailer().start + 20),
        "trailer altered",
    );
    let mut t = b.clone();
    let (c0, c1) = (base.chunk(0), base.chunk(1));
    t[c0.clone()].copy_from_slice(&b[c1.clone()]);
    t[c1].copy_from_slice(&b[c0]);
    push("swapped-chunks", t, "chunks 0 and 1 swapped");
    let mut t = b.clone();
    t[base.chunk(1)].copy_from_slice(&other.bytes[other.chunk(1)]);
    push(
        "chunk-from-other-object",
        t,
        "chunk 1 spliced from another object",
    );
    let mut t = b.clone();
    let tr = base.trailer();
    t[tr.clone()].copy_from_slice(&other.bytes[other.trailer()]);
    push(
        "trailer-from-other-object",
        t,
        "trailer spliced from another object",
    );
    // Header (wrapped DEK + metadata) of `other`, payload of `base`: every header check
    // passes, the key commitment is what fails.
    let mut t = other.bytes[..other.header_len].to_vec();
    t.extend_from_slice(&b[base.payload_start()..]);
    push(
        "commitment-mismatch",
        t,
        "payload committed to a different data key",
    );
    let mut t = b.clone();
    let crc_bad = testkit_seal_trailer(&base.dek, &ctx, pt.len() as u64, 0xDEADBEEF)?;
    t[tr.clone()].copy_from_slice(&crc_bad);
    let mut v = invalid(
        "trailer-wrong-checksum",
        &ctx,
        k,
        &t,
        "authentic trailer with a wrong CRC-32C",
    );
    v["detected_by_range"] = json!(false);
    vectors.push(v);
    let mut t = b.clone();
    let len_bad = testkit_seal_trailer(&base.dek, &ctx, pt.len() as u64 - 1, 0)?;
    t[tr].copy_from_slice(&len_bad);
    vectors.push(invalid(
        "trailer-wrong-length",
        &ctx,
        k,
        &t,
        "authentic trailer with a wrong length",
    ));
    let wrong_ctx = map(&[("bucket", "testkit"), ("key", "objects/elsewhere")])?;
    vectors.push(invalid(
        "wrong-context",
        &wrong_ctx,
        k,
        b,
        "decrypted with another object's context",
    ));
    vectors.push(invalid(
        "wrong-key",
        &ctx,
        &[0xA5; 32],
        b,
        "decrypted with the wrong key-encryption key",
    ));
    // An object of 16384 bytes whose empty final chunk was removed.
    let ctx16 = map(&[
        ("bucket", "testkit"),
        ("key", "objects/len-16384-truncated"),
    ])?;
    let o16 = make(&kek, &ctx16, &md, &plaintext(16384))?;
    let mut t = o16.bytes[..o16.chunk(1).start].to_vec();
    t.extend_from_slice(&o16.bytes[o16.trailer()]);
    vectors.push(invalid(
        "truncated-empty-final-chunk",
        &ctx16,
        k,
        &t,
        "16 KiB message missing its empty final chunk",
    ));
    let _ = &other_kek;
    // Header-level rejects, each built so that only the named rule is broken.
    let header_with = |wrapped: &[u8], block: &[u8]| {
        let len = 12 + wrapped.len() + 4 + block.len();
        let mut h = b"COFFER\x01\x01".to_vec();
        h.extend_from_slice(&(len as u32).to_be_bytes());
        h.extend_from_slice(wrapped);
        h.extend_from_slice(&(block.len() as u32).to_be_bytes());
        h.extend_from_slice(block);
        h
    };
    let base_wrapped_len = {
        let id_len = b[12 + 5] as usize;
        let ct_len = u16::from_be_bytes([b[12 + 23 + id_len], b[12 + 24 + id_len]]) as usize;
        25 + id_len + ct_len
    };
    let base_wrapped = &b[12..12 + base_wrapped_len];
    // A metadata map whose entries are out of order, sealed so that it authenticates.
    let mut unsorted = vec![0u8, 2];
    for (k, v) in [("x-b", "2"), ("x-a", "1")] {
        unsorted.extend_from_slice(&(k.len() as u16).to_be_bytes());
        unsorted.extend_from_slice(k.as_bytes());
        unsorted.extend_from_slice(&(v.len() as u32).to_be_bytes());
        unsorted.extend_from_slice(v.as_bytes());
    }
    let block = testkit_seal_metadata(&base.dek, &ctx, &unsorted)?;
    let mut t = header_with(base_wrapped, &block);
    t.extend_from_slice(&b[base.payload_start()..]);
    vectors.push(invalid(
        "metadata-map-not-canonical",
        &ctx,
        k,
        &t,
        "metadata map entries out of order",
    ));
    let mut t = header_with(base_wrapped, &[0u8; 29]);
    t.extend_from_slice(&b[base.payload_start()..]);
    vectors.push(invalid(
        "metadata-block-too-short",
        &ctx,
        k,
        &t,
        "metadata_len below 30",
    ));
    let mut t = b.clone();
    t[8..12].copy_from_slice(&65537u32.to_be_bytes());
    vectors.push(invalid(
        "header-len-too-large",
        &ctx,
        k,
        &t,
        "header_len above 65536",
    ));
    let mut t = b.clone();
    t[8..12].copy_from_slice(&119u32.to_be_bytes());
    vectors.push(invalid(
        "header-len-too-small",
        &ctx,
        k,
        &t,
        "header_len below 120",
    ));
    // A wrapped "DEK" of 31 bytes that unwraps correctly.
    let short_dek = WrappedKey::wrap(
        KeyReference::new(KeyKind::ClientKek, b"testkit-kek-0001".to_vec(), 1)?,
        &kek,
        &[7u8; 31],
        &ctx,
    )?
    .encode();
    let block = testkit_seal_metadata(&base.dek, &ctx, &md.encode())?;
    let mut t = header_with(&short_dek, &block);
    t.extend_from_slice(&b[base.payload_start()..]);
    vectors.push(invalid(
        "dek-not-32-bytes",
        &ctx,
        k,
        &t,
        "wrapped DEK is 31 bytes",
    ));

    let doc = json!({"format": "coffer-object-v1", "vectors": vectors});
    std::fs::write(
        format!("{dir}/objects.json"),
        serde_json::to_string_pretty(&doc)? + "\n",
    )?;

    // Wrapped keys.
    let mut wv = Vec::new();
    let wctx = map(&[("purpose", "testkit"), ("tenant", "acme")])?;
    let secret: Vec<u8> = (100..132).collect();
    let kms = KeyReference::new(KeyKind::Kms, "1234abcd-12ab-34cd-56ef-1234567890ab", 3)?;
    let w = WrappedKey::wrap(kms, &kek, &secret, &wctx)?.encode();
    let wvalid =
        |name: &str, bytes: &[u8], kind: u8, id: &[u8], ver: u32, pt: &[u8], c: &Context| {
            json!({"name": name, "wrapping_key": hex::encode(&kek_bytes), "context": map_json(c),
               "wrapped": hex::encode(bytes), "valid": true, "plaintext": hex::encode(pt),
               "kind": kind, "key_id": hex::encode(id), "key_version": ver})
        };
    wv.push(wvalid(
        "kms-key-32-bytes",
        &w,
        2,
        b"1234abcd-12ab-34cd-56ef-1234567890ab",
        3,
        &secret,
        &wctx,
    ));
    let client = KeyReference::new(KeyKind::ClientKek, vec![0xC0; 16], 1)?;
    let blob: Vec<u8> = (0..4096).map(|i| (i % 256) as u8).collect();
    let w2 = WrappedKey::wrap(client, &kek, &blob, &Context::new())?.encode();
    wv.push(wvalid(
        "client-kek-4096-bytes-empty-context",
        &w2,
        4,
        &[0xC0; 16],
        1,
        &blob,
        &Context::new(),
    ));
    let winvalid = |name: &str, bytes: &[u8], key: &[u8], c: &Context, reason: &str| {
        json!({"name": name, "wrapping_key": hex::encode(key), "context": map_json(c),
               "wrapped": hex::encode(bytes), "valid": false, "reason": reason})
    };
    let other_ctx = map(&[("purpose", "testkit"), ("tenant", "evil")])?;
    wv.push(winvalid(
        "wrong-context",
        &w,
        &kek_bytes,
        &other_ctx,
        "encryption context differs",
    ));
    wv.push(winvalid(
        "wrong-key",
        &w,
        &[0xA5; 32],
        &wctx,
        "wrong wrapping key",
    ));
    wv.push(winvalid(
        "bitflip-key-id",
        &flip(&w, 8),
        &kek_bytes,
        &wctx,
        "key id altered",
    ));
    wv.push(winvalid(
        "bitflip-version",
        &flip(&w, 6 + 36 + 3),
        &kek_bytes,
        &wctx,
        "key version altered",
    ));
    wv.push(winvalid(
        "bitflip-nonce",
        &flip(&w, 6 + 36 + 5 + 2),
        &kek_bytes,
        &wctx,
        "nonce altered",
    ));
    wv.push(winvalid(
        "bitflip-ciphertext",
        &flip(&w, w.len() - 20),
        &kek_bytes,
        &wctx,
        "ciphertext altered",
    ));
    wv.push(winvalid(
        "bitflip-tag",
        &flip(&w, w.len() - 1),
        &kek_bytes,
        &wctx,
        "tag altered",
    ));
    wv.push(winvalid(
        "truncated",
        &w[..w.len() - 1],
        &kek_bytes,
        &wctx,
        "truncated",
    ));
    let mut t = w.clone();
    t.push(0);
    wv.push(winvalid(
        "trailing-byte",
        &t,
        &kek_bytes,
        &wctx,
        "trailing byte",
    ));
    wv.push(winvalid(
        "bad-magic",
        &flip(&w, 0),
        &kek_bytes,
        &wctx,
        "bad magic",
    ));
    let mut t = w.clone();
    t[3] = 2;
    wv.push(winvalid(
        "unknown-version",
        &t,
        &kek_bytes,
        &wctx,
        "unknown version",
    ));
    let mut t = w.clone();
    t[4] = 9;
    wv.push(winvalid(
        "unknown-kind",
        &t,
        &kek_bytes,
        &wctx,
        "unknown kind",
    ));
    let mut t = w.clone();
    t[6 + 36 + 4] = 2;
    wv.push(winvalid(
        "unknown-algorithm",
        &t,
        &kek_bytes,
        &wctx,
        "unknown algorithm",
    ));
    for (name, kind, id, ver) in [
        (
            "service-key",
            KeyKind::Service,
            b"coffer-sse-s3".to_vec(),
            2u32,
        ),
        (
            "customer-provided-key",
            KeyKind::CustomerProvided,
            vec![0x5C; 32],
            1,
        ),
        ("root-key", KeyKind::Root, b"root".to_vec(), 1),
    ] {
        let w = WrappedKey::wrap(
            KeyReference::new(kind, id.clone(), ver)?,
            &kek,
            &secret,
            &wctx,
        )?;
        wv.push(wvalid(
            name,
            &w.encode(),
            kind as u8,
            &id,
            ver,
            &secret,
            &wctx,
        ));
    }
    // Field-level rejects on the kms-key vector (id "1234…" is 36 bytes at offset 6).
    let mut t = w.clone();
    t[5] = 0;
    t.drain(6..42);
    wv.push(winvalid("key-id-empty", &t, &kek_bytes, &wctx, "id_len 0"));
    let mut t = w.clone();
    t[42..46].copy_from_slice(&0u32.to_be_bytes());
    wv.push(winvalid(
        "key-version-zero",
        &t,
        &kek_bytes,
        &wctx,
        "key version 0",
    ));
    let mut t = w.clone();
    t[6] = 0xFF;
    wv.push(winvalid(
        "kms-key-id-not-utf8",
        &t,
        &kek_bytes,
        &wctx,
        "kind 0x02 id is not UTF-8",
    ));
    let mut t = w[..59].to_vec();
    t.extend_from_slice(&16u16.to_be_bytes());
    t.extend_from_slice(&[0u8; 16]);
    wv.push(winvalid(
        "ciphertext-too-short",
        &t,
        &kek_bytes,
        &wctx,
        "ct_len 16 (< 17)",
    ));
    let mut t = w[..59].to_vec();
    t.extend_from_slice(&4113u16.to_be_bytes());
    t.extend_from_slice(&[0u8; 4113]);
    wv.push(winvalid(
        "ciphertext-too-long",
        &t,
        &kek_bytes,
        &wctx,
        "ct_len 4113 (> 4112)",
    ));
    let doc = json!({"format": "coffer-wrapped-key-v1", "vectors": wv});
    std::fs::write(
        format!("{dir}/wrapped-key.json"),
        serde_json::to_string_pretty(&doc)? + "\n",
    )?;
    let _ = ENCRYPTED_CHUNK_SIZE;
    println!("wrote {dir}/objects.json and {dir}/wrapped-key.json");
    Ok(())
}
