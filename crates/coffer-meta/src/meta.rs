//! [`MetaStore`]: buckets, their default encryption, objects, and multipart uploads.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;

use crate::error::{MetaError, MetaResult};
use crate::record::{BucketEncryption, BucketInfo, ObjectRecord, PartRecord, UploadRecord};

/// Bucket, object and multipart-upload metadata: the commit point of every write.
///
/// The server writes an object's blobs first, then records the object here; the object is
/// visible from the moment the record is, and never before. Records returned by a replacing
/// or deleting call name the blobs the caller must now delete.
///
/// # Contract
/// - **Atomicity.** Every method is one transaction: when it returns an error, nothing it was
///   asked to write is visible; when it returns `Ok`, all of it is. Concurrent calls behave
///   as if run one after another.
/// - **Durability.** A write that returned `Ok` survives a process restart.
/// - **Replacement returns the old record.** [`put_object`](Self::put_object),
///   [`complete_upload`](Self::complete_upload) and [`put_part`](Self::put_part) replace
///   what was there atomically and return the replaced record; deletes return what they
///   removed. No write loses track of a blob.
/// - **Ordering.** Keys compare as bytes (UTF-8 code unit order, SQLite's `BINARY`).
///   [`list_buckets`](Self::list_buckets) is by name, [`list_objects`](Self::list_objects)
///   by key, [`list_uploads`](Self::list_uploads) by (key, upload id),
///   [`list_parts`](Self::list_parts) by part number.
/// - **Absence.** Readers return `Ok(None)` / empty for an absent object, upload or part
///   (including when its bucket is absent); writers that need a bucket or upload fail with
///   [`MetaError::NoSuchBucket`] / [`MetaError::NoSuchUpload`].
/// - **Ownership.** A bucket's owner (an identity name) is recorded by
///   [`create_bucket`](Self::create_bucket) and read through
///   [`crate::IdentityStore::snapshot`]; [`delete_bucket`](Self::delete_bucket) removes the
///   owner and the bucket policy with the bucket. Both traits are therefore implemented by
///   one backend over one database.
/// - **Errors.** [`MetaError::StorageFull`] when the disk is full (nothing written; retry
///   after freeing space), [`MetaError::Corrupt`] for a stored record that does not parse or
///   has an unknown version, [`MetaError::Backend`] for anything else the backend reports.
#[async_trait]
pub trait MetaStore: Send + Sync {
    // ---- buckets ----

    /// Creates bucket `name` owned by identity `owner`, created at `created` (Unix ms).
    /// [`MetaError::BucketAlreadyExists`] with the existing owner (`root` for buckets older
    /// than ownership) if it exists; the existing bucket is unchanged.
    async fn create_bucket(&self, name: &str, created: i64, owner: &str) -> MetaResult<()>;

    async fn bucket_exists(&self, name: &str) -> MetaResult<bool>;

    /// Every bucket, by name.
    async fn list_buckets(&self) -> MetaResult<Vec<BucketInfo>>;

    /// Deletes a bucket that holds no object, with its owner, encryption and policy, and
    /// aborts its unfinished multipart uploads in the same transaction (as S3 does); returns
    /// those uploads' parts, whose blobs the caller deletes. [`MetaError::NoSuchBucket`];
    /// [`MetaError::BucketNotEmpty`] while it holds an object (nothing is deleted).
    async fn delete_bucket(&self, name: &str) -> MetaResult<Vec<PartRecord>>;

    /// The bucket's default encryption (`None`: not configured). [`MetaError::NoSuchBucket`].
    async fn bucket_encryption(&self, name: &str) -> MetaResult<Option<BucketEncryption>>;

    /// Sets (`Some`) or removes (`None`) the default encryption. [`MetaError::NoSuchBucket`].
    async fn set_bucket_encryption(
        &self,
        name: &str,
        encryption: Option<&BucketEncryption>,
    ) -> MetaResult<()>;

    // ---- objects ----

    /// The object under `key`, or `None` (also when the bucket does not exist).
    async fn object(&self, bucket: &str, key: &str) -> MetaResult<Option<ObjectRecord>>;

    /// Inserts or replaces the object under `key`; returns the record it replaced, whose
    /// blobs the caller deletes. `condition` is evaluated against the current record inside
    /// the same transaction (conditional PUT): if it refuses, nothing changes and its error
    /// is returned ([`Precondition::check`]). [`MetaError::NoSuchBucket`].
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        condition: &Precondition,
    ) -> MetaResult<Option<ObjectRecord>>;

    /// Removes the object under `key`; returns its record (`None`: there was none, or no
    /// such bucket — deleting is idempotent).
    async fn delete_object(&self, bucket: &str, key: &str) -> MetaResult<Option<ObjectRecord>>;

    /// One page of a bucket's objects: at most `limit` objects whose key starts with
    /// `prefix` and is strictly greater than `after` (`""`: from the start), in key order.
    /// The next page starts after the last key returned; a page shorter than `limit` is the
    /// last. An absent bucket lists as empty.
    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> MetaResult<Vec<(String, ObjectRecord)>>;

    /// Every blob name any object or part references (the start-up sweep deletes the rest).
    async fn referenced_blobs(&self) -> MetaResult<HashSet<String>>;

    // ---- multipart uploads ----

    /// Records a new upload of `record.key` in `record.bucket`. [`MetaError::NoSuchBucket`];
    /// [`MetaError::AlreadyExists`] if `upload_id` is taken.
    async fn create_upload(&self, upload_id: &str, record: &UploadRecord) -> MetaResult<()>;

    /// The upload, or `None`.
    async fn upload(&self, upload_id: &str) -> MetaResult<Option<UploadRecord>>;

    /// At most `limit` uploads of `bucket` whose key starts with `prefix` and whose
    /// (key, upload id) is strictly greater than (`key_marker`, `upload_id_marker`), in
    /// (key, upload id) order. (`""`, `""`) starts from the beginning; (`k`, `""`) includes
    /// the uploads of `k` itself.
    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: &str,
        upload_id_marker: &str,
        limit: usize,
    ) -> MetaResult<Vec<(String, UploadRecord)>>;

    /// Records part `part_number` of an upload; returns the part it replaced (same number),
    /// whose blob the caller deletes. [`MetaError::NoSuchUpload`].
    async fn put_part(
        &self,
        upload_id: &str,
        part_number: u32,
        record: &PartRecord,
    ) -> MetaResult<Option<PartRecord>>;

    /// An upload's parts by number (empty for an absent upload).
    async fn list_parts(&self, upload_id: &str) -> MetaResult<BTreeMap<u32, PartRecord>>;

    /// Removes an upload with its parts (abort); returns the parts, in part-number order,
    /// whose blobs the caller deletes. [`MetaError::NoSuchUpload`].
    async fn delete_upload(&self, upload_id: &str) -> MetaResult<Vec<PartRecord>>;

    /// Completes an upload in one transaction: checks `condition` against the current
    /// object, writes `record` under `key`, and removes the upload with all its parts.
    /// Returns the replaced object. [`MetaError::NoSuchUpload`] if the upload does not exist
    /// or belongs to another bucket or key; on any error (a refused condition included) the
    /// upload, its parts and the current object are unchanged. The parts' records are gone
    /// afterwards: the caller reads [`list_parts`](Self::list_parts) first to know which
    /// blobs `record` does not use.
    async fn complete_upload(
        &self,
        upload_id: &str,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        condition: &Precondition,
    ) -> MetaResult<Option<ObjectRecord>>;
}

/// The conditions of a conditional write (`If-Match`, `If-None-Match: *`), evaluated by
/// the store against the current object inside the write's transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Precondition {
    /// `If-None-Match: *`: refuse if an object exists.
    pub if_none_match_any: bool,
    /// `If-Match`: refuse unless an object exists and (for an ETag) its ETag matches.
    pub if_match: Option<EtagMatch>,
}

/// The value of an `If-Match` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EtagMatch {
    /// `*`: any existing object.
    Any,
    /// A strong ETag, without quotes: matches an object whose ETag is exactly this.
    Strong(String),
    /// A weak ETag (`W/"…"`): `If-Match` uses strong comparison (RFC 9110 §13.1.1), so it
    /// never matches.
    Weak(String),
}

impl Precondition {
    /// No condition: the write always proceeds.
    pub const NONE: Precondition = Precondition {
        if_none_match_any: false,
        if_match: None,
    };

    /// Whether the write may replace `current`: [`MetaError::PreconditionFailed`] if
    /// `If-None-Match: *` meets an object or `If-Match` meets another ETag;
    /// [`MetaError::NoSuchKey`] if `If-Match` meets no object.
    pub fn check(&self, current: Option<&ObjectRecord>) -> MetaResult<()> {
        if self.if_none_match_any && current.is_some() {
            return Err(MetaError::PreconditionFailed);
        }
        if let Some(wanted) = &self.if_match {
            let Some(current) = current else {
                return Err(MetaError::NoSuchKey);
            };
            let matches = match wanted {
                EtagMatch::Any => true,
                EtagMatch::Strong(etag) => *etag == current.etag,
                EtagMatch::Weak(_) => false,
            };
            if !matches {
                return Err(MetaError::PreconditionFailed);
            }
        }
        Ok(())
    }
}
