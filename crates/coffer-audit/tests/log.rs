//! The writer against real files: concurrency, reopening, rotation, query, fail-closed
//! behaviour on real I/O failures, and what is never written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use coffer_audit::{
    query, verify, AuditError, AuditLog, AuditOptions, Event, Filter, Outcome, Phase, SecretKey,
};
use time::OffsetDateTime;

fn key() -> SecretKey {
    SecretKey::from_slice(&[42u8; 32]).unwrap()
}

fn event(i: u64) -> Event {
    let response = i % 2 == 1;
    Event {
        time: Some(OffsetDateTime::from_unix_timestamp(1_700_000_000 + i as i64).unwrap()),
        request_id: format!("req-{i}"),
        phase: if response {
            Phase::Response
        } else {
            Phase::Request
        },
        identity: Some(format!("arn:aws:iam::000000000000:user/u{}", i % 3)),
        access_key: Some("CFACCESSKEY".into()),
        source: Some("127.0.0.1:50000".into()),
        action: if i % 4 < 2 {
            "kms:Decrypt".into()
        } else {
            "s3:PutObject".into()
        },
        resource: Some(format!("arn:aws:s3:::bucket/object-{i}")),
        key_id: Some(format!("key-{}", i % 5)),
        key_version: Some(1),
        context: vec![("team".into(), "red".into())],
        outcome: if response {
            Outcome::Success
        } else {
            Outcome::Pending
        },
        error_code: None,
    }
}

fn lines(dir: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn log_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("audit-"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_reopen_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = Arc::new(AuditLog::open(&dir, key(), AuditOptions::default()).unwrap());
    // One writer per directory.
    assert!(matches!(
        AuditLog::open(&dir, key(), AuditOptions::default()),
        Err(AuditError::Locked(_))
    ));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..125u64 {
                seqs.push(log.append(event(t * 1000 + i)).await.unwrap());
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1000).collect::<Vec<u64>>());
    drop(log);

    let report = verify(&dir, &key()).unwrap();
    assert!(report.is_intact(), "{:?}", report.first_bad);
    assert_eq!(
        (report.files, report.records, report.last_seq),
        (1, 1000, 1000)
    );
    // Every line holds the seq of its position, and each request id appears once.
    let all = lines(&dir, "audit-000001.jsonl");
    let mut ids = std::collections::HashSet::new();
    for (n, line) in all.iter().enumerate() {
        let r = coffer_audit::parse_line(line.as_bytes()).unwrap();
        assert_eq!(r.seq, n as u64 + 1);
        assert!(ids.insert(r.request_id));
    }

    let log = AuditLog::open(&dir, key(), AuditOptions::default()).unwrap();
    for i in 0..10 {
        assert_eq!(log.append_blocking(event(i)).unwrap(), 1001 + i);
    }
    drop(log);
    let report = verify(&dir, &key()).unwrap();
    assert!(report.is_intact(), "{:?}", report.first_bad);
    assert_eq!(report.records, 1010);

    // Another key: the very first MAC fails.
    let other = SecretKey::from_slice(&[1u8; 32]).unwrap();
    let bad = verify(&dir, &other).unwrap().first_bad.unwrap();
    assert_eq!((bad.line, bad.seq), (1, Some(1)));
    assert!(bad.reason.contains("MAC"), "{}", bad.reason);
    assert!(matches!(
        AuditLog::open(&dir, other, AuditOptions::default()),
        Err(AuditError::Corrupt { .. })
    ));
}

#[test]
fn rotation_keeps_one_chain_and_query_spans_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = AuditOptions {
        max_file_bytes: 4000,
        ..AuditOptions::default()
    };
    let log = AuditLog::open(dir, key(), opts.clone()).unwrap();
    for i in 0..40 {
        log.append_blocking(event(i)).unwrap();
    }
    drop(log);
    // Reopen in the middle: the chain continues in the current file.
    let log = AuditLog::open(dir, key(), opts).unwrap();
    for i in 40..60 {
        assert_eq!(log.append_blocking(event(i)).unwrap(), i + 1);
    }
    drop(log);
    let files = log_files(dir);
    assert!(files.len() >= 5, "{files:?}");
    for f in &files {
        let size = std::fs::metadata(dir.join(f)).unwrap().len();
        assert!(size <= 4000, "{f}: {size} bytes");
    }
    let report = verify(dir, &key()).unwrap();
    assert!(report.is_intact(), "{:?}", report.first_bad);
    assert_eq!((report.files, report.records), (files.len(), 60));
    // The first record of file 2 chains to the last record of file 1.
    let last1 = coffer_audit::parse_line(lines(dir, &files[0]).last().unwrap().as_bytes()).unwrap();
    let first2 = coffer_audit::parse_line(lines(dir, &files[1])[0].as_bytes()).unwrap();
    assert_eq!(first2.prev, last1.hash);
    assert_eq!(first2.seq, last1.seq + 1);

    let run = |filter: Filter| {
        let mut out = Vec::new();
        let n = query(dir, &filter, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), n);
        let seqs: Vec<u64> = text
            .lines()
            .map(|l| coffer_audit::parse_line(l.as_bytes()).unwrap().seq)
            .collect();
        seqs
    };
    // All 60 records, across every file, in order.
    assert_eq!(run(Filter::default()), (1..=60).collect::<Vec<_>>());
    // event(i) is seq i+1; key-{i%5}, user u{i%3}, kms for i%4 < 2.
    let expect = |pred: &dyn Fn(u64) -> bool| -> Vec<u64> {
        (0..60).filter(|&i| pred(i)).map(|i| i + 1).collect()
    };
    assert_eq!(
        run(Filter {
            key_id: Some("key-2".into()),
            ..Filter::default()
        }),
        expect(&|i| i % 5 == 2)
    );
    assert_eq!(
        run(Filter {
            action: Some("kms:*".into()),
            identity: Some("arn:aws:iam::000000000000:user/u1".into()),
            ..Filter::default()
        }),
        expect(&|i| i % 4 < 2 && i % 3 == 1)
    );
    assert_eq!(
        run(Filter {
            action: Some("*Object".into()),
            since: Some(OffsetDateTime::from_unix_timestamp(1_700_000_010).unwrap()),
            until: Some(OffsetDateTime::from_unix_timestamp(1_700_000_050).unwrap()),
            ..Filter::default()
        }),
        expect(&|i| i % 4 >= 2 && (10..50).contains(&i))
    );
    assert!(run(Filter {
        key_id: Some("no-such-key".into()),
        ..Filter::default()
    })
    .is_empty());
}

#[test]
fn context_values_are_not_written_unless_configured() {
    let secretish = "VALUE-7f3a9c-MUST-NOT-APPEAR";
    for include in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(
            tmp.path(),
            key(),
            AuditOptions {
                include_context_values: include,
                ..AuditOptions::default()
            },
        )
        .unwrap();
        let mut ev = event(0);
        ev.context = vec![
            ("department".into(), secretish.into()),
            ("aws:s3:arn".into(), format!("arn:{secretish}")),
        ];
        log.append_blocking(ev).unwrap();
        drop(log);
        let mut found_value = false;
        let mut found_key = false;
        for entry in std::fs::read_dir(tmp.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            found_value |= text.contains(secretish);
            found_key |= text.contains("\"department\"");
            // The MAC key never reaches the disk either.
            assert!(!bytes.windows(32).any(|w| w == [42u8; 32]));
            assert!(!text.contains(&"2a".repeat(32)));
        }
        assert!(found_key, "context keys are logged");
        assert_eq!(found_value, include, "values logged only when configured");
    }
}

#[test]
fn fail_closed_when_rotation_cannot_create_the_next_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = AuditOptions {
        max_file_bytes: 1500,
        ..AuditOptions::default()
    };
    let log = AuditLog::open(dir, key(), opts.clone()).unwrap();
    log.append_blocking(event(0)).unwrap();
    log.append_blocking(event(1)).unwrap();
    // The next record needs audit-000002.jsonl; a directory is in the way (a real EEXIST
    // from the kernel, which chmod could not produce for root).
    std::fs::create_dir(dir.join("audit-000002.jsonl")).unwrap();
    let file1 = std::fs::read(dir.join("audit-000001.jsonl")).unwrap();
    let err = log.append_blocking(event(2)).unwrap_err();
    assert!(
        matches!(err, AuditError::Failed(ref m) if m.contains("audit-000002")),
        "{err}"
    );
    // Fail-closed: everything after fails too, even once the obstacle is gone.
    std::fs::remove_dir(dir.join("audit-000002.jsonl")).unwrap();
    assert!(matches!(
        log.append_blocking(event(3)),
        Err(AuditError::Failed(_))
    ));
    drop(log);
    assert_eq!(
        std::fs::read(dir.join("audit-000001.jsonl")).unwrap(),
        file1
    );
    let report = verify(dir, &key()).unwrap();
    assert!(report.is_intact(), "{:?}", report.first_bad);
    assert_eq!(report.records, 2);
    // Reopened, the log continues where it stopped: no gap.
    let log = AuditLog::open(dir, key(), opts).unwrap();
    assert_eq!(log.append_blocking(event(2)).unwrap(), 3);
    drop(log);
    assert!(verify(dir, &key()).unwrap().is_intact());
}

const CHILD_ENV: &str = "COFFER_AUDIT_EFBIG_DIR";

/// Runs in a child process whose file-size limit is 8 KiB (RLIMIT_FSIZE, SIGXFSZ ignored):
/// the kernel refuses the write that crosses it with EFBIG, part-way through a record.
#[test]
#[ignore = "run by fail_closed_when_the_kernel_refuses_a_write, in a child process"]
fn efbig_child() {
    let dir = std::path::PathBuf::from(std::env::var_os(CHILD_ENV).unwrap());
    let log = AuditLog::open(&dir, key(), AuditOptions::default()).unwrap();
    let mut acked = 0;
    let mut first_error = None;
    for i in 0..100 {
        match log.append_blocking(event(i)) {
            Ok(seq) => {
                assert_eq!(seq, i + 1);
                acked += 1;
            }
            Err(e) => {
                first_error = Some(e);
                break;
            }
        }
    }
    let e = first_error.expect("the 8 KiB limit was never hit");
    assert!(
        matches!(e, AuditError::Failed(ref m) if m.contains("write audit-000001.jsonl")),
        "{e}"
    );
    // A small record that would fit fails as well: the log is closed for good.
    assert!(matches!(
        log.append_blocking(Event {
            action: "s3:GetObject".into(),
            ..Event::default()
        }),
        Err(AuditError::Failed(_))
    ));
    println!("ACKED={acked}");
}

#[test]
fn fail_closed_when_the_kernel_refuses_a_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let exe = std::env::current_exe().unwrap();
    // `ulimit -f` counts 512-byte blocks in dash and bash's POSIX mode alike: 16 = 8 KiB.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 16 && exec \"$0\" efbig_child --exact --ignored --nocapture --test-threads=1")
        .arg(&exe)
        .env(CHILD_ENV, &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acked: u64 = stdout
        .split("ACKED=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("child reported its count");
    assert!(acked > 3, "{acked}");
    let len = std::fs::metadata(dir.join("audit-000001.jsonl"))
        .unwrap()
        .len();
    assert!(len <= 8192, "{len}");
    // The partly written record was cut off again: the log is exactly the acked records.
    let report = verify(&dir, &key()).unwrap();
    assert!(report.is_intact(), "{:?}", report.first_bad);
    assert_eq!(report.records, acked);
    assert!(report.notes.is_empty(), "{:?}", report.notes);
}
