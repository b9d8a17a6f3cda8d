//! Errors by cause: something named does not exist, something already exists or conflicts,
//! a precondition refused the write, the store cannot be opened or read, or the backend
//! failed.

/// Every failure a [`crate::MetaStore`] or [`crate::IdentityStore`] reports.
///
/// The variants are causes, not HTTP codes: the server maps each to one AWS error code.
/// Messages never contain secrets or record contents.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetaError {
    // ---- the thing named does not exist ----
    #[error("the bucket does not exist")]
    NoSuchBucket,
    /// `If-Match` was given and no object exists under the key.
    #[error("the object does not exist")]
    NoSuchKey,
    /// No upload with this id, or it belongs to another bucket or key.
    #[error("the multipart upload does not exist")]
    NoSuchUpload,
    #[error("the identity {0} does not exist")]
    NoSuchIdentity(String),
    /// No such access key for this identity.
    #[error("the access key does not exist for this identity")]
    NoSuchAccessKey,
    #[error("the policy does not exist")]
    NoSuchPolicy,

    // ---- already exists / conflicts ----
    /// `create_bucket` of an existing bucket; `owner` is its owner (so the caller can tell
    /// `BucketAlreadyOwnedByYou` from `BucketAlreadyExists`).
    #[error("the bucket already exists (owned by {owner})")]
    BucketAlreadyExists { owner: String },
    /// An identity, access key id or upload id that is already taken.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// `delete_bucket` of a bucket that still holds objects or multipart uploads.
    #[error("the bucket is not empty")]
    BucketNotEmpty,
    /// `delete_identity` of an identity that still owns a bucket.
    #[error("the identity owns bucket {bucket}")]
    IdentityOwnsBucket { bucket: String },
    /// A write's [`crate::Precondition`] refused it; nothing was written.
    #[error("the precondition refused the write")]
    PreconditionFailed,
    /// Object Lock refuses the change (a deleted or shortened retention, a held version);
    /// the message says which lock. Nothing was changed.
    #[error("object lock: {0}")]
    ObjectLocked(String),
    /// The version named is a delete marker, which has no data, tags or retention.
    #[error("the version is a delete marker")]
    DeleteMarker,

    // ---- the store itself ----
    /// No space left to record the change; nothing was written (the caller may free space
    /// and retry).
    #[error("no space left to record the change")]
    StorageFull,
    /// The database could not be opened with this page key (wrong key, or not a Coffer
    /// database).
    #[error("{0}")]
    KeyRejected(String),
    /// Stored data is damaged, unparseable, or of a version this code does not know.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// Any other backend failure (I/O, SQLite, a lost worker task).
    #[error("metadata backend: {0}")]
    Backend(String),
}

/// Shorthand used throughout the crate.
pub type MetaResult<T> = Result<T, MetaError>;
