//! In-process KMS throughput, single thread, warm cache: GenerateDataKey and Decrypt.
//! Each operation is awaited with `block_on` on a current-thread Tokio runtime (a warm cache
//! never reaches the key store, so nothing runs on the blocking pool).
//! Run: `cargo bench -p coffer-kms --bench kms_ops`. Figures go to docs/kms.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use coffer_format::Context;
use coffer_kms::{CallContext, KeyFileSealer, Kms, KmsConfig, Principal};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn kms_ops(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let sealer = KeyFileSealer::new(dir.path().join("root.key"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let kms = rt
        .block_on(Kms::builder(KmsConfig::new(dir.path().join("data")), &sealer).open())
        .unwrap();
    let key = rt
        .block_on(kms.create_key("user/bench", "benchmark", BTreeMap::new()))
        .unwrap();
    let context = Context::from_pairs([
        ("bucket", "photos"),
        ("key", "2024/cat.jpg"),
        ("version", "1"),
    ])
    .unwrap();
    // The proofs are made once (as one request makes them); the benchmark measures the
    // cryptographic operations behind them.
    let root = Principal::authenticated("root", "AKROOT", true);
    let allow = |action| {
        rt.block_on(kms.authorize(&root, &key.key_id, action, &CallContext::default()))
            .unwrap()
    };
    let (generate, decrypt, encrypt) = (
        allow("kms:GenerateDataKey"),
        allow("kms:Decrypt"),
        allow("kms:Encrypt"),
    );
    // Warm the cache.
    let data_key = rt
        .block_on(kms.generate_data_key(&generate, &context))
        .unwrap();
    rt.block_on(kms.decrypt(&decrypt, &data_key.ciphertext_blob, &context))
        .unwrap();

    let mut group = c.benchmark_group("kms");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("generate_data_key", |b| {
        b.iter(|| {
            rt.block_on(kms.generate_data_key(&generate, &context))
                .unwrap()
        })
    });
    group.bench_function("decrypt", |b| {
        b.iter(|| {
            rt.block_on(kms.decrypt(&decrypt, &data_key.ciphertext_blob, &context))
                .unwrap()
        })
    });
    group.bench_function("encrypt_32_bytes", |b| {
        b.iter(|| {
            rt.block_on(kms.encrypt(&encrypt, &[7u8; 32], &context))
                .unwrap()
        })
    });
    // What `block_on` itself costs: subtract it from the figures above for the operations'
    // own time (a server awaits them inside its runtime, with no `block_on` per call).
    group.bench_function("block_on_empty_future", |b| {
        b.iter(|| rt.block_on(async {}))
    });
    group.finish();
}

criterion_group!(benches, kms_ops);
criterion_main!(benches);
