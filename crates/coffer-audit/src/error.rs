//! Errors, by cause: the log's storage failed (I/O, fail-closed), the log on disk is not one
//! Coffer may append to (corrupt, missing anchor, locked), or the caller's event is invalid.

use std::path::PathBuf;

/// Everything the audit log can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file operation failed; `context` names the operation and the path.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A write or sync of the log failed (this batch or an earlier one). The log refuses
    /// every append until it is reopened, so the chain never has a gap (spec §8).
    #[error("audit log unavailable (fail-closed) until reopened: {0}")]
    Failed(String),
    /// The log on disk is not one that may be appended to (spec §7): the operator must run
    /// `coffer audit verify` and repair it.
    #[error("audit log {dir}: {reason}; run `coffer audit verify`")]
    Corrupt { dir: PathBuf, reason: String },
    /// A record could not be parsed while querying (query does not verify; see spec §9).
    #[error("{file} line {line}: {reason}")]
    Malformed {
        file: String,
        line: u64,
        reason: String,
    },
    /// The event breaks a rule of spec §2 (field too long, phase/outcome mismatch…).
    #[error("invalid audit event: {0}")]
    InvalidEvent(String),
    /// Another process (or another `AuditLog` in this one) holds the log's lock.
    #[error("audit log {0} is open elsewhere (lock held)")]
    Locked(PathBuf),
    /// The writer thread is gone (only after a panic in it: a bug).
    #[error("audit writer stopped")]
    Closed,
}

pub type Result<T, E = AuditError> = std::result::Result<T, E>;

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AuditError {
    let context = context.into();
    move |source| AuditError::Io { context, source }
}
