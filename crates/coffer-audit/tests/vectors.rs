//! The language-neutral audit-log vectors, spec/testkit/audit-log.json: logs written by
//! `AuditLog` under a fixed key and fixed times, as committed, and manipulations of them, each
//! with what `verify` reports. `spec/testkit/audit_check.py` checks the same vectors with an
//! independent implementation of spec/audit-log.md §3–§9 (Python's json, hashlib, hmac).
//!
//! This test checks that the committed vectors still say what `verify` reports. Regenerate
//! them (after a deliberate format change) with
//! `COFFER_WRITE_VECTORS=1 cargo test -p coffer-audit --test vectors`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use coffer_audit::files::Anchor;
use coffer_audit::{parse_line, verify, AuditLog, AuditOptions, Event, Outcome, Phase, SecretKey};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

const KEY: [u8; 32] = [0x42; 32];
const HEAD: &str = "audit.head";

fn vectors_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/testkit/audit-log.json")
}

/// Awkward but valid strings: escapes, control characters, non-ASCII, `/`, U+007F.
const AWKWARD: &str = "a\"b\\c/d\u{7f}e\u{1}f\tg\nh\u{e9}\u{1f600}";

fn event(i: u64) -> Event {
    let request = i.is_multiple_of(2);
    let t0 = OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap(); // 2026-01-01
    Event {
        time: Some(t0 + Duration::milliseconds(i as i64 * 1_234)),
        request_id: format!("req-{:03}", i / 2),
        phase: if request {
            Phase::Request
        } else {
            Phase::Response
        },
        identity: (i % 5 != 4).then(|| format!("arn:aws:iam::000000000000:user/user{}", i % 3)),
        access_key: (i % 5 != 4).then(|| format!("AKIAVECTOR{:06}", i % 3)),
        source: Some("192.0.2.7:40000".into()),
        action: ["s3:PutObject", "kms:GenerateDataKey", "admin:CreateUser"][(i % 3) as usize]
            .into(),
        resource: Some(if i == 3 {
            format!("arn:aws:s3:::bucket/{AWKWARD}")
        } else {
            format!("arn:aws:s3:::bucket/key-{i}")
        }),
        key_id: (i % 3 == 1).then(|| "1234abcd-12ab-34cd-56ef-1234567890ab".into()),
        key_version: (i % 3 == 1).then_some(3),
        context: if i % 4 == 1 {
            vec![
                ("bucket".into(), "bucket".into()),
                (
                    "aws:s3:arn".into(),
                    format!("arn:aws:s3:::bucket/{AWKWARD}"),
                ),
            ]
        } else {
            Vec::new()
        },
        outcome: match (request, i % 7 == 5) {
            (true, _) => Outcome::Pending,
            (false, false) => Outcome::Success,
            (false, true) => Outcome::Failure,
        },
        error_code: (!request && i % 7 == 5).then(|| "AccessDenied".into()),
    }
}

/// The base log: 14 records over three files (rotation at 4000 bytes), context values kept.
fn base_log() -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(
        dir.path(),
        SecretKey::from_slice(&KEY).unwrap(),
        AuditOptions {
            max_file_bytes: 4000,
            include_context_values: true,
        },
    )
    .unwrap();
    for i in 0..14 {
        log.append_blocking(event(i)).unwrap();
    }
    drop(log);
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".jsonl") || name == HEAD {
            files.insert(
                name.clone(),
                std::fs::read_to_string(dir.path().join(&name)).unwrap(),
            );
        }
    }
    assert!(
        files.len() >= 4,
        "three log files and the anchor: {files:?}"
    );
    files
}

fn lines(files: &BTreeMap<String, String>, file: &str) -> Vec<String> {
    files[file].lines().map(|l| format!("{l}\n")).collect()
}

fn set_lines(files: &mut BTreeMap<String, String>, file: &str, lines: &[String]) {
    files.insert(file.to_owned(), lines.concat());
}

/// The log's files (by name) after one manipulation.
fn manipulations(base: &BTreeMap<String, String>) -> Vec<(&'static str, BTreeMap<String, String>)> {
    let f1 = "audit-000001.jsonl";
    let last = base
        .keys()
        .filter(|n| n.ends_with(".jsonl"))
        .max()
        .unwrap()
        .clone();
    let mut out = vec![("intact log over three files", base.clone())];
    let edit = |f: &dyn Fn(&mut BTreeMap<String, String>)| {
        let mut files = base.clone();
        f(&mut files);
        files
    };
    out.push((
        "a field edited",
        edit(&|fs| {
            let mut l = lines(fs, f1);
            l[1] = l[1].replacen("req-000", "req-999", 1);
            set_lines(fs, f1, &l);
        }),
    ));
    out.push((
        "a field edited, hash recomputed",
        edit(&|fs| {
            let mut l = lines(fs, f1);
            let mut r = parse_line(l[1].trim_end().as_bytes()).unwrap();
            r.request_id = "req-999".into();
            let body = r.body_bytes().unwrap();
            r.hash = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body));
            l[1] = format!("{}\n", String::from_utf8(r.line_bytes().unwrap()).unwrap());
            set_lines(fs, f1, &l);
        }),
    ));
    out.push((
        "a MAC digit flipped",
        edit(&|fs| {
            let mut l = lines(fs, f1);
            let s = l[2].trim_end().to_owned();
            let (head, tail) = s.split_at(s.len() - 3); // `…x"}`
            let flipped = if tail.starts_with('0') { '1' } else { '0' };
            l[2] = format!("{head}{flipped}{}\n", &tail[1..]);
            set_lines(fs, f1, &l);
        }),
    ));
    out.push((
        "a record deleted from the middle",
        edit(&|fs| {
            let mut l = lines(fs, f1);
            l.remove(1);
            set_lines(fs, f1, &l);
        }),
    ));
    out.push((
        "two records swapped",
        edit(&|fs| {
            let mut l = lines(fs, f1);
            l.swap(1, 2);
            set_lines(fs, f1, &l);
        }),
    ));
    out.push((
        "a record duplicated",
        edit(&|fs| {
            let mut l = lines(fs, f1);
            let copy = l[1].clone();
            l.insert(3, copy);
            set_lines(fs, f1, &l);
        }),
    ));
    out.push((
        "whitespace added",
        edit(&|fs| {
            let mut l = lines(fs, f1);
            l[0] = l[0].replacen(",", ", ", 1);
            set_lines(fs, f1, &l);
        }),
    ));
    out.push((
        "the last record removed",
        edit(&|fs| {
            let mut l = lines(fs, &last);
            l.pop();
            set_lines(fs, &last, &l);
        }),
    ));
    out.push((
        "the last file removed",
        edit(&|fs| {
            fs.remove(&last);
        }),
    ));
    out.push((
        "a middle file removed",
        edit(&|fs| {
            fs.remove("audit-000002.jsonl");
        }),
    ));
    out.push((
        "a partial last line",
        edit(&|fs| {
            fs.get_mut(&last).unwrap().push_str("{\"v\":1,\"seq\":");
        }),
    ));
    out.push((
        "the anchor deleted",
        edit(&|fs| {
            fs.remove(HEAD);
        }),
    ));
    out.push((
        "the anchor's MAC edited",
        edit(&|fs| {
            let a = fs[HEAD].clone();
            let i = a.rfind("\"}").unwrap() - 1;
            let c = if &a[i..=i] == "0" { "1" } else { "0" };
            fs.insert(HEAD.into(), format!("{}{c}{}", &a[..i], &a[i + 1..]));
        }),
    ));
    out.push((
        "the anchor behind the log (a crash before its update)",
        edit(&|fs| {
            let l = lines(fs, f1);
            let r = parse_line(l[2].trim_end().as_bytes()).unwrap();
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &KEY);
            let a = Anchor::new(r.seq, &r.hash, 1, &key).unwrap();
            fs.insert(
                HEAD.into(),
                format!("{}\n", serde_json::to_string(&a).unwrap()),
            );
        }),
    ));
    out
}

/// What `verify` reports for a log directory holding `files`.
fn report(files: &BTreeMap<String, String>) -> Value {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let r = verify(dir.path(), &SecretKey::from_slice(&KEY).unwrap()).unwrap();
    json!({
        "intact": r.is_intact(),
        "records": r.records,
        "last_seq": r.last_seq,
        "first_bad": r.first_bad.as_ref().map(|b| json!({
            "file": b.file,
            "line": b.line,
            "seq": b.seq,
            "reason": b.reason,
        })),
    })
}

#[test]
fn committed_vectors_say_what_verify_reports() {
    let path = vectors_path();
    if std::env::var_os("COFFER_WRITE_VECTORS").is_some() {
        let base = base_log();
        let vectors: Vec<Value> = manipulations(&base)
            .into_iter()
            .map(|(name, files)| {
                let expect = report(&files);
                json!({"name": name, "files": files, "expect": expect})
            })
            .collect();
        let doc = json!({
            "description": "Audit-log vectors (spec/audit-log.md): each is a log directory's files \
                (every other file name is ignored) and what verify reports for it under `key`. \
                `first_bad.reason` is the Rust verifier's wording, for reading; file, line and seq \
                are the contract. Written by crates/coffer-audit/tests/vectors.rs.",
            "key": hex::encode(KEY),
            "vectors": vectors,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    }
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc["key"], hex::encode(KEY));
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 15, "{} vectors", vectors.len());
    let (mut intact, mut broken) = (0, 0);
    for v in vectors {
        let files: BTreeMap<String, String> = serde_json::from_value(v["files"].clone()).unwrap();
        assert_eq!(report(&files), v["expect"], "vector {}", v["name"]);
        if v["expect"]["intact"] == true {
            intact += 1;
        } else {
            broken += 1;
        }
    }
    // Both verdicts are represented: the vectors can catch a verifier that always says one.
    assert!(
        intact >= 2 && broken >= 12,
        "{intact} intact, {broken} broken"
    );
}

#[test]
fn the_base_log_is_reproducible() {
    // Same key, same events, same times: byte-identical files (so regenerating the vectors
    // changes them only when the format or the writer changes).
    assert_eq!(base_log(), base_log());
}
