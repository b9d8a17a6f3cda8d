//! The S3 operations (s3s's `S3` trait) over the metadata store and encrypted blobs, one
//! file per family of operations; this file holds the handler state, the helpers every
//! family uses, and the `S3` trait impl, which only routes each operation to its family.

// s3s's DTOs are filled field by field from `Default`: many have dozens of optional fields.
#![allow(clippy::field_reassign_with_default)]

use std::collections::BTreeMap;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use coffer_format::Metadata;
use coffer_kms::KeyUse;
use futures::Stream;
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result, StdError, S3};
use tokio::sync::mpsc;

use coffer_meta::{
    BucketConfig, BucketEncryption, BucketInfo, Checksums, DeleteRequest, Deleted, EtagMatch,
    MetaError, MetaStore, ObjectHeaders, ObjectRecord, ObjectUpdate, PartRecord, Precondition,
    Retention, RetentionMode, Segment, SseRecord, UploadRecord, Versioning,
};
use coffer_outcome::KeyUsed;
use coffer_outcome::{ServerError, ServerResult};
use coffer_store::blob::{BlobStore, WrittenBlob};
use coffer_store::reserve::Reserve;
use coffer_store::sse::{self, CustomerKey, Keys, SseChoice, SseHeaders};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const MIN_PART: u64 = 5 << 20;
const MAX_PARTS: i32 = 10_000;
const MAX_KEY_LEN: usize = 1024;

#[derive(Clone)]
pub struct S3Handlers {
    pub iam: Arc<coffer_iam::iam::Iam>,
    /// Object, bucket and upload metadata (the commit point), behind the disk reserve.
    pub meta: Arc<dyn MetaStore>,
    pub blobs: Arc<BlobStore>,
    pub keys: Arc<Keys>,
    /// Whether requests arrive over TLS (SSE-C is refused otherwise).
    pub secure: bool,
    pub limits: BodyLimits,
    pub reserve: Arc<Reserve>,
}

/// What a request body may do: the server's `--max-object-size` and body idle timeout.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// Largest object (single PUT, copy or part) accepted.
    pub max_object_size: u64,
    /// A request body that sends nothing for this long fails with `RequestTimeout`.
    pub body_idle_timeout: Duration,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// One day in milliseconds (Object Lock retention and lifecycle day counts).
const DAY_MS: i64 = 86_400_000;

/// A timestamp as Unix milliseconds (saturating).
fn ms_of(t: &Timestamp) -> i64 {
    let t: time::OffsetDateTime = t.clone().into();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Whole seconds: S3 dates have second precision, and conditional requests compare at that
/// precision.
fn secs(t: &Timestamp) -> i64 {
    let t: time::OffsetDateTime = t.clone().into();
    t.unix_timestamp()
}

fn check_key(key: &str) -> ServerResult<()> {
    if key.is_empty() {
        return Err(ServerError::invalid_argument(
            "The object key must not be empty.",
        ));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ServerError::s3(
            S3ErrorCode::KeyTooLongError,
            "Your key is too long",
        ));
    }
    if key.contains('\0') {
        return Err(ServerError::invalid_argument(
            "Object key contains a NUL character, which is not allowed.",
        ));
    }
    Ok(())
}

fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_owned())
}

/// A response that records, for the audit trail, the key the operation used.
fn with_key_used<T>(output: T, used: Option<KeyUsed>) -> S3Response<T> {
    let mut resp = S3Response::new(output);
    if let Some(used) = used {
        resp.extensions.insert(used);
    }
    resp
}

/// The caller, as the access hook (`iam::S3Authz`) left it in the request's extensions.
fn principal(ext: &http::Extensions) -> S3Result<coffer_iam::principal::Principal> {
    ext.get::<coffer_iam::principal::Principal>()
        .cloned()
        .ok_or_else(coffer_iam::iam::access_denied)
}

/// The access hook's decision for this request (`iam::S3Authz`).
fn authorized(ext: &http::Extensions) -> S3Result<&coffer_iam::iam::Authorized> {
    ext.get::<coffer_iam::iam::Authorized>()
        .ok_or_else(coffer_iam::iam::access_denied)
}

/// The `x-amz-version-id` a response about `rec` carries: its version id when it was
/// written with versioning enabled; `null` for the null version when the request named a
/// version (`named`).
fn version_out(rec: &ObjectRecord, named: bool) -> Option<String> {
    if rec.versioned || named {
        Some(rec.s3_version_id().to_owned())
    } else {
        None
    }
}

/// The S3 owner of identity `name`: its own canonical id, its name as display name.
fn owner_of(name: &str) -> Owner {
    let mut o = Owner::default();
    o.id = Some(coffer_iam::iam::canonical_id(name));
    o.display_name = Some(name.to_owned());
    o
}

impl S3Handlers {
    /// The owner of a bucket and, under "bucket owner enforced" (the only object ownership
    /// Coffer has), of every object in it.
    fn bucket_owner(&self, bucket: &str) -> Owner {
        owner_of(&self.iam.bucket_owner(bucket))
    }
}

/// A bucket sub-resource stored as JSON (`None`: not configured). The documents' layouts are
/// in docs/server.md ("Stored records").
pub async fn config_json<T: serde::de::DeserializeOwned>(
    meta: &dyn MetaStore,
    bucket: &str,
    kind: BucketConfig,
) -> ServerResult<Option<T>> {
    match meta.bucket_config(bucket, kind).await? {
        None => Ok(None),
        Some(doc) => serde_json::from_str(&doc).map(Some).map_err(|e| {
            ServerError::Internal(format!(
                "stored {} document of {bucket}: {e}",
                kind.as_str()
            ))
        }),
    }
}

/// Stores a bucket sub-resource as JSON.
async fn set_config_json<T: serde::Serialize>(
    meta: &dyn MetaStore,
    bucket: &str,
    kind: BucketConfig,
    value: &T,
) -> ServerResult<()> {
    let doc = serde_json::to_string(value)
        .map_err(|e| ServerError::Internal(format!("encode {}: {e}", kind.as_str())))?;
    Ok(meta.set_bucket_config(bucket, kind, Some(&doc)).await?)
}

fn s3<T, E: Into<ServerError>>(r: Result<T, E>) -> S3Result<T> {
    r.map_err(|e| e.into().into())
}

impl S3Handlers {
    async fn bucket_default(&self, bucket: &str) -> ServerResult<Option<BucketEncryption>> {
        Ok(self.meta.bucket_encryption(bucket).await?)
    }

    async fn object(&self, bucket: &str, key: &str) -> ServerResult<ObjectRecord> {
        match self.meta.object(bucket, key).await? {
            Some(r) => Ok(r),
            None => {
                if self.meta.bucket_exists(bucket).await? {
                    Err(ServerError::NoSuchKey)
                } else {
                    Err(ServerError::NoSuchBucket)
                }
            }
        }
    }

    /// The version a read names (`versionId`), or the current object: S3's answers for
    /// an unknown version (NoSuchVersion) and for delete markers
    /// ([`ServerError::DeleteMarker`]).
    async fn object_at(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> ServerResult<ObjectRecord> {
        let Some(id) = version_id else {
            return match self.object(bucket, key).await {
                Err(ServerError::NoSuchKey) => {
                    match self.meta.object_version(bucket, key, None).await? {
                        Some(m) if m.delete_marker => Err(ServerError::DeleteMarker {
                            version_id: m.s3_version_id().to_owned(),
                            named: false,
                        }),
                        _ => Err(ServerError::NoSuchKey),
                    }
                }
                other => other,
            };
        };
        match self.meta.object_version(bucket, key, Some(id)).await? {
            Some(r) if r.delete_marker => Err(ServerError::DeleteMarker {
                version_id: id.to_owned(),
                named: true,
            }),
            Some(r) => Ok(r),
            None if !self.meta.bucket_exists(bucket).await? => Err(ServerError::NoSuchBucket),
            None => Err(ServerError::s3(
                S3ErrorCode::NoSuchVersion,
                "The specified version does not exist.",
            )),
        }
    }

    /// Blobs of records a write or delete replaced.
    async fn delete_records(&self, records: Vec<ObjectRecord>) {
        for r in records {
            self.delete_blobs(r.segments).await;
        }
    }

    async fn delete_blobs(&self, segments: impl IntoIterator<Item = Segment>) {
        for s in segments {
            self.blobs.delete(&s.blob).await;
        }
    }

    fn customer_key(
        &self,
        algorithm: Option<&str>,
        key: Option<&str>,
        md5: Option<&str>,
    ) -> ServerResult<Option<CustomerKey>> {
        sse::parse_customer_key(algorithm, key, md5, self.secure)
    }

    /// SSE-KMS uses the key on the caller's behalf: the caller's proof for `action` on the
    /// object's key (`None` for the other encryption kinds, which need none).
    async fn kms_use(
        &self,
        ext: &http::Extensions,
        sse: &SseRecord,
        action: &str,
    ) -> S3Result<Option<KeyUse>> {
        let SseRecord::Kms { key_arn, context } = sse else {
            return Ok(None);
        };
        let caller = principal(ext)?;
        Ok(Some(s3(self
            .keys
            .authorize(&caller, key_arn, action, context, self.secure)
            .await)?))
    }
}

/// The start every object listing shares: [`S3Handlers::list`] with the input's common fields
/// (`bucket`, `max_keys`, `encoding_type`, `prefix`, `delimiter`); `$after` works out the
/// listing's start key. Evaluates to (prefix, page size, start key, page).
macro_rules! list_input {
    ($self:ident, $input:ident, $after:expr) => {{
        let prefix = $input.prefix.clone().unwrap_or_default();
        let (limit, after, page) = s3($self
            .list(
                &$input.bucket,
                $input.max_keys,
                $input.encoding_type.as_ref(),
                &prefix,
                $input.delimiter.as_deref(),
                $after,
            )
            .await)?;
        (prefix, limit, after, page)
    }};
}

/// The fields every listing's output echoes from its input.
macro_rules! list_output {
    ($out:ident, $input:ident, $prefix:expr, $limit:expr) => {
        $out.name = Some($input.bucket);
        $out.prefix = Some($prefix);
        $out.max_keys = Some($limit as i32);
        $out.delimiter = $input.delimiter;
        $out.encoding_type = $input.encoding_type;
    };
}

/// The SSE request headers of a write's input (PutObject, CopyObject,
/// CreateMultipartUpload): the
/// s3s input types share the field names but no trait.
macro_rules! sse_headers {
    ($input:expr) => {
        SseHeaders {
            sse: $input.server_side_encryption.as_ref().map(|s| s.as_str()),
            kms_key_id: $input.ssekms_key_id.as_deref(),
            kms_context: $input.ssekms_encryption_context.as_deref(),
            c_algorithm: $input.sse_customer_algorithm.as_deref(),
            c_key: $input.sse_customer_key.as_deref(),
            c_key_md5: $input.sse_customer_key_md5.as_deref(),
        }
    };
}

/// The SSE-C key a request's input carries (`x-amz-server-side-encryption-customer-*`,
/// checked by `S3Handlers::customer_key`); returns early on error.
macro_rules! customer_key {
    ($h:ident, $input:ident) => {
        s3($h.customer_key(
            $input.sse_customer_algorithm.as_deref(),
            $input.sse_customer_key.as_deref(),
            $input.sse_customer_key_md5.as_deref(),
        ))?
    };
}

/// The stored headers a write's input sets (PutObject, CopyObject with
/// `MetadataDirective=REPLACE`, CreateMultipartUpload): same field names, no shared trait.
macro_rules! object_headers {
    ($input:ident) => {
        object_headers(
            $input.content_type.clone(),
            $input.content_encoding.clone(),
            $input.content_disposition.clone(),
            $input.content_language.clone(),
            $input.cache_control.clone(),
            $input.expires.clone(),
            $input.website_redirect_location.clone(),
            $input.metadata.clone(),
        )
    };
}

/// The copy source of CopyObject and UploadPartCopy (whose s3s inputs share the field
/// names but no trait): its SSE-C key, then its record with the copy-source conditions
/// checked. Evaluates to `(customer key, bucket, key, record)`; returns early on error.
macro_rules! read_copy_source {
    ($self:ident, $input:ident) => {{
        let customer = s3($self.customer_key(
            $input.copy_source_sse_customer_algorithm.as_deref(),
            $input.copy_source_sse_customer_key.as_deref(),
            $input.copy_source_sse_customer_key_md5.as_deref(),
        ))?;
        let (bucket, key, record) = s3($self
            .copy_source(
                &$input.copy_source,
                $input.copy_source_if_match.as_ref(),
                $input.copy_source_if_none_match.as_ref(),
                $input.copy_source_if_modified_since.as_ref(),
                $input.copy_source_if_unmodified_since.as_ref(),
                customer.as_ref(),
            )
            .await)?;
        (customer, bucket, key, record)
    }};
}

/// The `ChecksumRequest` of a streamed write's input (PutObject, UploadPart): the
/// `x-amz-checksum-*` values it announced and its algorithm, else `$default` (an upload's).
macro_rules! checksum_request {
    ($input:expr, $default:expr) => {
        ChecksumRequest {
            crc32: $input.checksum_crc32.clone(),
            crc32c: $input.checksum_crc32c.clone(),
            crc64nvme: $input.checksum_crc64nvme.clone(),
            sha1: $input.checksum_sha1.clone(),
            sha256: $input.checksum_sha256.clone(),
            algorithm: $input
                .checksum_algorithm
                .as_ref()
                .map(|a| a.as_str().to_owned())
                .or_else(|| $default),
        }
    };
}

/// Sets an output's five SSE response headers from an `SseOut`.
macro_rules! set_sse {
    ($out:expr, $s:expr) => {{
        let s = $s;
        $out.server_side_encryption = s.sse;
        $out.ssekms_key_id = s.kms_key_id;
        $out.sse_customer_algorithm = s.c_algorithm;
        $out.sse_customer_key_md5 = s.c_key_md5;
        $out.bucket_key_enabled = s.bucket_key;
    }};
}

/// Sets an output's `x-amz-checksum-*` fields from stored `Checksums`.
macro_rules! set_checksums {
    ($out:expr, $c:expr) => {{
        let c = $c;
        $out.checksum_crc32 = c.crc32;
        $out.checksum_crc32c = c.crc32c;
        $out.checksum_crc64nvme = c.crc64nvme;
        $out.checksum_sha1 = c.sha1;
        $out.checksum_sha256 = c.sha256;
    }};
}

mod acl;
mod bucket;
mod checksum;
mod copy;
pub mod cors;
mod delete;
mod get;
mod headers;
mod lifecycle;
mod list;
mod lock;
mod multipart;
mod post;
mod put;
mod read;
mod save;

use self::acl::*;
pub use self::checksum::verify_small_body;
use self::checksum::*;
pub use self::copy::parse_copy_source_range;
use self::get::*;
use self::headers::*;
pub use self::lifecycle::LifecycleReport;
use self::list::*;
pub use self::lock::LockedKeysGuard;
use self::lock::*;
use self::read::*;
use self::save::*;

#[async_trait::async_trait]
impl S3 for S3Handlers {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        bucket::create_bucket(self, req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        bucket::delete_bucket(self, req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        bucket::head_bucket(self, req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        bucket::list_buckets(self, req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        bucket::get_bucket_location(self, req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        bucket::get_bucket_versioning(self, req).await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        bucket::put_bucket_versioning(self, req).await
    }

    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        bucket::put_bucket_encryption(self, req).await
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        bucket::get_bucket_encryption(self, req).await
    }

    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        bucket::delete_bucket_encryption(self, req).await
    }

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        bucket::put_bucket_policy(self, req).await
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        bucket::get_bucket_policy(self, req).await
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        bucket::delete_bucket_policy(self, req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        put::put_object(self, req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        get::get_object(self, req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        get::head_object(self, req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        delete::delete_object(self, req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        delete::delete_objects(self, req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        copy::copy_object(self, req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        list::list_objects(self, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        list::list_objects_v2(self, req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        list::list_object_versions(self, req).await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        get::get_object_attributes(self, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create_multipart_upload(self, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        multipart::upload_part_copy(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete_multipart_upload(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort_multipart_upload(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_multipart_uploads(self, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, req).await
    }

    async fn put_object_lock_configuration(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        lock::put_object_lock_configuration(self, req).await
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        lock::get_object_lock_configuration(self, req).await
    }

    async fn put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        lock::put_object_retention(self, req).await
    }

    async fn get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        lock::get_object_retention(self, req).await
    }

    async fn put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        lock::put_object_legal_hold(self, req).await
    }

    async fn get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        lock::get_object_legal_hold(self, req).await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        lock::put_object_tagging(self, req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        lock::get_object_tagging(self, req).await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        lock::delete_object_tagging(self, req).await
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        lock::put_bucket_tagging(self, req).await
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        lock::get_bucket_tagging(self, req).await
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        lock::delete_bucket_tagging(self, req).await
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        lifecycle::put_bucket_lifecycle_configuration(self, req).await
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        lifecycle::get_bucket_lifecycle_configuration(self, req).await
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        lifecycle::delete_bucket_lifecycle(self, req).await
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        cors::put_bucket_cors(self, req).await
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        cors::get_bucket_cors(self, req).await
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        cors::delete_bucket_cors(self, req).await
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        acl::get_bucket_acl(self, req).await
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        acl::put_bucket_acl(self, req).await
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        acl::get_object_acl(self, req).await
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        acl::put_object_acl(self, req).await
    }

    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        acl::get_bucket_ownership_controls(self, req).await
    }

    async fn put_bucket_ownership_controls(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
        acl::put_bucket_ownership_controls(self, req).await
    }

    async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        acl::put_public_access_block(self, req).await
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        acl::get_public_access_block(self, req).await
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        acl::delete_public_access_block(self, req).await
    }

    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        acl::get_bucket_policy_status(self, req).await
    }

    async fn post_object(
        &self,
        req: S3Request<PostObjectInput>,
    ) -> S3Result<S3Response<PostObjectOutput>> {
        post::post_object(self, req).await
    }
}
