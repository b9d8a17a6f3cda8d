//! Append throughput: W concurrent writers (tokio tasks) append N records in total to a
//! fresh log in DIR, then the anchor-update strategies are timed on their own (spec §12):
//!
//! `cargo run --release -p coffer-audit --example throughput -- DIR [N] [W]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use coffer_audit::{AuditLog, AuditOptions, Event, Outcome, Phase, SecretKey};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let base = std::path::PathBuf::from(args.next().expect("usage: throughput DIR [N] [W]"));
    let n: u64 = args.next().map_or(20_000, |s| s.parse().unwrap());
    let writers: u64 = args.next().map_or(8, |s| s.parse().unwrap());
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let log = Arc::new(
        AuditLog::open(
            &tmp.path().join("audit"),
            SecretKey::generate().unwrap(),
            AuditOptions::default(),
        )
        .unwrap(),
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            for i in 0..n / writers {
                log.append(Event {
                    request_id: format!("req-{w}-{i}"),
                    phase: Phase::Response,
                    identity: Some("arn:aws:iam::000000000000:user/alice".into()),
                    access_key: Some("CF0123456789ABCDEF01".into()),
                    source: Some("192.0.2.10:51234".into()),
                    action: "kms:Decrypt".into(),
                    resource: Some("arn:aws:kms:local:000000000000:key/1234abcd".into()),
                    key_id: Some("1234abcd-12ab-34cd-56ef-1234567890ab".into()),
                    key_version: Some(3),
                    context: vec![("aws:s3:arn".into(), "arn:aws:s3:::b/k".into())],
                    outcome: Outcome::Success,
                    ..Event::default()
                })
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let total = n / writers * writers;
    drop(log);
    let size = std::fs::metadata(tmp.path().join("audit/audit-000001.jsonl"))
        .unwrap()
        .len();
    println!(
        "{total} records, {writers} writers: {:.0} records/s ({:.1} µs each, {} bytes/record)",
        total as f64 / secs,
        secs * 1e6 / total as f64,
        size / total
    );

    // The anchor alone: rename-based replacement vs an in-place pwrite.
    let dir = tmp.path().join("anchor");
    std::fs::create_dir(&dir).unwrap();
    let dir_handle = std::fs::File::open(&dir).unwrap();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[1; 32]);
    let rounds = 200;
    let start = Instant::now();
    for i in 0..rounds {
        let a =
            coffer_audit::files::Anchor::new(i, coffer_audit::record::ZERO_HASH, 1, &key).unwrap();
        coffer_audit::files::write_anchor(&dir, &dir_handle, &a).unwrap();
    }
    let rename_us = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let mut f = std::fs::File::create(dir.join("inplace")).unwrap();
    f.write_all(&[0; 256]).unwrap();
    let start = Instant::now();
    for i in 0..rounds {
        f.write_at(&[i as u8; 256], 0).unwrap();
        f.sync_data().unwrap();
    }
    let pwrite_us = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let mut log_file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("log"))
        .unwrap();
    let start = Instant::now();
    for _ in 0..rounds {
        log_file.write_all(&[b'x'; 600]).unwrap();
        log_file.sync_data().unwrap();
    }
    let append_us = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    println!(
        "per batch: log append+fdatasync {append_us:.0} µs; anchor by temp+fdatasync+rename+dir fsync \
         {rename_us:.0} µs, by in-place pwrite+fdatasync {pwrite_us:.0} µs"
    );
}
