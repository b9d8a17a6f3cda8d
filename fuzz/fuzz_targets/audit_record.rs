//! The audit log's readers (crates/coffer-audit, spec/audit-log.md §9): `parse_line`,
//! the anchor parser, and `verify` / `query` / `AuditLog::open` over a directory holding the
//! fuzzed log file and anchor. No panic; an accepted line is canonical (re-serializes to
//! exactly its bytes); a log verify calls intact queries without error and opens.
//!
//! Input: byte 0 = mode (bits 0-1), then:
//! - mode 0: one log line (without its newline) to `parse_line`;
//! - mode 1: an anchor file's bytes to `Anchor::parse` under the fuzz key;
//! - mode 2: `log file \xff\xfe anchor file` written to a directory, then `verify` and
//!   `query` (the seeds are valid logs under the fuzz key, so mutations reach the chain,
//!   hash, MAC and anchor checks);
//! - mode 3: as mode 2, then also `AuditLog::open` (the tail recovery of spec §7).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use coffer_audit::files::Anchor;
use coffer_audit::{AuditLog, AuditOptions, Filter, SecretKey};
use libfuzzer_sys::fuzz_target;

/// The key the seeds (fuzz/seeds/audit_record) were MACed with.
const FUZZ_KEY: [u8; 32] = [0x11; 32];

fn key() -> SecretKey {
    SecretKey::from_slice(&FUZZ_KEY).unwrap()
}

fn work_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("coffer-fuzz-audit-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(2).position(|w| w == [0xff, 0xfe]) {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    match head & 3 {
        0 => {
            if let Ok(record) = coffer_audit::parse_line(rest) {
                assert_eq!(
                    record.line_bytes().unwrap(),
                    rest,
                    "accepted a non-canonical line"
                );
            }
        }
        1 => {
            let mac = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &FUZZ_KEY);
            if let Ok(a) = Anchor::parse(rest, &mac) {
                let mut again = serde_json::to_vec(&a).unwrap();
                again.push(b'\n');
                assert_eq!(again, rest, "accepted a non-canonical anchor");
            }
        }
        mode => {
            let (log, anchor) = split(rest);
            let dir = work_dir().join("log");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("audit-000001.jsonl"), log).unwrap();
            if !anchor.is_empty() {
                std::fs::write(dir.join("audit.head"), anchor).unwrap();
            }
            let report = coffer_audit::verify(&dir, &key()).unwrap();
            let queried = coffer_audit::query(&dir, &Filter::default(), &mut std::io::sink());
            if report.is_intact() {
                assert_eq!(queried.unwrap() as u64, report.records);
            }
            if mode == 3 {
                match AuditLog::open(&dir, key(), AuditOptions::default()) {
                    Ok(log) => drop(log),
                    // An intact log (even one whose anchor is behind) always opens.
                    Err(e) => assert!(!report.is_intact(), "an intact log did not open: {e}"),
                }
                // Whatever open did (cut a torn tail and logged it, adopted records), the
                // result verifies when the input did.
                if report.is_intact() {
                    let after = coffer_audit::verify(&dir, &key()).unwrap();
                    assert!(
                        after.is_intact(),
                        "open broke an intact log: {:?}",
                        after.first_bad
                    );
                }
            }
        }
    }
});
