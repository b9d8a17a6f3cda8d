//! Every manipulation of spec §9's list, each on a fresh log, with the first bad record
//! `verify` must report (file, line, seq, reason), and what `open` does with the result.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use coffer_audit::{
    parse_line, verify, AuditError, AuditLog, AuditOptions, Event, Outcome, Phase, SecretKey,
};

const F1: &str = "audit-000001.jsonl";

fn key() -> SecretKey {
    SecretKey::from_slice(&[9u8; 32]).unwrap()
}

fn event(i: u64) -> Event {
    let request = i & 1 == 0; // seq = i + 1: odd seqs are requests, even seqs responses
    Event {
        request_id: format!("req-{}", i / 2),
        phase: if request {
            Phase::Request
        } else {
            Phase::Response
        },
        identity: Some(format!("arn:aws:iam::000000000000:user/user{i}")),
        source: Some("192.0.2.1:4000".into()),
        action: "kms:GenerateDataKey".into(),
        key_id: Some("1234abcd-12ab-34cd-56ef-1234567890ab".into()),
        key_version: Some(2),
        context: vec![("bucket".into(), "photos".into())],
        outcome: if request {
            Outcome::Pending
        } else {
            Outcome::Success
        },
        ..Event::default()
    }
}

/// A log of `n` records in files of at most `max` bytes (0 = one file).
fn make_log(n: u64, max: u64) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(
        tmp.path(),
        key(),
        AuditOptions {
            max_file_bytes: max,
            ..AuditOptions::default()
        },
    )
    .unwrap();
    for i in 0..n {
        log.append_blocking(event(i)).unwrap();
    }
    drop(log);
    assert!(verify(tmp.path(), &key()).unwrap().is_intact());
    tmp
}

fn read_lines(dir: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(dir: &Path, file: &str, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(dir.join(file), text).unwrap();
}

/// Asserts verify's first bad record, and that `open` refuses the log.
fn assert_bad(
    dir: &Path,
    file: &str,
    line: u64,
    seq: Option<u64>,
    reason: &str,
) -> coffer_audit::VerifyReport {
    let report = verify(dir, &key()).unwrap();
    let bad = report.first_bad.clone().expect("verify found nothing");
    assert_eq!(
        (bad.file.as_str(), bad.line, bad.seq),
        (file, line, seq),
        "{bad}"
    );
    assert!(bad.reason.contains(reason), "reason: {}", bad.reason);
    assert!(
        bad.to_string()
            .starts_with(&format!("file {file} line {line} seq ")),
        "{bad}"
    );
    report
}

fn assert_open_refused(dir: &Path) {
    match AuditLog::open(dir, key(), AuditOptions::default()) {
        Err(AuditError::Corrupt { .. }) => {}
        Err(e) => panic!("refused with the wrong error: {e}"),
        Ok(_) => panic!("opened a tampered log"),
    }
}

#[test]
fn edited_identity() {
    let tmp = make_log(10, 0);
    let mut lines = read_lines(tmp.path(), F1);
    lines[4] = lines[4].replace("user/user4", "user/admin");
    write_lines(tmp.path(), F1, &lines);
    let report = assert_bad(tmp.path(), F1, 5, Some(5), "hash does not match");
    assert_eq!((report.records, report.last_seq), (4, 4));
    // The tail (the last record and the anchor) is intact, so open does not scan this far
    // back; verify is what finds edits in the middle.
}

#[test]
fn edited_outcome() {
    let tmp = make_log(10, 0);
    let mut lines = read_lines(tmp.path(), F1);
    assert!(lines[9].contains("\"outcome\":\"success\""));
    lines[9] = lines[9].replace("\"outcome\":\"success\"", "\"outcome\":\"failure\"");
    write_lines(tmp.path(), F1, &lines);
    assert_bad(tmp.path(), F1, 10, Some(10), "hash does not match");
    assert_open_refused(tmp.path());
}

#[test]
fn flipped_mac_digit() {
    let tmp = make_log(10, 0);
    let mut lines = read_lines(tmp.path(), F1);
    let l = &lines[2];
    let pos = l.len() - 3; // inside the mac's hex, before `"}`
    let old = l.as_bytes()[pos];
    let new = if old == b'0' { '1' } else { '0' };
    lines[2] = format!("{}{new}{}", &l[..pos], &l[pos + 1..]);
    write_lines(tmp.path(), F1, &lines);
    assert_bad(tmp.path(), F1, 3, Some(3), "MAC does not verify");
}

#[test]
fn deleted_middle_record() {
    let tmp = make_log(10, 0);
    let mut lines = read_lines(tmp.path(), F1);
    lines.remove(3); // seq 4
    write_lines(tmp.path(), F1, &lines);
    assert_bad(tmp.path(), F1, 4, Some(5), "missing");
}

#[test]
fn inserted_copy() {
    let tmp = make_log(10, 0);
    let mut lines = read_lines(tmp.path(), F1);
    let copy = lines[1].clone();
    lines.insert(6, copy); // seq 2 again, after seq 6
    write_lines(tmp.path(), F1, &lines);
    assert_bad(tmp.path(), F1, 7, Some(2), "inserted");
}

#[test]
fn swapped_records() {
    let tmp = make_log(10, 0);
    let mut lines = read_lines(tmp.path(), F1);
    lines.swap(2, 3);
    write_lines(tmp.path(), F1, &lines);
    assert_bad(tmp.path(), F1, 3, Some(4), "out of order");
}

#[test]
fn swapped_with_rewritten_seqs_breaks_the_chain() {
    // Renumbering the swapped records (and recomputing their public hashes) still fails:
    // the chain link, then the MAC.
    let tmp = make_log(10, 0);
    let mut lines = read_lines(tmp.path(), F1);
    lines.swap(2, 3);
    for (i, seq) in [(2usize, 3u64), (3, 4)] {
        let mut r = parse_line(lines[i].as_bytes()).unwrap();
        r.seq = seq;
        lines[i] = String::from_utf8(r.line_bytes().unwrap()).unwrap();
    }
    write_lines(tmp.path(), F1, &lines);
    assert_bad(tmp.path(), F1, 3, Some(3), "chain broken");
}

#[test]
fn last_record_removed() {
    let tmp = make_log(10, 0);
    let mut lines = read_lines(tmp.path(), F1);
    lines.pop();
    write_lines(tmp.path(), F1, &lines);
    assert_bad(tmp.path(), F1, 10, Some(10), "log truncated after seq 9");
    assert_open_refused(tmp.path());
}

#[test]
fn last_file_removed() {
    let tmp = make_log(12, 1600); // two records per file
    let files: Vec<String> = (1..=6).map(|n| format!("audit-{n:06}.jsonl")).collect();
    for f in &files {
        assert_eq!(read_lines(tmp.path(), f).len(), 2, "{f}");
    }
    std::fs::remove_file(tmp.path().join(&files[5])).unwrap();
    assert_bad(
        tmp.path(),
        &files[4],
        3,
        Some(11),
        "log truncated after seq 10: the anchor records seq 12 in audit-000006.jsonl, which is missing",
    );
    assert_open_refused(tmp.path());
}

#[test]
fn middle_file_removed() {
    let tmp = make_log(12, 1600);
    std::fs::remove_file(tmp.path().join("audit-000003.jsonl")).unwrap();
    assert_bad(tmp.path(), "audit-000003.jsonl", 0, Some(5), "file missing");
}

#[test]
fn partial_last_line() {
    let tmp = make_log(10, 0);
    let path = tmp.path().join(F1);
    let bytes = std::fs::read(&path).unwrap();
    let cut = bytes.len() - 40;
    std::fs::write(&path, &bytes[..cut]).unwrap();
    assert_bad(tmp.path(), F1, 10, Some(10), "incomplete last line");
    // Record 10 was lost with it, and the anchor says so: open refuses.
    assert_open_refused(tmp.path());
}

#[test]
fn interrupted_write_after_the_anchor_is_repaired_on_open() {
    // A crash mid-write leaves a fragment after the last anchored record.
    let tmp = make_log(10, 0);
    let path = tmp.path().join(F1);
    let mut bytes = std::fs::read(&path).unwrap();
    let whole = bytes.len() as u64;
    let fragment = b"{\"v\":1,\"seq\":11,\"ti";
    bytes.extend_from_slice(fragment);
    std::fs::write(&path, &bytes).unwrap();
    assert_bad(tmp.path(), F1, 11, Some(11), "incomplete last line");
    let log = AuditLog::open(tmp.path(), key(), AuditOptions::default()).unwrap();
    assert_eq!(log.append_blocking(event(10)).unwrap(), 12);
    drop(log);
    let report = verify(tmp.path(), &key()).unwrap();
    assert!(report.is_intact(), "{:?}", report.first_bad);
    let lines = read_lines(tmp.path(), F1);
    let repair = parse_line(lines[10].as_bytes()).unwrap();
    assert_eq!(repair.action, "audit:RemoveIncompleteRecord");
    assert_eq!(
        repair.resource.as_deref(),
        Some(&*format!("{F1}@{whole}+{}", fragment.len()))
    );
}

#[test]
fn anchor_behind_after_a_crash_is_adopted() {
    // The log was fsynced but the anchor update was lost: records past the anchor are
    // authentic (their MACs verify), so verify passes with a note and open adopts them.
    let tmp = make_log(5, 0);
    let old_anchor = std::fs::read(tmp.path().join("audit.head")).unwrap();
    let log = AuditLog::open(tmp.path(), key(), AuditOptions::default()).unwrap();
    for i in 5..8 {
        log.append_blocking(event(i)).unwrap();
    }
    drop(log);
    std::fs::write(tmp.path().join("audit.head"), &old_anchor).unwrap();
    let report = verify(tmp.path(), &key()).unwrap();
    assert!(report.is_intact(), "{:?}", report.first_bad);
    assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
    let log = AuditLog::open(tmp.path(), key(), AuditOptions::default()).unwrap();
    assert_eq!(log.append_blocking(event(8)).unwrap(), 9);
    drop(log);
    let report = verify(tmp.path(), &key()).unwrap();
    assert!(report.is_intact() && report.notes.is_empty(), "{report:?}");
}

#[test]
fn anchor_deleted() {
    let tmp = make_log(10, 0);
    std::fs::remove_file(tmp.path().join("audit.head")).unwrap();
    assert_bad(tmp.path(), "audit.head", 0, None, "anchor missing");
    assert_open_refused(tmp.path());
}

#[test]
fn anchor_edited() {
    let tmp = make_log(10, 0);
    let path = tmp.path().join("audit.head");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"seq\":10", "\"seq\":9")).unwrap();
    assert_bad(
        tmp.path(),
        "audit.head",
        0,
        None,
        "anchor MAC does not verify",
    );
    assert_open_refused(tmp.path());
}

#[test]
fn edit_with_recomputed_hash_is_caught_by_the_mac() {
    let tmp = make_log(10, 0);
    let mut lines = read_lines(tmp.path(), F1);
    let mut r = parse_line(lines[6].as_bytes()).unwrap();
    r.identity = Some("arn:aws:iam::000000000000:user/nobody".into());
    // Everything an attacker without the key can do: recompute the public hash.
    let body = r.body_bytes().unwrap();
    r.hash = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body));
    lines[6] = String::from_utf8(r.line_bytes().unwrap()).unwrap();
    write_lines(tmp.path(), F1, &lines);
    assert_bad(tmp.path(), F1, 7, Some(7), "MAC does not verify");
}

#[test]
fn non_canonical_whitespace() {
    let tmp = make_log(10, 0);
    let mut lines = read_lines(tmp.path(), F1);
    lines[1] = lines[1].replacen(",", ", ", 1);
    write_lines(tmp.path(), F1, &lines);
    assert_bad(tmp.path(), F1, 2, None, "canonical");
}

#[test]
fn whole_log_replaced_by_a_shorter_valid_one() {
    // A log made with the same key but fewer records: the anchor of the longer log exposes
    // the substitution (an attacker with the key could forge both: spec §11).
    let long = make_log(10, 0);
    let short = make_log(6, 0);
    std::fs::copy(short.path().join(F1), long.path().join(F1)).unwrap();
    assert_bad(long.path(), F1, 7, Some(7), "log truncated after seq 6");
}
