//! [`MemorySink`]: the reference model of [`AuditSink`]: the same records, chain and MAC as
//! the files, in a vector behind a mutex. For tests (of the suite itself, and of code that
//! needs a sink whose storage can be made to fail on demand); it persists nothing.

use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use aws_lc_rs::hmac;
use coffer_format::SecretKey;

use crate::chain::{ChainCheck, ChainEnd};
use crate::error::{AuditError, Result};
use crate::files::BadRecord;
use crate::log::AuditOptions;
use crate::record::{Event, Record};
use crate::sink::AuditSink;
use crate::verify::VerifyReport;

/// The name a [`MemorySink`]'s verifier gives its storage in a [`BadRecord`].
pub const MEMORY_STORAGE: &str = "memory";

/// An [`AuditSink`] in memory: each record is its canonical line (spec §3), sealed with the
/// MAC key exactly as [`AuditLog`](crate::AuditLog) seals it, and checked by the same chain
/// rules when verified. The end of the chain it acknowledged last plays the anchor's part.
///
/// Besides the trait, it lets a test play the storage: read and rewrite the stored lines
/// (an attacker with write access but no key) and make the storage refuse writes (a full
/// disk).
pub struct MemorySink {
    key: hmac::Key,
    include_context_values: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    lines: Vec<Vec<u8>>,
    /// The last acknowledged record: the anchor (`None` = the empty trail).
    anchor: Option<ChainEnd>,
    /// Set by the first failed append; every later append fails with it.
    failed: Option<String>,
    /// The storage refuses writes (set by [`MemorySink::set_storage_failing`]).
    storage_failing: bool,
}

impl MemorySink {
    /// An empty trail MACed with `key` (the audit MAC key); `opts.include_context_values`
    /// as for [`AuditLog::open`](crate::AuditLog::open); `max_file_bytes` does not apply.
    pub fn new(key: SecretKey, opts: &AuditOptions) -> MemorySink {
        MemorySink {
            key: crate::mac_key(&key),
            include_context_values: opts.include_context_values,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; a poisoned lock still holds whole lines.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored lines (canonical record bytes, no newline), in order.
    pub fn lines(&self) -> Vec<Vec<u8>> {
        self.state().lines.clone()
    }

    /// Replaces the stored lines, leaving the anchor as it is: what an attacker who can
    /// write the storage but does not hold the key can do.
    pub fn replace_lines(&self, lines: Vec<Vec<u8>>) {
        self.state().lines = lines;
    }

    /// While `failing`, the storage refuses every write, like a full or failing disk. The
    /// first append that meets it fails the sink for good (the contract's fail-closed rule):
    /// clearing the flag lets nothing through again.
    pub fn set_storage_failing(&self, failing: bool) {
        self.state().storage_failing = failing;
    }
}

#[async_trait]
impl AuditSink for MemorySink {
    async fn append(&self, event: Event) -> Result<u64> {
        // Checked before the lock and before anything is stored, as the file sink does.
        let mut record = Record::from_event(event, self.include_context_values)?;
        let mut state = self.state();
        if let Some(message) = &state.failed {
            return Err(AuditError::Failed(message.clone()));
        }
        if state.storage_failing {
            let message = "memory storage refuses writes".to_owned();
            state.failed = Some(message.clone());
            return Err(AuditError::Failed(message));
        }
        let end = state.anchor.clone().unwrap_or_else(ChainEnd::genesis);
        record.seq = end.seq + 1;
        record.prev = end.hash;
        let line = record.seal(&self.key).and_then(|()| record.line_bytes());
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                state.failed = Some(e.to_string());
                return Err(e);
            }
        };
        state.lines.push(line);
        state.anchor = Some(ChainEnd {
            seq: record.seq,
            hash: record.hash,
        });
        Ok(record.seq)
    }

    /// Spec §9 steps 2-6 over the lines (the same checks as a log file's), then the chain's
    /// end against the anchor (steps 9-10). `files` is 0 and [`BadRecord::file`] is
    /// [`MEMORY_STORAGE`].
    fn verify(&self) -> Result<VerifyReport> {
        let (lines, anchor) = {
            let state = self.state();
            (state.lines.clone(), state.anchor.clone())
        };
        let anchor = anchor.unwrap_or_else(ChainEnd::genesis);
        let mut report = VerifyReport::default();
        let bad = |line: usize, seq: Option<u64>, reason: String| BadRecord {
            file: MEMORY_STORAGE.to_owned(),
            line: line as u64,
            seq,
            reason,
        };
        let mut chain = ChainCheck::new(&self.key, Some(&ChainEnd::genesis()));
        let mut anchored_hash = (anchor.seq == 0).then(|| anchor.hash.clone());
        for (index, line) in lines.iter().enumerate() {
            match chain.next(line) {
                Ok(record) => {
                    if record.seq == anchor.seq {
                        anchored_hash = Some(record.hash);
                    }
                    report.records += 1;
                    report.last_seq = record.seq;
                }
                Err((seq, reason)) => {
                    report.first_bad = Some(bad(index + 1, seq, reason));
                    return Ok(report);
                }
            }
        }
        let end = chain.end();
        if end.seq < anchor.seq {
            report.first_bad = Some(bad(
                lines.len() + 1,
                Some(end.seq + 1),
                format!(
                    "log truncated after seq {}: the anchor records seq {}",
                    end.seq, anchor.seq
                ),
            ));
        } else if anchored_hash.as_deref() != Some(anchor.hash.as_str()) {
            report.first_bad = Some(bad(
                0,
                Some(anchor.seq),
                format!(
                    "the anchor's seq {} hash does not match the log (log rewritten)",
                    anchor.seq
                ),
            ));
        } else if end.seq > anchor.seq {
            report.notes.push(format!(
                "{} record(s) past the anchor (authentic: their MACs verify)",
                end.seq - anchor.seq
            ));
        }
        Ok(report)
    }
}
