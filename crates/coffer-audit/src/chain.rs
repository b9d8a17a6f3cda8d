//! The chain check of spec §9 steps 2-6, record by record: shared by the file scan
//! ([`crate::files::scan_file`], behind `open` and `verify`) and by
//! [`MemorySink`](crate::MemorySink)'s verifier, so every sink is judged by the same rules.

use aws_lc_rs::hmac;

use crate::record::{self, Record, ZERO_HASH};

/// Where a chain stands: the last record's seq and hash (0 and zeros before the first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainEnd {
    pub seq: u64,
    pub hash: String,
}

impl ChainEnd {
    pub fn genesis() -> ChainEnd {
        ChainEnd {
            seq: 0,
            hash: ZERO_HASH.to_owned(),
        }
    }
}

/// Checks lines one after another: form (steps 2-3), `seq` (4), `prev` (5), hash and MAC (6).
pub(crate) struct ChainCheck<'k> {
    key: &'k hmac::Key,
    end: ChainEnd,
    /// Take the next record's `seq` and `prev` as given (`open` scans only the tail).
    trust_next: bool,
}

/// Why a line is not the next record of the chain: its seq (if it could be read) and the
/// reason, worded as spec §9 words it.
pub(crate) type LineError = (Option<u64>, String);

impl<'k> ChainCheck<'k> {
    /// A check that starts after `start`; `None` trusts the first record's `seq` and `prev`.
    pub(crate) fn new(key: &'k hmac::Key, start: Option<&ChainEnd>) -> ChainCheck<'k> {
        ChainCheck {
            key,
            end: start.cloned().unwrap_or_else(ChainEnd::genesis),
            trust_next: start.is_none(),
        }
    }

    /// The last record accepted (the start before any).
    pub(crate) fn end(&self) -> &ChainEnd {
        &self.end
    }

    /// Checks one line (without its newline); on success the chain moves past it.
    pub(crate) fn next(&mut self, line: &[u8]) -> Result<Record, LineError> {
        let record = record::parse_line(line).map_err(|reason| (None, reason))?;
        if !self.trust_next {
            let expected = self.end.seq + 1;
            if record.seq != expected {
                let what = if record.seq > expected {
                    format!(
                        "seq {} where {expected} was expected (a record is missing or out of order)",
                        record.seq
                    )
                } else {
                    format!(
                        "seq {} where {expected} was expected (a record inserted, duplicated or out of order)",
                        record.seq
                    )
                };
                return Err((Some(record.seq), what));
            }
            if record.prev != self.end.hash {
                return Err((
                    Some(record.seq),
                    "prev is not the hash of the previous record (chain broken)".into(),
                ));
            }
        }
        record::check_seal(&record, self.key).map_err(|reason| (Some(record.seq), reason))?;
        self.trust_next = false;
        self.end = ChainEnd {
            seq: record.seq,
            hash: record.hash.clone(),
        };
        Ok(record)
    }
}
