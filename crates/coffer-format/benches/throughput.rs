//! Format throughput against raw AES-256-GCM in the same run (issue: format ≥ 0.90 × raw).
//!
//! All four benchmarks process the same 64 MiB in memory on one thread and write into a
//! separate output buffer, so the raw baseline pays for the same copy the format does.
//! `bench/format_ratios.py` turns criterion's estimates into the ratios in
//! docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use coffer_format::chunked::CHUNK_SIZE;
use coffer_format::{
    Context, Header, KeyKind, KeyReference, Metadata, ObjectDecryptor, ObjectEncryptor, SecretKey,
    WrappedKey,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const LEN: usize = 64 << 20;

fn nonce(i: u64) -> Nonce {
    let mut n = [7u8; 12];
    n[4..].copy_from_slice(&i.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// The baseline: copy each 16 KiB piece to `out` and seal it in place, tag appended.
fn raw_seal(key: &LessSafeKey, plain: &[u8], out: &mut Vec<u8>) {
    for (i, piece) in plain.chunks(CHUNK_SIZE).enumerate() {
        let start = out.len();
        out.extend_from_slice(piece);
        let tag = key
            .seal_in_place_separate_tag(nonce(i as u64), Aad::empty(), &mut out[start..])
            .expect("seal");
        out.extend_from_slice(tag.as_ref());
    }
}

fn bench(c: &mut Criterion) {
    let plain: Vec<u8> = (0..LEN).map(|i| (i * 131 % 251) as u8).collect();
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[9u8; 32]).expect("key"));
    let kek = SecretKey::generate().expect("kek");
    let dek = SecretKey::generate().expect("dek");
    let ctx = Context::from_pairs([("bucket", "bench"), ("key", "64mib")]).expect("ctx");
    let reference = KeyReference::new(KeyKind::ClientKek, b"bench".to_vec(), 1).expect("ref");
    let wrapped = WrappedKey::wrap(reference, &kek, dek.expose(), &ctx).expect("wrap");
    let md = Metadata::new();

    let mut g = c.benchmark_group("format_64MiB_single_thread");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(20);
    let mut out: Vec<u8> = Vec::with_capacity(LEN + LEN / 512 + 4096);

    g.bench_function("raw_aes256gcm_seal_16KiB", |b| {
        b.iter(|| {
            out.clear();
            raw_seal(&key, &plain, &mut out);
            out.len()
        })
    });
    g.bench_function("format_encrypt", |b| {
        b.iter(|| {
            let (mut enc, first) = ObjectEncryptor::new(&dek, &wrapped, &ctx, &md).expect("new");
            enc.set_parallel(false);
            out.clear();
            out.extend_from_slice(&first);
            enc.update(&plain, &mut out).expect("update");
            enc.finish(&mut out).expect("finish");
            out.len()
        })
    });

    // Inputs for the decryption benchmarks.
    let mut raw_sealed = Vec::with_capacity(LEN + LEN / 512);
    raw_seal(&key, &plain, &mut raw_sealed);
    let object = coffer_format::encrypt_to_vec(&dek, &wrapped, &ctx, &md, &plain).expect("enc");
    let header_len = u32::from_be_bytes([object[8], object[9], object[10], object[11]]) as usize;
    let header = Header::parse(&object[..header_len]).expect("header");

    g.bench_function("raw_aes256gcm_open_16KiB", |b| {
        b.iter(|| {
            out.clear();
            for (i, piece) in raw_sealed.chunks(CHUNK_SIZE + 16).enumerate() {
                let start = out.len();
                out.extend_from_slice(piece);
                let n = key
                    .open_in_place(nonce(i as u64), Aad::empty(), &mut out[start..])
                    .expect("open")
                    .len();
                out.truncate(start + n);
            }
            out.len()
        })
    });
    g.bench_function("format_decrypt", |b| {
        b.iter(|| {
            let dek = wrapped
                .unwrap(&kek, &ctx)
                .expect("unwrap")
                .into_key()
                .expect("key");
            let (mut dec, _) = ObjectDecryptor::new(dek, &ctx, &header).expect("new");
            dec.set_parallel(false);
            out.clear();
            dec.update(&object[header_len..], &mut out).expect("update");
            dec.finish(&mut out).expect("finish");
            assert_eq!(out.len(), LEN);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
