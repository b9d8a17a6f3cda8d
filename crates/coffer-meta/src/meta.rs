//! [`MetaStore`]: buckets, their default encryption, objects, and multipart uploads.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;

use crate::error::{MetaError, MetaResult};
use crate::record::{
    BucketEncryption, BucketInfo, ObjectRecord, PartRecord, Retention, UploadRecord,
};

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
/// - **Versions.** A key has a history: at most one *current* object (the latest version
///   when it is not a delete marker) and older versions and delete markers, newest first.
///   What a write does to the history follows the bucket's [`Versioning`], read inside the
///   write's transaction (S3's rules): `Enabled` keeps every version, `Suspended` and
///   `Unversioned` replace the one `null` version. [`object`](Self::object) and
///   [`list_objects`](Self::list_objects) see current objects only.
/// - **Object Lock.** A version whose [`ObjectRecord::lock_refusal`] refuses is never
///   removed ([`MetaError::ObjectLocked`]); the check is made inside the transaction.
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

    /// A bucket sub-resource document (`None`: not configured). [`MetaError::NoSuchBucket`].
    async fn bucket_config(&self, bucket: &str, kind: BucketConfig) -> MetaResult<Option<String>>;

    /// Sets (`Some`) or removes (`None`) a bucket sub-resource document; removed with the
    /// bucket. [`MetaError::NoSuchBucket`].
    async fn set_bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
        document: Option<&str>,
    ) -> MetaResult<()>;

    /// Makes `record` the current object under `key` (as a new version or replacing the
    /// `null` one, per the bucket's [`Versioning`], which also sets `record.versioned`).
    /// Returns the records it replaced, whose blobs the caller deletes, and the S3 version
    /// id written. `condition` is evaluated against the current object inside the same
    /// transaction (conditional PUT): if it refuses, nothing changes and its error is
    /// returned ([`Precondition::check`]). A `null` version that is locked is not replaced
    /// ([`MetaError::ObjectLocked`]). [`MetaError::NoSuchBucket`].
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        condition: &Precondition,
    ) -> MetaResult<Written>;

    /// Deletes under `key` as S3's DeleteObject does ([`DeleteRequest`]): a named version
    /// is removed (the next newest becomes current); without one, an `Enabled` bucket gets a
    /// delete marker, a `Suspended` bucket a `null` marker replacing the `null` version,
    /// an `Unversioned` bucket loses the object. Deleting what is absent succeeds
    /// (idempotent), also in an absent bucket.
    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        request: &DeleteRequest<'_>,
    ) -> MetaResult<Deleted>;

    /// A version of `key` by S3 version id (`null` included), or its latest version
    /// (`None`), which may be a delete marker. `None` when absent.
    async fn object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> MetaResult<Option<ObjectRecord>>;

    /// Changes a version's tags, retention or legal hold ([`ObjectUpdate`]); returns the
    /// updated record. [`MetaError::NoSuchKey`] if there is no such version,
    /// [`MetaError::DeleteMarker`] for a marker, [`MetaError::ObjectLocked`] for a
    /// retention change the lock refuses.
    async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        update: &ObjectUpdate,
    ) -> MetaResult<ObjectRecord>;

    /// One page of every version of a bucket's keys starting with `prefix`: by key, each
    /// key's versions newest first. Starts after (`key_marker`, `version_marker`): with an
    /// empty `version_marker`, at the first key after `key_marker`; else at the version of
    /// `key_marker` after that one (after the whole key if it has no such version). At most
    /// `limit` entries; a shorter page is the last.
    async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: &str,
        version_marker: &str,
        limit: usize,
    ) -> MetaResult<Vec<VersionEntry>>;

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
    /// object, writes `record` under `key` as [`put_object`](Self::put_object) does, and
    /// removes the upload with all its parts. Returns what the write replaced. [`MetaError::NoSuchUpload`] if the upload does not exist
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
    ) -> MetaResult<Written>;
}

/// A bucket's versioning state (PutBucketVersioning). Once enabled, a bucket is never
/// `Unversioned` again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versioning {
    Unversioned,
    Enabled,
    Suspended,
}

impl Versioning {
    /// The state stored as the [`BucketConfig::Versioning`] document.
    pub fn from_document(doc: Option<&str>) -> MetaResult<Versioning> {
        match doc {
            None => Ok(Versioning::Unversioned),
            Some("Enabled") => Ok(Versioning::Enabled),
            Some("Suspended") => Ok(Versioning::Suspended),
            Some(other) => Err(MetaError::Corrupt(format!(
                "unknown versioning state {other:?}"
            ))),
        }
    }
}

/// Bucket sub-resources kept as documents, one per kind ([`MetaStore::bucket_config`]).
/// The documents' formats are the S3 handlers' (docs/server.md); the store keeps them
/// opaque, except `Versioning` (`Enabled` / `Suspended`), which it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketConfig {
    Versioning,
    ObjectLock,
    Tagging,
    Lifecycle,
    Cors,
    PublicAccessBlock,
    Ownership,
    Acl,
}

impl BucketConfig {
    /// The stored name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            BucketConfig::Versioning => "versioning",
            BucketConfig::ObjectLock => "object-lock",
            BucketConfig::Tagging => "tagging",
            BucketConfig::Lifecycle => "lifecycle",
            BucketConfig::Cors => "cors",
            BucketConfig::PublicAccessBlock => "public-access-block",
            BucketConfig::Ownership => "ownership",
            BucketConfig::Acl => "acl",
        }
    }
}

/// What a write did: the records it replaced (their blobs are the caller's to delete) and
/// the S3 version id it wrote (`None` in an `Unversioned` bucket, `null` when suspended).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub replaced: Vec<ObjectRecord>,
    pub version_id: Option<String>,
}

/// A DeleteObject: the version to remove (`None`: the current one, per versioning), the
/// internal version id and time for a delete marker it may create, and whether GOVERNANCE
/// retention is bypassed (the caller checked the permission and header).
#[derive(Clone, Copy, Debug)]
pub struct DeleteRequest<'a> {
    pub version_id: Option<&'a str>,
    pub marker_version: &'a str,
    pub now: i64,
    pub bypass_governance: bool,
}

/// What a delete did: the records removed (blobs to delete; markers have none), whether
/// the version created or removed is a delete marker, and its S3 version id (`None` in an
/// `Unversioned` bucket without a named version).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    pub removed: Vec<ObjectRecord>,
    pub delete_marker: bool,
    pub version_id: Option<String>,
}

/// One entry of [`MetaStore::list_versions`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionEntry {
    pub key: String,
    pub record: ObjectRecord,
    pub is_latest: bool,
}

/// A change to one version's sub-resources ([`MetaStore::update_object`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectUpdate {
    Tags(std::collections::BTreeMap<String, String>),
    /// New retention (`None`: removed). COMPLIANCE retention can only be extended; a
    /// GOVERNANCE retention can be shortened or removed only with `bypass_governance`.
    Retention {
        retention: Option<Retention>,
        bypass_governance: bool,
        now: i64,
    },
    LegalHold(bool),
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
