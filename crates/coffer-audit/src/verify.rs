//! `verify`: the whole chain, every record, and the anchor (spec §9).

use std::path::Path;

use aws_lc_rs::hmac;
use coffer_format::SecretKey;

use crate::error::Result;
use crate::files::{self, AnchorState, BadRecord, ChainEnd, ANCHOR_FILE};

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Log files read.
    pub files: usize,
    /// Valid records before the first bad one (all of them when intact).
    pub records: u64,
    /// The last valid record's seq.
    pub last_seq: u64,
    /// `None` when the log is intact.
    pub first_bad: Option<BadRecord>,
    /// Facts that are not failures (the anchor behind the log after a crash).
    pub notes: Vec<String>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Checks the log in `dir` with the audit MAC key: every line's form, seq, chain link, hash
/// and MAC, the file sequence, and the chain's end against the anchor. Stops at the first
/// bad record. I/O failures (an unreadable directory) are errors; everything wrong with the
/// contents is in [`VerifyReport::first_bad`].
pub fn verify(dir: &Path, key: &SecretKey) -> Result<VerifyReport> {
    verify_with(dir, &crate::mac_key(key))
}

/// [`verify`] with the HMAC key already made (a live [`AuditLog`](crate::AuditLog) keeps one).
pub(crate) fn verify_with(dir: &Path, mac_key: &hmac::Key) -> Result<VerifyReport> {
    // The anchor first: a live writer updates it only after the log, so a log read later is
    // never behind an anchor read earlier.
    let anchor = files::read_anchor(dir, mac_key)?;
    let numbers = files::list(dir)?;
    let mut report = VerifyReport {
        files: numbers.len(),
        ..VerifyReport::default()
    };
    let bad = |file: String, line: u64, seq: Option<u64>, reason: String| {
        Some(BadRecord {
            file,
            line,
            seq,
            reason,
        })
    };
    if numbers.is_empty() {
        report.first_bad = bad(
            files::file_name(1),
            0,
            None,
            "no log files (audit-000001.jsonl missing)".into(),
        );
        return Ok(report);
    }
    let want_seq = match &anchor {
        AnchorState::Valid(a) => a.seq,
        _ => u64::MAX,
    };
    let mut chain = ChainEnd::genesis();
    // (file name, hash) of the record the anchor names.
    let mut anchored: Option<(String, String)> = None;
    let mut last_file_records = 0;
    for (index, &number) in numbers.iter().enumerate() {
        let expected = index as u32 + 1;
        if number != expected {
            report.first_bad = bad(
                files::file_name(expected),
                0,
                Some(chain.seq + 1),
                format!(
                    "file missing (the next file present is {})",
                    files::file_name(number)
                ),
            );
            return Ok(report);
        }
        let name = files::file_name(number);
        let scan = match files::scan_file(dir, number, mac_key, Some(&chain), want_seq)? {
            Ok(scan) => scan,
            Err(bad_record) => {
                // Every line before the bad one was a valid record.
                let valid = bad_record.line.saturating_sub(1);
                report.records += valid;
                report.last_seq = chain.seq + valid;
                report.first_bad = Some(bad_record);
                return Ok(report);
            }
        };
        report.records += scan.records;
        report.last_seq = scan.end.seq;
        if scan.partial_tail {
            report.first_bad = bad(
                name,
                scan.records + 1,
                Some(scan.end.seq + 1),
                "incomplete last line (an interrupted write, or the file was truncated)".into(),
            );
            return Ok(report);
        }
        let is_last = index + 1 == numbers.len();
        if scan.records == 0 && !is_last {
            report.first_bad = bad(
                name,
                1,
                Some(chain.seq + 1),
                "empty file before the last one".into(),
            );
            return Ok(report);
        }
        if let Some(hash) = scan.wanted_hash {
            anchored = Some((name, hash));
        }
        last_file_records = scan.records;
        chain = scan.end;
    }
    let last_name = files::file_name(numbers[numbers.len() - 1]);
    let anchor = match anchor {
        AnchorState::Missing => {
            report.first_bad = bad(
                ANCHOR_FILE.into(),
                0,
                None,
                "anchor missing: truncation of the log cannot be ruled out".into(),
            );
            return Ok(report);
        }
        AnchorState::Invalid(reason) => {
            report.first_bad = bad(ANCHOR_FILE.into(), 0, None, reason);
            return Ok(report);
        }
        AnchorState::Valid(a) => a,
    };
    if chain.seq < anchor.seq {
        let missing = if numbers.contains(&files::file_number(&anchor.file).unwrap_or(0)) {
            String::new()
        } else {
            ", which is missing".to_owned()
        };
        report.first_bad = bad(
            last_name,
            last_file_records + 1,
            Some(chain.seq + 1),
            format!(
                "log truncated after seq {}: the anchor records seq {} in {}{missing}",
                chain.seq, anchor.seq, anchor.file
            ),
        );
        return Ok(report);
    }
    let matches = if anchor.seq == 0 {
        anchor.is_empty_log()
    } else {
        anchored.as_ref() == Some(&(anchor.file.clone(), anchor.hash.clone()))
    };
    if !matches {
        report.first_bad = bad(
            ANCHOR_FILE.into(),
            0,
            Some(anchor.seq),
            format!(
                "the anchor's seq {} hash/file does not match the log (log rewritten, or the \
                 anchor is from another log)",
                anchor.seq
            ),
        );
        return Ok(report);
    }
    if chain.seq > anchor.seq {
        report.notes.push(format!(
            "the anchor is {} record(s) behind the log (a write interrupted before the anchor \
             update); the records are authentic and the next open adopts them",
            chain.seq - anchor.seq
        ));
    }
    Ok(report)
}
