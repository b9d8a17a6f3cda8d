//! The conformance suite every [`AuditSink`] must pass (STYLE.md §7).
//!
//! A sink's tests implement [`Harness`] and call [`run`] inside a multi-threaded Tokio
//! runtime. A broken rule panics with the rule's name, like any test assertion; an
//! unexpected sink error is returned. `tests/conformance.rs` runs it against
//! [`AuditLog`](crate::AuditLog) (one file, and one file per record) and
//! [`MemorySink`](crate::MemorySink), and against deliberately broken sinks to show that the
//! checks fail when a rule is broken.

use std::sync::Arc;
use std::task::{Context, Waker};

use aws_lc_rs::{digest, hmac};
use time::OffsetDateTime;

use crate::error::{AuditError, Result};
use crate::record::{parse_line, Event, Outcome, Phase, Record, MAX_FIELD, ZERO_HASH};
use crate::sink::AuditSink;
use crate::verify::VerifyReport;

/// Gives the suite sinks to test and lets it play the storage under them.
pub trait Harness {
    /// A new sink over new, empty storage.
    fn fresh(&mut self) -> Arc<dyn AuditSink>;
    /// The storage of the sink most recently returned by `fresh`, opened again; `None` for a
    /// sink that does not persist (its reopen checks are skipped). The suite drops its
    /// handles before calling this.
    fn reopen(&mut self) -> Option<Arc<dyn AuditSink>>;
    /// The records in that storage, one line each (canonical bytes, no newline), in stored
    /// order. A torn record (bytes after the last complete line) is returned as a line too.
    fn stored(&mut self) -> Vec<Vec<u8>>;
    /// Replaces the records in that storage with `lines`, as an attacker who can write the
    /// storage but does not hold the key would: anything else (the anchor) stays as it is.
    fn rewrite(&mut self, lines: Vec<Vec<u8>>);
    /// The ways this harness can make the storage fail; each is tried on a fresh sink, and
    /// there must be at least one (the fail-closed rule must be tested).
    fn faults(&self) -> Vec<&'static str>;
    /// Makes that storage fail with `fault`, one of [`faults`](Self::faults), until
    /// [`repair`](Self::repair).
    fn inject(&mut self, fault: &str);
    /// Takes the injected fault away (space freed, the device back).
    fn repair(&mut self);
}

/// Runs every check.
pub async fn run(h: &mut dyn Harness) -> Result<()> {
    appends_are_durable_numbered_and_chained(h).await?;
    invalid_events_write_nothing_and_close_nothing(h).await?;
    concurrent_appends_share_one_chain(h).await?;
    a_dropped_append_leaves_no_gap(h).await?;
    records_survive_reopen_and_the_chain_continues(h).await?;
    verify_reports_every_manipulation(h).await?;
    a_failed_append_fails_closed_and_leaves_no_record(h).await?;
    Ok(())
}

/// A value that must never reach the storage: encryption-context values are dropped unless
/// the sink was opened with `include_context_values` (the harnesses' sinks are not).
pub const CONTEXT_VALUE: &str = "context-value-that-must-not-be-stored";

/// Event `i`: request id `req-{i}`, a request for even `i`, a response for odd `i`, a fixed
/// time, every optional field set, one encryption-context entry.
pub fn sample_event(i: u64) -> Event {
    let request = i & 1 == 0;
    Event {
        time: OffsetDateTime::from_unix_timestamp(1_700_000_000 + i as i64).ok(),
        request_id: format!("req-{i}"),
        phase: if request {
            Phase::Request
        } else {
            Phase::Response
        },
        identity: Some("arn:aws:iam::000000000000:user/alice".into()),
        access_key: Some("CFACCESSKEY0000000001".into()),
        source: Some("192.0.2.7:40000".into()),
        action: "kms:GenerateDataKey".into(),
        resource: Some(format!("arn:aws:s3:::bucket/object-{i}")),
        key_id: Some("1234abcd-12ab-34cd-56ef-1234567890ab".into()),
        key_version: Some(2),
        context: vec![("department".into(), CONTEXT_VALUE.into())],
        outcome: if request {
            Outcome::Pending
        } else {
            Outcome::Success
        },
        error_code: None,
    }
}

fn parse_stored(line: &[u8]) -> Record {
    parse_line(line).unwrap_or_else(|e| {
        panic!(
            "a stored line is a canonical record ({e}): {}",
            String::from_utf8_lossy(line)
        )
    })
}

fn assert_intact(report: &VerifyReport, records: u64, rule: &str) {
    assert!(
        report.is_intact(),
        "{rule}: verify reports {:?}",
        report.first_bad
    );
    assert_eq!(
        (report.records, report.last_seq),
        (records, records),
        "{rule}: verify counts every acknowledged record"
    );
    assert!(
        report.notes.is_empty(),
        "{rule}: nothing unacknowledged in the storage: {:?}",
        report.notes
    );
}

/// Lines as text, so a failed comparison prints readable records.
fn text(lines: &[Vec<u8>]) -> Vec<String> {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn appends_are_durable_numbered_and_chained(h: &mut dyn Harness) -> Result<()> {
    let sink = h.fresh();
    assert!(h.stored().is_empty(), "a fresh sink stores nothing");
    assert_intact(
        &sink.verify()?,
        0,
        "a fresh sink verifies as an empty trail",
    );
    let mut prev = ZERO_HASH.to_owned();
    for i in 0..5u64 {
        let seq = sink.append(sample_event(i)).await?;
        assert_eq!(seq, i + 1, "seqs start at 1 and go up by one");
        let stored = h.stored();
        assert_eq!(
            stored.len() as u64,
            seq,
            "an acknowledged record is in the storage when append returns"
        );
        let line = &stored[i as usize];
        let record = parse_stored(line);
        let mut expected = Record::from_event(sample_event(i), false)?;
        expected.seq = seq;
        expected.prev = prev.clone();
        expected.hash = record.hash.clone();
        expected.mac = record.mac.clone();
        assert_eq!(
            record, expected,
            "the stored record is the event appended, at its seq, chained to the one before \
             (zeros for the first)"
        );
        assert!(
            !contains(line, CONTEXT_VALUE.as_bytes()) && contains(line, b"\"department\""),
            "encryption-context keys are stored, their values are not"
        );
        prev = record.hash;
    }
    assert_intact(
        &sink.verify()?,
        5,
        "a trail of acknowledged records verifies",
    );
    Ok(())
}

async fn invalid_events_write_nothing_and_close_nothing(h: &mut dyn Harness) -> Result<()> {
    let sink = h.fresh();
    sink.append(sample_event(0)).await?;
    let invalid = [
        (
            "an empty action",
            Event {
                action: String::new(),
                ..sample_event(1)
            },
        ),
        (
            "a request that is not pending",
            Event {
                phase: Phase::Request,
                outcome: Outcome::Success,
                ..sample_event(1)
            },
        ),
        (
            "a field too long",
            Event {
                resource: Some("r".repeat(MAX_FIELD + 1)),
                ..sample_event(1)
            },
        ),
    ];
    for (what, event) in invalid {
        match sink.append(event).await {
            Err(AuditError::InvalidEvent(_)) => {}
            other => {
                panic!("an invalid event ({what}) is refused with InvalidEvent: got {other:?}")
            }
        }
    }
    assert_eq!(h.stored().len(), 1, "a refused event writes nothing");
    assert_eq!(
        sink.append(sample_event(1)).await?,
        2,
        "a refused event uses no seq and leaves the sink open"
    );
    assert_intact(
        &sink.verify()?,
        2,
        "a refused event leaves the trail intact",
    );
    Ok(())
}

async fn concurrent_appends_share_one_chain(h: &mut dyn Harness) -> Result<()> {
    const TASKS: u64 = 8;
    const EACH: u64 = 25;
    let sink = h.fresh();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let sink = Arc::clone(&sink);
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let n = 1000 * t + i;
                seqs.push((sink.append(sample_event(n)).await?, n));
            }
            Ok::<_, AuditError>(seqs)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task
            .await
            .unwrap_or_else(|e| panic!("an appending task failed: {e}"))?;
        assert!(
            seqs.windows(2).all(|w| w[0].0 < w[1].0),
            "an append that returned before another was called has the lower seq"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(
        all.iter().map(|&(seq, _)| seq).collect::<Vec<_>>(),
        (1..=TASKS * EACH).collect::<Vec<_>>(),
        "concurrent appends get distinct, consecutive seqs"
    );
    let stored = h.stored();
    assert_eq!(stored.len(), all.len(), "every concurrent append is stored");
    for (line, &(seq, n)) in stored.iter().zip(&all) {
        let record = parse_stored(line);
        assert_eq!(
            (record.seq, record.request_id),
            (seq, format!("req-{n}")),
            "records are stored in seq order, each with the event its seq was returned for"
        );
    }
    assert_intact(
        &sink.verify()?,
        TASKS * EACH,
        "concurrent appends leave one intact chain",
    );
    Ok(())
}

async fn a_dropped_append_leaves_no_gap(h: &mut dyn Harness) -> Result<()> {
    let sink = h.fresh();
    sink.append(sample_event(0)).await?;
    {
        // Polled once (a sink may complete at once; the file sink hands the record to its
        // writer and waits), then dropped.
        let mut started = sink.append(sample_event(1));
        let mut cx = Context::from_waker(Waker::noop());
        let _ = started.as_mut().poll(&mut cx);
    }
    drop(sink.append(sample_event(2))); // never polled
    let seq = sink.append(sample_event(3)).await?;
    assert!(
        seq == 2 || seq == 3,
        "a dropped append is stored whole or not at all: the next seq is 2 or 3, got {seq}"
    );
    let stored = h.stored();
    assert_eq!(
        stored.len() as u64,
        seq,
        "a dropped append leaves no gap and no partial record"
    );
    assert_eq!(
        parse_stored(&stored[stored.len() - 1]).request_id,
        "req-3",
        "the append after a dropped one is stored last"
    );
    assert_intact(
        &sink.verify()?,
        seq,
        "a dropped append leaves the chain intact",
    );
    Ok(())
}

async fn records_survive_reopen_and_the_chain_continues(h: &mut dyn Harness) -> Result<()> {
    let sink = h.fresh();
    for i in 0..3 {
        sink.append(sample_event(i)).await?;
    }
    let before = h.stored();
    drop(sink);
    let Some(sink) = h.reopen() else {
        return Ok(());
    };
    assert_eq!(
        text(&h.stored()),
        text(&before),
        "reopening keeps every acknowledged record unchanged"
    );
    assert_intact(&sink.verify()?, 3, "a reopened trail verifies");
    assert_eq!(
        sink.append(sample_event(3)).await?,
        4,
        "after a reopen the seqs continue"
    );
    let stored = h.stored();
    assert_eq!(
        parse_stored(&stored[3]).prev,
        parse_stored(&before[2]).hash,
        "after a reopen the chain continues from the last record"
    );
    assert_intact(
        &sink.verify()?,
        4,
        "a trail appended to after a reopen verifies",
    );
    Ok(())
}

/// Changes the stored lines in place.
type Edit = Box<dyn Fn(&mut Vec<Vec<u8>>)>;

/// A manipulation of the stored lines and what verify must say: how many valid records
/// come before the first bad one, its seq, and a word of the reason.
struct Manipulation {
    what: &'static str,
    apply: Edit,
    records: u64,
    seq: u64,
    reason: &'static str,
}

fn edit(line: &[u8], f: impl FnOnce(&mut Record)) -> Vec<u8> {
    let mut record = parse_stored(line);
    f(&mut record);
    record
        .line_bytes()
        .unwrap_or_else(|e| panic!("re-serialize an edited record: {e}"))
}

fn replace(line: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(line);
    assert!(text.contains(from), "{from:?} is in the stored record");
    text.replacen(from, to, 1).into_bytes()
}

fn body_hash(record: &Record) -> String {
    let body = record
        .body_bytes()
        .unwrap_or_else(|e| panic!("serialize a record: {e}"));
    hex::encode(digest::digest(&digest::SHA256, &body))
}

async fn filled(h: &mut dyn Harness, events: std::ops::Range<u64>) -> Result<Arc<dyn AuditSink>> {
    let sink = h.fresh();
    for i in events {
        sink.append(sample_event(i)).await?;
    }
    Ok(sink)
}

async fn verify_reports_every_manipulation(h: &mut dyn Harness) -> Result<()> {
    // Valid trails under the same key, to splice in whole.
    let shorter = {
        let sink = filled(h, 100..103).await?;
        drop(sink);
        h.stored()
    };
    let longer = {
        let sink = filled(h, 200..208).await?;
        drop(sink);
        h.stored()
    };
    let mut other_key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut other_key)
        .unwrap_or_else(|_| panic!("the system random generator works"));
    let other_key = hmac::Key::new(hmac::HMAC_SHA256, &other_key);
    // Six records, seqs 1-6; the line at index i holds seq i + 1.
    let cases = vec![
        Manipulation {
            what: "a field edited",
            apply: Box::new(|l| l[2] = replace(&l[2], "\"req-2\"", "\"req-X\"")),
            records: 2,
            seq: 3,
            reason: "hash",
        },
        Manipulation {
            what: "an edit with the hash recomputed",
            apply: Box::new(|l| {
                l[2] = edit(&l[2], |r| {
                    r.identity = Some("arn:aws:iam::000000000000:user/mallory".into());
                    r.hash = body_hash(r);
                })
            }),
            records: 2,
            seq: 3,
            reason: "MAC",
        },
        Manipulation {
            what: "a record forged under another key",
            apply: Box::new(move |l| {
                l[2] = edit(&l[2], |r| {
                    r.outcome = Outcome::Failure;
                    r.phase = Phase::Response;
                    r.seal(&other_key)
                        .unwrap_or_else(|e| panic!("seal a forged record: {e}"));
                })
            }),
            records: 2,
            seq: 3,
            reason: "MAC",
        },
        Manipulation {
            what: "a MAC digit flipped",
            apply: Box::new(|l| {
                l[4] = edit(&l[4], |r| {
                    let flipped = if r.mac.ends_with('0') { "1" } else { "0" };
                    r.mac.replace_range(63.., flipped);
                })
            }),
            records: 4,
            seq: 5,
            reason: "MAC",
        },
        Manipulation {
            what: "a record deleted from the middle",
            apply: Box::new(|l| drop(l.remove(2))),
            records: 2,
            seq: 4,
            reason: "missing",
        },
        Manipulation {
            what: "a record inserted (a copy of another)",
            apply: Box::new(|l| {
                let copy = l[1].clone();
                l.insert(3, copy);
            }),
            records: 3,
            seq: 2,
            reason: "inserted",
        },
        Manipulation {
            what: "two records swapped",
            apply: Box::new(|l| l.swap(2, 3)),
            records: 2,
            seq: 4,
            reason: "out of order",
        },
        Manipulation {
            what: "two records swapped and renumbered",
            apply: Box::new(|l| {
                l.swap(2, 3);
                l[2] = edit(&l[2], |r| r.seq = 3);
                l[3] = edit(&l[3], |r| r.seq = 4);
            }),
            records: 2,
            seq: 3,
            reason: "chain broken",
        },
        Manipulation {
            what: "the last record removed",
            apply: Box::new(|l| drop(l.pop())),
            records: 5,
            seq: 6,
            reason: "",
        },
        Manipulation {
            what: "every record removed",
            apply: Box::new(Vec::clear),
            records: 0,
            seq: 1,
            reason: "",
        },
        Manipulation {
            what: "the trail replaced by a shorter valid one (same key)",
            apply: Box::new(move |l| *l = shorter.clone()),
            records: 3,
            seq: 4,
            reason: "",
        },
        Manipulation {
            what: "the trail replaced by a longer valid one (same key)",
            apply: Box::new(move |l| *l = longer.clone()),
            records: 8,
            seq: 6,
            reason: "anchor",
        },
    ];
    for case in cases {
        let sink = filled(h, 0..6).await?;
        let mut lines = h.stored();
        (case.apply)(&mut lines);
        h.rewrite(lines);
        let report = sink.verify()?;
        let what = case.what;
        let bad = report
            .first_bad
            .as_ref()
            .unwrap_or_else(|| panic!("verify reports {what}: it found nothing"));
        assert_eq!(
            (report.records, bad.seq),
            (case.records, Some(case.seq)),
            "verify reports {what} at the first bad record, after the valid ones: {bad}"
        );
        assert!(
            bad.reason.contains(case.reason),
            "verify reports {what} with its cause ({:?}): {bad}",
            case.reason
        );
    }
    Ok(())
}

async fn a_failed_append_fails_closed_and_leaves_no_record(h: &mut dyn Harness) -> Result<()> {
    let faults = h.faults();
    assert!(
        !faults.is_empty(),
        "a harness names at least one way to make its storage fail"
    );
    for fault in faults {
        let sink = filled(h, 0..3).await?;
        let before = h.stored();
        h.inject(fault);
        let result = sink.append(sample_event(3)).await;
        assert!(
            matches!(result, Err(AuditError::Failed(_))),
            "{fault}: an append the storage refuses fails with Failed: got {result:?}"
        );
        assert_eq!(
            text(&h.stored()),
            text(&before),
            "{fault}: a failed append leaves no record, whole or partial"
        );
        let mut tasks = Vec::new();
        for i in 0..4 {
            let sink = Arc::clone(&sink);
            tasks.push(tokio::spawn(async move {
                sink.append(sample_event(10 + i)).await
            }));
        }
        for task in tasks {
            let result = task
                .await
                .unwrap_or_else(|e| panic!("an appending task failed: {e}"));
            assert!(
                matches!(result, Err(AuditError::Failed(_))),
                "{fault}: every append after a failure fails: got {result:?}"
            );
        }
        h.repair();
        let result = sink.append(sample_event(4)).await;
        assert!(
            matches!(result, Err(AuditError::Failed(_))),
            "{fault}: the sink stays failed once the cause is gone, until reopened: got {result:?}"
        );
        assert_eq!(
            text(&h.stored()),
            text(&before),
            "{fault}: a failed sink writes nothing more"
        );
        assert_intact(
            &sink.verify()?,
            3,
            &format!("{fault}: a failed sink's trail holds exactly the acknowledged records"),
        );
        drop(sink);
        if let Some(sink) = h.reopen() {
            assert_eq!(
                text(&h.stored()),
                text(&before),
                "{fault}: reopened after a failure, the storage holds exactly the acknowledged records"
            );
            assert_eq!(
                sink.append(sample_event(5)).await?,
                4,
                "{fault}: reopened after a failure, the chain resumes after the last acknowledged record"
            );
            assert_intact(
                &sink.verify()?,
                4,
                &format!("{fault}: reopened after a failure, the trail verifies"),
            );
        }
    }
    Ok(())
}
