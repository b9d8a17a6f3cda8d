//! Writes N sample records into `<data-dir>/audit` with the key the server uses
//! (`derive_subsystem_key("audit/mac/v1")` of the KMS sealed by `<data-dir>/root.key`,
//! created if absent), to try `coffer audit verify` / `query` by hand:
//!
//! `cargo run -p coffer-audit --example write_log -- ./coffer-data 100`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use coffer_audit::{AuditLog, AuditOptions, Event, Outcome, Phase};
use coffer_kms::{KeyFileSealer, Kms, KmsConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let data = PathBuf::from(args.next().expect("usage: write_log DATA_DIR [N]"));
    let n: u64 = args.next().map_or(100, |s| s.parse().expect("N"));
    let sealer = KeyFileSealer::new(data.join("root.key"));
    let kms = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(Kms::builder(KmsConfig::new(data.join("kms")), &sealer).open())
        .expect("open the KMS");
    let key = kms
        .derive_subsystem_key(coffer_audit::MAC_KEY_LABEL)
        .unwrap();
    let log = AuditLog::open(&data.join("audit"), key, AuditOptions::default()).unwrap();
    for i in 0..n {
        let response = i % 2 == 1;
        log.append_blocking(Event {
            request_id: format!("req-{}", i / 2),
            phase: if response {
                Phase::Response
            } else {
                Phase::Request
            },
            identity: Some(format!("arn:aws:iam::000000000000:user/u{}", i % 3)),
            source: Some("127.0.0.1:50000".into()),
            action: if i % 4 < 2 {
                "kms:Decrypt"
            } else {
                "s3:PutObject"
            }
            .into(),
            key_id: Some(format!("key-{}", i % 5)),
            key_version: Some(1),
            context: vec![("bucket".into(), "photos".into())],
            outcome: if response {
                Outcome::Success
            } else {
                Outcome::Pending
            },
            ..Event::default()
        })
        .unwrap();
    }
    println!("wrote {n} records to {}", data.join("audit").display());
}
