//! Coffer's metadata behind two small traits with written contracts (STYLE.md §7):
//!
//! - [`MetaStore`]: buckets, their default encryption, objects, multipart uploads and
//!   parts — the commit point of every write;
//! - [`IdentityStore`]: identities, access keys, identity policies, bucket owners and
//!   bucket policies — what authorization decisions are made from.
//!
//! Both are implemented by [`SqlCipherStore`] (one page-encrypted SQLite database, the
//! server's `server.db`, schema unchanged) and [`MemoryStore`] (maps behind a mutex, the
//! reference model). One value implements both traits because they share data: a bucket's
//! owner is written by [`MetaStore::create_bucket`], its policy removed by
//! [`MetaStore::delete_bucket`].
//!
//! Every implementation must pass [`conformance::run_meta`] and
//! [`conformance::run_identity`].
//!
//! Errors are [`MetaError`], by cause. Stored records carry a version marker
//! ([`record`]). Nothing here panics on stored or caller data.

pub mod conformance;
mod error;
mod identity;
mod memory;
mod meta;
pub mod record;
mod sqlcipher;
mod versions;

pub use error::{MetaError, MetaResult};
pub use identity::{AccessKey, IdentityRecord, IdentitySnapshot, IdentityStore, SecretAccessKey};
pub use memory::MemoryStore;
pub use meta::{
    BucketConfig, DeleteRequest, Deleted, EtagMatch, MetaStore, ObjectUpdate, Precondition,
    VersionEntry, Versioning, Written,
};
pub use record::{
    BucketEncryption, BucketInfo, Checksums, ObjectHeaders, ObjectRecord, PartRecord, Retention,
    RetentionMode, Segment, SseRecord, UploadRecord, RECORD_VERSION,
};
pub use sqlcipher::{SqlCipherStore, SCHEMA_SQL, SCHEMA_VERSION};
