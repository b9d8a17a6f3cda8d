//! The result of handling one request, shared by every protocol crate: the error a handler
//! returns ([`ServerError`], answered as S3 answers it) and the typed outcome the audit trail
//! records ([`Recorder`], [`KeyUsed`], [`BodyFailure`]).
//!
//! It sits below the storage, IAM and protocol crates so that each of them records what it
//! did where it does it; the audit middleware in `coffer-server` only reads.

mod error;
mod outcome;

pub use error::{ServerError, ServerResult};
pub use outcome::{error_response, BodyFailure, KeyUsed, Recorded, Recorder};
