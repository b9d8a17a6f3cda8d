//! Coffer's audit trail (spec/audit-log.md): one JSON line per KMS operation, object
//! access, admin change and authentication or authorization failure.
//!
//! - [`AuditSink`]: the trait the server appends through, and its contract (durable before
//!   acknowledged, one chain in order, all or nothing, fail-closed, what `verify` proves);
//! - [`log`]: [`AuditLog`], the file sink: the fail-closed writer with group commit and
//!   rotation (§7-8);
//! - [`MemorySink`]: the reference model, the same records in memory, with storage a test
//!   can rewrite or make fail;
//! - [`conformance`]: the suite every sink passes (`tests/conformance.rs` runs it against
//!   both);
//! - [`record`]: the record, its canonical bytes, hash and MAC (spec §2-4);
//! - [`files`]: file naming, the anchor that detects truncation, the per-file scan (§5-6);
//! - [`verify`](mod@verify) and [`query`](mod@query): the readers behind `coffer audit` (§9).
//!
//! Records are hash-chained across files and MACed with a key derived from the root key;
//! `append` returns only once the record is on disk, so a caller that writes the request
//! record before acting never acts unaudited.
#![forbid(unsafe_code)]

mod chain;
pub mod conformance;
pub mod error;
pub mod files;
pub mod log;
mod memory;
pub mod query;
pub mod record;
mod sink;
pub mod verify;

pub use coffer_format::SecretKey;
pub use error::{AuditError, Result};
pub use files::BadRecord;
pub use log::{AuditLog, AuditOptions, READY_MIN_FREE_BYTES};
pub use memory::{MemorySink, MEMORY_STORAGE};
pub use query::{query, Filter};
pub use record::{parse_line, Event, Outcome, Phase, Record};
pub use sink::AuditSink;
pub use verify::{verify, VerifyReport};

/// The label the server derives the audit MAC key with (`Kms::derive_subsystem_key`).
/// Frozen: changing it makes every existing log fail verification.
pub const MAC_KEY_LABEL: &str = "audit/mac/v1";

pub(crate) fn mac_key(key: &SecretKey) -> aws_lc_rs::hmac::Key {
    aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.expose())
}
