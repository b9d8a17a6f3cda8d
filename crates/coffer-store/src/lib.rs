//! Coffer's storage layer under the protocols: encrypted blobs on an `object_store` backend
//! ([`blob`], with its conformance suite), the data keys that protect them and the S3
//! headers that choose them ([`sse`]), and the disk reserve as a `MetaStore` decorator
//! ([`reserve`]).
//!
//! Nothing here speaks HTTP; errors are [`coffer_outcome::ServerError`], answered by the
//! protocol crates.

pub mod blob;
pub mod reserve;
pub mod sse;
