//! The S3 operations (s3s's `S3` trait) over the metadata store and encrypted blobs.

// s3s's DTOs are filled field by field from `Default`: many have dozens of optional fields.
#![allow(clippy::field_reassign_with_default)]

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

use crate::audit::KeyUsed;
use crate::blob::{BlobStore, WrittenBlob};
use crate::error::{ServerError, ServerResult};
use crate::reserve::Reserve;
use crate::sse::{self, CustomerKey, Keys, SseChoice, SseHeaders};
use coffer_meta::{
    BucketEncryption, BucketInfo, Checksums, EtagMatch, MetaError, MetaStore, ObjectHeaders,
    ObjectRecord, PartRecord, Precondition, Segment, SseRecord, UploadRecord,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const MIN_PART: u64 = 5 << 20;
const MAX_PARTS: i32 = 10_000;
const MAX_KEY_LEN: usize = 1024;

pub struct S3Handlers {
    /// The audit trail (written by the front service in lib.rs).
    pub audit: Arc<crate::audit::Auditor>,
    pub iam: Arc<crate::iam::Iam>,
    /// Object, bucket and upload metadata (the commit point), behind the disk reserve.
    pub meta: Arc<dyn MetaStore>,
    pub blobs: Arc<BlobStore>,
    pub keys: Arc<Keys>,
    /// Whether requests arrive over TLS (SSE-C is refused otherwise).
    pub secure: bool,
    pub limits: crate::Limits,
    pub reserve: Arc<Reserve>,
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

fn sse_algorithm(rec: &SseRecord) -> Option<ServerSideEncryption> {
    match rec {
        SseRecord::S3 => Some(ServerSideEncryption::from_static(
            ServerSideEncryption::AES256,
        )),
        SseRecord::Kms { .. } => Some(ServerSideEncryption::from_static(
            ServerSideEncryption::AWS_KMS,
        )),
        SseRecord::C { .. } => None,
    }
}

fn kms_key(rec: &SseRecord) -> Option<String> {
    match rec {
        SseRecord::Kms { key_arn, .. } => Some(key_arn.clone()),
        _ => None,
    }
}

/// The SSE fields every object response carries.
struct SseOut {
    sse: Option<ServerSideEncryption>,
    kms_key_id: Option<String>,
    c_algorithm: Option<String>,
    c_key_md5: Option<String>,
    bucket_key: Option<bool>,
}

fn sse_out(rec: &SseRecord, customer: Option<&CustomerKey>, bucket_key: bool) -> SseOut {
    SseOut {
        sse: sse_algorithm(rec),
        kms_key_id: kms_key(rec),
        c_algorithm: customer.map(|_| "AES256".to_owned()),
        c_key_md5: customer.map(|c| c.key_md5.clone()),
        bucket_key: matches!(rec, SseRecord::Kms { .. }).then_some(bucket_key),
    }
}

fn header_metadata(h: &ObjectHeaders) -> ServerResult<Metadata> {
    let mut m = Metadata::new();
    if let Some(ct) = &h.content_type {
        m.insert("content-type", ct.clone())?;
    }
    for (k, v) in &h.user_metadata {
        m.insert(format!("x-amz-meta-{k}"), v.clone())?;
    }
    Ok(m)
}

#[allow(clippy::too_many_arguments)]
fn object_headers(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
    website_redirect_location: Option<String>,
    metadata: Option<s3s::dto::Metadata>,
) -> ObjectHeaders {
    let expires = expires.and_then(|t| {
        let mut buf = Vec::new();
        t.format(TimestampFormat::HttpDate, &mut buf).ok()?;
        String::from_utf8(buf).ok()
    });
    // `aws-chunked` describes the request's transfer framing, not the object (S3 strips it).
    let content_encoding = content_encoding.and_then(|ce| {
        let kept: Vec<&str> = ce
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
            .collect();
        (!kept.is_empty()).then(|| kept.join(", "))
    });
    ObjectHeaders {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        expires,
        website_redirect_location,
        user_metadata: metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
    }
}

/// S3 limits user-defined metadata to 2 KB (names and values, as sent).
fn check_metadata(m: Option<&s3s::dto::Metadata>) -> ServerResult<()> {
    let size: usize = m
        .map(|m| m.iter().map(|(k, v)| k.len() + v.len()).sum())
        .unwrap_or(0);
    if size > 2048 {
        return Err(ServerError::s3(
            S3ErrorCode::MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size.",
        ));
    }
    Ok(())
}

fn parse_expires(s: &Option<String>) -> Option<Timestamp> {
    s.as_deref()
        .and_then(|s| Timestamp::parse(TimestampFormat::HttpDate, s).ok())
}

/// Which checksums a write computes: those the request names or sends.
#[derive(Default, Clone)]
struct ChecksumRequest {
    crc32: Option<String>,
    crc32c: Option<String>,
    crc64nvme: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
    algorithm: Option<String>,
}

impl ChecksumRequest {
    fn hasher(&self) -> ServerResult<s3s::checksum::ChecksumHasher> {
        let given = [
            &self.crc32,
            &self.crc32c,
            &self.crc64nvme,
            &self.sha1,
            &self.sha256,
        ]
        .iter()
        .filter(|v| v.is_some())
        .count();
        if given > 1 {
            return Err(ServerError::invalid_request(
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
            ));
        }
        let mut h = s3s::checksum::ChecksumHasher::default();
        if self.crc32.is_some() {
            h.crc32 = Some(Default::default());
        }
        if self.crc32c.is_some() {
            h.crc32c = Some(Default::default());
        }
        if self.crc64nvme.is_some() {
            h.crc64nvme = Some(Default::default());
        }
        if self.sha1.is_some() {
            h.sha1 = Some(Default::default());
        }
        if self.sha256.is_some() {
            h.sha256 = Some(Default::default());
        }
        match self
            .algorithm
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None => {}
            Some("CRC32") => h.crc32 = Some(Default::default()),
            Some("CRC32C") => h.crc32c = Some(Default::default()),
            Some("CRC64NVME") => h.crc64nvme = Some(Default::default()),
            Some("SHA1") => h.sha1 = Some(Default::default()),
            Some("SHA256") => h.sha256 = Some(Default::default()),
            Some(other) => {
                return Err(ServerError::invalid_argument(format!(
                    "Checksum algorithm {other} is not supported"
                )))
            }
        }
        Ok(h)
    }

    /// Folds in checksums sent as aws-chunked trailers.
    fn add_trailers(
        &mut self,
        headers: &http::HeaderMap,
        trailers: Option<s3s::TrailingHeaders>,
    ) -> ServerResult<()> {
        // What `x-amz-trailer` declares must arrive (and is then verified like a header).
        let declared: Vec<String> = headers
            .get_all("x-amz-trailer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        for name in &declared {
            if !matches!(
                name.as_str(),
                "x-amz-checksum-crc32"
                    | "x-amz-checksum-crc32c"
                    | "x-amz-checksum-crc64nvme"
                    | "x-amz-checksum-sha1"
                    | "x-amz-checksum-sha256"
            ) {
                return Err(ServerError::invalid_request(format!(
                    "The trailer {name} is not supported"
                )));
            }
        }
        let map = trailers.and_then(|t| t.take());
        if let Some(name) = declared
            .iter()
            .find(|n| map.as_ref().is_none_or(|m| m.get(n.as_str()).is_none()))
        {
            return Err(ServerError::invalid_request(format!(
                "The request declared the trailer {name} but did not send it"
            )));
        }
        let Some(map) = map else {
            return Ok(());
        };
        if let Some(other) = map
            .keys()
            .map(|k| k.as_str())
            .find(|k| k.starts_with("x-amz-checksum-") && !declared.iter().any(|d| d == k))
        {
            return Err(ServerError::invalid_request(format!(
                "The trailer {other} was not declared in x-amz-trailer"
            )));
        }
        let get = |name: &str| -> ServerResult<Option<String>> {
            map.get(name)
                .map(|v| {
                    v.to_str().map(str::to_owned).map_err(|_| {
                        ServerError::invalid_argument(format!("invalid trailer {name}"))
                    })
                })
                .transpose()
        };
        if let Some(v) = get("x-amz-checksum-crc32")? {
            self.crc32 = Some(v);
        }
        if let Some(v) = get("x-amz-checksum-crc32c")? {
            self.crc32c = Some(v);
        }
        if let Some(v) = get("x-amz-checksum-crc64nvme")? {
            self.crc64nvme = Some(v);
        }
        if let Some(v) = get("x-amz-checksum-sha1")? {
            self.sha1 = Some(v);
        }
        if let Some(v) = get("x-amz-checksum-sha256")? {
            self.sha256 = Some(v);
        }
        Ok(())
    }

    /// Compares what the client claimed with what was computed over the plaintext.
    fn verify(&self, got: &s3s::dto::Checksum) -> ServerResult<Checksums> {
        let pairs = [
            ("CRC32", &self.crc32, &got.checksum_crc32),
            ("CRC32C", &self.crc32c, &got.checksum_crc32c),
            ("CRC64NVME", &self.crc64nvme, &got.checksum_crc64nvme),
            ("SHA1", &self.sha1, &got.checksum_sha1),
            ("SHA256", &self.sha256, &got.checksum_sha256),
        ];
        for (name, want, got) in pairs {
            if let (Some(want), Some(got)) = (want, got) {
                if want != got {
                    return Err(ServerError::s3(
                        S3ErrorCode::BadDigest,
                        format!("The {name} you specified did not match the calculated checksum."),
                    ));
                }
            }
        }
        Ok(Checksums {
            crc32: got.checksum_crc32.clone(),
            crc32c: got.checksum_crc32c.clone(),
            crc64nvme: got.checksum_crc64nvme.clone(),
            sha1: got.checksum_sha1.clone(),
            sha256: got.checksum_sha256.clone(),
            kind: None,
        })
    }
}

/// A streaming (aws-chunked) body must decode to exactly `x-amz-decoded-content-length`.
fn check_body_complete(headers: &http::HeaderMap, got: u64) -> ServerResult<()> {
    if let Some(v) = headers.get("x-amz-decoded-content-length") {
        let want: u64 = v
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                ServerError::invalid_argument("x-amz-decoded-content-length is not a number")
            })?;
        if want != got {
            return Err(ServerError::s3(
                S3ErrorCode::IncompleteBody,
                format!("The request body decoded to {got} bytes; x-amz-decoded-content-length says {want}"),
            ));
        }
    }
    Ok(())
}

fn verify_content_md5(content_md5: Option<&str>, md5: &[u8; 16]) -> ServerResult<()> {
    let Some(given) = content_md5 else {
        return Ok(());
    };
    let given = B64.decode(given.trim()).map_err(|_| {
        ServerError::s3(
            S3ErrorCode::InvalidDigest,
            "The Content-MD5 you specified is not valid.",
        )
    })?;
    if given.len() != 16 {
        return Err(ServerError::s3(
            S3ErrorCode::InvalidDigest,
            "The Content-MD5 you specified is not valid.",
        ));
    }
    if given != md5 {
        return Err(ServerError::s3(
            S3ErrorCode::BadDigest,
            "The Content-MD5 you specified did not match what we received.",
        ));
    }
    Ok(())
}

/// A response body fed by a decrypting task.
struct ChannelBody(mpsc::Receiver<Result<Bytes, StdError>>);

impl Stream for ChannelBody {
    type Item = Result<Bytes, StdError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Conditional-request evaluation for GET and HEAD (RFC 9110 §13.2.2 order, as S3).
fn check_conditions(
    rec: &ObjectRecord,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> ServerResult<()> {
    let current = etag(&rec.etag);
    let modified = rec.last_modified / 1000;
    if let Some(cond) = if_match {
        let ok = match cond {
            ETagCondition::Any => true,
            ETagCondition::ETag(e) => current.strong_cmp(e),
        };
        if !ok {
            return Err(ServerError::PreconditionFailed);
        }
    } else if let Some(t) = if_unmodified_since {
        if modified > secs(t) {
            return Err(ServerError::PreconditionFailed);
        }
    }
    if let Some(cond) = if_none_match {
        let matched = match cond {
            ETagCondition::Any => true,
            ETagCondition::ETag(e) => current.weak_cmp(e),
        };
        if matched {
            return Err(ServerError::s3(S3ErrorCode::NotModified, "Not Modified"));
        }
    } else if let Some(t) = if_modified_since {
        if modified <= secs(t) {
            return Err(ServerError::s3(S3ErrorCode::NotModified, "Not Modified"));
        }
    }
    Ok(())
}

fn multipart_etag(md5s: &[String]) -> ServerResult<String> {
    let mut h = Md5::new();
    for m in md5s {
        h.update(hex::decode(m).map_err(|_| ServerError::Internal("stored etag".into()))?);
    }
    Ok(format!("{}-{}", hex::encode(h.finalize()), md5s.len()))
}

impl S3Handlers {
    async fn bucket_default(&self, bucket: &str) -> ServerResult<Option<BucketEncryption>> {
        Ok(self.meta.bucket_encryption(bucket).await?)
    }

    /// One page of an object listing, in the order every listing checks things: its
    /// parameters, then the bucket, then `after` (the marker, start-after, or decoded
    /// continuation token), then the page is read. Returns (page size, after, page).
    async fn list(
        &self,
        bucket: &str,
        max_keys: Option<i32>,
        encoding: Option<&EncodingType>,
        prefix: &str,
        delimiter: Option<&str>,
        after: impl FnOnce() -> ServerResult<String>,
    ) -> ServerResult<(usize, String, ListPage)> {
        check_list_params(&[("max-keys", max_keys)], encoding)?;
        if !self.meta.bucket_exists(bucket).await? {
            return Err(ServerError::NoSuchBucket);
        }
        let limit = max_keys.map(|v| v.clamp(0, 1000) as usize).unwrap_or(1000);
        let after = after()?;
        let page = list_page(&*self.meta, bucket, prefix, delimiter, &after, limit).await?;
        Ok((limit, after, page))
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

    async fn delete_blobs(&self, segments: impl IntoIterator<Item = Segment>) {
        for s in segments {
            self.blobs.delete(&s.blob).await;
        }
    }

    /// Encrypts a body into one blob of (bucket, key, version, part).
    #[allow(clippy::too_many_arguments)]
    async fn write_blob<S>(
        &self,
        body: S,
        bucket: &str,
        key: &str,
        version: &str,
        part: u32,
        sse: &SseRecord,
        customer: Option<&CustomerKey>,
        proof: Option<&KeyUse>,
        headers: &ObjectHeaders,
        hasher: s3s::checksum::ChecksumHasher,
        max_len: u64,
        idle: std::time::Duration,
    ) -> ServerResult<(Segment, WrittenBlob, Option<KeyUsed>)>
    where
        S: Stream<Item = Result<Bytes, StdError>> + Unpin,
    {
        let ctx = sse::blob_context(bucket, key, version, part)?;
        let bk = self.keys.new_blob_key(sse, customer, proof, &ctx).await?;
        let used = proof.map(|p| KeyUsed::new(p, bk.wrapped.reference().version));
        let written = self
            .blobs
            .write(
                body,
                bk,
                &ctx,
                &header_metadata(headers)?,
                hasher,
                max_len,
                idle,
            )
            .await?;
        let seg = Segment {
            blob: written.name.clone(),
            version: version.to_owned(),
            part_number: part,
            plain_len: written.plain_len,
            blob_len: written.blob_len,
            header_len: written.header_len,
            etag: hex::encode(written.md5),
        };
        Ok((seg, written, used))
    }

    /// Streams the plaintext `range` of an object. The first segment is opened (key
    /// unwrapped, commitment and trailer checked) before this returns, so a wrong key or a
    /// damaged header is an error response rather than a cut body. Also returns, for
    /// SSE-KMS, the key used to open that first segment.
    async fn read_stream(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
        customer: Option<CustomerKey>,
        proof: Option<KeyUse>,
        range: Range<u64>,
    ) -> ServerResult<(ChannelBody, Option<KeyUsed>)> {
        // (segment, its plaintext range within the segment)
        let mut plan = Vec::new();
        let mut offset = 0u64;
        for seg in &rec.segments {
            let seg_range = offset..offset + seg.plain_len;
            let lo = range.start.max(seg_range.start);
            let hi = range.end.min(seg_range.end);
            if lo < hi || (seg.plain_len == 0 && range.is_empty() && plan.is_empty()) {
                plan.push((seg.clone(), lo - offset..hi.max(lo) - offset));
            }
            offset += seg.plain_len;
        }
        let (tx, rx) = mpsc::channel(2);
        let mut plan = plan.into_iter();
        let Some((first_seg, first_range)) = plan.next() else {
            drop(tx);
            return Ok((ChannelBody(rx), None));
        };
        let ctx = sse::blob_context(bucket, key, &first_seg.version, first_seg.part_number)?;
        let first = self
            .blobs
            .open(
                &first_seg,
                &self.keys,
                &rec.sse,
                customer.as_ref(),
                proof.as_ref(),
                &ctx,
            )
            .await?;
        let used = proof.as_ref().map(|p| KeyUsed::new(p, first.key_version));
        // The first window is decrypted before the response starts: a small object is fully
        // authenticated before its status line, and damage is an error response, not a cut
        // body.
        let mut first_range = first_range;
        if let Some(data) = self.blobs.next_window(&first, &mut first_range).await? {
            tx.try_send(Ok(data))
                .map_err(|_| ServerError::Internal("response channel".into()))?;
        }
        let (blobs, keys) = (Arc::clone(&self.blobs), Arc::clone(&self.keys));
        let (bucket, key, sse) = (bucket.to_owned(), key.to_owned(), rec.sse.clone());
        tokio::spawn(async move {
            let result: ServerResult<()> = async {
                if !blobs.stream_range(&first, first_range, &tx).await? {
                    return Ok(());
                }
                drop(first);
                for (seg, r) in plan {
                    let ctx = sse::blob_context(&bucket, &key, &seg.version, seg.part_number)?;
                    let blob = blobs
                        .open(&seg, &keys, &sse, customer.as_ref(), proof.as_ref(), &ctx)
                        .await?;
                    if !blobs.stream_range(&blob, r, &tx).await? {
                        return Ok(());
                    }
                }
                Ok(())
            }
            .await;
            if let Err(e) = result {
                tracing::error!(bucket, key, "read aborted: {e}");
                let failure = crate::audit::BodyFailure {
                    integrity: matches!(e, ServerError::Integrity(_)),
                    detail: format!("object read failed: {e}"),
                };
                let _ = tx.send(Err(Box::new(failure))).await;
            }
        });
        Ok((ChannelBody(rx), used))
    }

    fn customer_key(
        &self,
        algorithm: Option<&str>,
        key: Option<&str>,
        md5: Option<&str>,
    ) -> ServerResult<Option<CustomerKey>> {
        sse::parse_customer_key(algorithm, key, md5, self.secure)
    }

    /// Reads a copy source: checks conditions and the source's SSE-C key, returns its record.
    #[allow(clippy::too_many_arguments)]
    async fn copy_source(
        &self,
        source: &CopySource,
        if_match: Option<&ETagCondition>,
        if_none_match: Option<&ETagCondition>,
        if_modified_since: Option<&Timestamp>,
        if_unmodified_since: Option<&Timestamp>,
        customer: Option<&CustomerKey>,
    ) -> ServerResult<(String, String, ObjectRecord)> {
        let (bucket, key) = match source {
            CopySource::Bucket {
                bucket,
                key,
                version_id,
            } => {
                if version_id.as_deref().is_some_and(|v| v != "null") {
                    return Err(ServerError::invalid_argument(
                        "Invalid version id specified",
                    ));
                }
                (bucket.to_string(), key.to_string())
            }
            _ => {
                return Err(ServerError::s3(
                    S3ErrorCode::NotImplemented,
                    "Access point copy sources are not supported",
                ))
            }
        };
        let rec = self.object(&bucket, &key).await?;
        // Copy-source conditions fail with 412 in every case (S3 CopyObject docs).
        check_conditions(
            &rec,
            if_match,
            if_none_match,
            if_modified_since,
            if_unmodified_since,
        )
        .map_err(|e| match e {
            ServerError::S3(S3ErrorCode::NotModified, _) => ServerError::PreconditionFailed,
            e => e,
        })?;
        self.keys.check_read_key(&rec.sse, customer)?;
        Ok((bucket, key, rec))
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

    /// What a write stores (its SSE record, SSE-C key, bucket-key flag) and, for SSE-KMS,
    /// the caller's `kms:GenerateDataKey` proof on the chosen key.
    #[allow(clippy::type_complexity)]
    async fn write_choice(
        &self,
        ext: &http::Extensions,
        h: &SseHeaders<'_>,
        bucket: &str,
        key: &str,
    ) -> S3Result<(SseRecord, Option<CustomerKey>, bool, Option<KeyUse>)> {
        let default = s3(self.bucket_default(bucket).await)?;
        let choice = s3(sse::choose(h, default.as_ref(), self.secure))?;
        let caller = principal(ext)?;
        let (rec, proof) = s3(self
            .keys
            .resolve(&choice, bucket, key, &caller, self.secure)
            .await)?;
        let bucket_key = default.as_ref().is_some_and(|d| d.bucket_key_enabled);
        let customer = match choice {
            SseChoice::C(c) => Some(c),
            _ => None,
        };
        Ok((rec, customer, bucket_key, proof))
    }
}

/// One page of an object listing (ListObjects, ListObjectsV2, ListObjectVersions): the
/// objects and the common prefixes they roll up into, whether more follow, and the marker
/// the next page starts after.
struct ListPage {
    contents: Vec<(String, ObjectRecord)>,
    prefixes: Vec<String>,
    truncated: bool,
    next: Option<String>,
}

impl ListPage {
    fn common_prefixes(prefixes: Vec<String>) -> Vec<CommonPrefix> {
        prefixes
            .into_iter()
            .map(|p| {
                let mut c = CommonPrefix::default();
                c.prefix = Some(p);
                c
            })
            .collect()
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

/// Reads `meta` in batches until `max_keys` entries (objects + common prefixes) after
/// `after` are collected.
async fn list_page(
    meta: &dyn MetaStore,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: &str,
    max_keys: usize,
) -> ServerResult<ListPage> {
    let mut contents = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut cursor = after.to_owned();
    let mut last = None;
    let mut truncated = false;
    if max_keys > 0 {
        'outer: loop {
            let batch = meta.list_objects(bucket, prefix, &cursor, 1000).await?;
            let n = batch.len();
            for (key, item) in batch {
                cursor = key.clone();
                let rolled = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                    key[prefix.len()..]
                        .find(d)
                        .map(|i| key[..prefix.len() + i + d.len()].to_owned())
                });
                match rolled {
                    Some(cp) => {
                        if prefixes.last() == Some(&cp) || cp.as_str() <= after {
                            continue;
                        }
                        if contents.len() + prefixes.len() == max_keys {
                            truncated = true;
                            break 'outer;
                        }
                        last = Some(cp.clone());
                        prefixes.push(cp);
                    }
                    None => {
                        if contents.len() + prefixes.len() == max_keys {
                            truncated = true;
                            break 'outer;
                        }
                        last = Some(key.clone());
                        contents.push((key, item));
                    }
                }
            }
            if n < 1000 {
                break;
            }
        }
    }
    Ok(ListPage {
        contents,
        prefixes,
        truncated,
        next: if truncated { last } else { None },
    })
}

fn to_object(key: String, rec: &ObjectRecord) -> Object {
    let mut o = Object::default();
    o.key = Some(key);
    o.e_tag = Some(etag(&rec.etag));
    o.last_modified = Some(ts(rec.last_modified));
    o.size = Some(rec.size as i64);
    o.storage_class = Some(ObjectStorageClass::from_static(
        ObjectStorageClass::STANDARD,
    ));
    o
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
fn principal(ext: &http::Extensions) -> S3Result<crate::principal::Principal> {
    ext.get::<crate::principal::Principal>()
        .cloned()
        .ok_or_else(crate::iam::access_denied)
}

/// The access hook's decision for this request (`iam::S3Authz`).
fn authorized(ext: &http::Extensions) -> S3Result<&crate::iam::Authorized> {
    ext.get::<crate::iam::Authorized>()
        .ok_or_else(crate::iam::access_denied)
}

fn owner() -> Owner {
    let mut o = Owner::default();
    o.id = Some("coffer".to_owned());
    o.display_name = Some("coffer".to_owned());
    o
}

/// Listing parameters S3 validates: counts are not negative, encoding is `url`.
fn check_list_params(
    counts: &[(&str, Option<i32>)],
    encoding: Option<&EncodingType>,
) -> ServerResult<()> {
    for (name, v) in counts {
        if v.is_some_and(|v| v < 0) {
            return Err(ServerError::invalid_argument(format!(
                "Argument {name} must be an integer between 0 and 2147483647"
            )));
        }
    }
    if let Some(e) = encoding {
        if e.as_str() != EncodingType::URL {
            return Err(ServerError::invalid_argument(
                "Invalid Encoding Method specified in Request",
            ));
        }
    }
    Ok(())
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

fn s3<T, E: Into<ServerError>>(r: Result<T, E>) -> S3Result<T> {
    r.map_err(|e| e.into().into())
}

#[async_trait::async_trait]
impl S3 for S3Handlers {
    // ---------------- buckets ----------------

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = req.input.bucket;
        s3(check_new_bucket_name(&bucket))?;
        if let Some(loc) = req
            .input
            .create_bucket_configuration
            .as_ref()
            .and_then(|c| c.location_constraint.as_ref())
            .filter(|loc| loc.as_str() != "us-east-1")
        {
            // This server is one region, us-east-1.
            return Err(ServerError::s3(
                S3ErrorCode::InvalidLocationConstraint,
                format!(
                    "The specified location-constraint is not valid: {}",
                    loc.as_str()
                ),
            )
            .into());
        }
        let caller = principal(&req.extensions)?;
        match self
            .meta
            .create_bucket(&bucket, now_ms(), caller.name())
            .await
        {
            Ok(()) => {}
            Err(MetaError::BucketAlreadyExists { owner }) if owner == caller.name() => {
                return Err(ServerError::s3(
                    S3ErrorCode::BucketAlreadyOwnedByYou,
                    "Your previous request to create the named bucket succeeded and you already own it.",
                )
                .into());
            }
            Err(MetaError::BucketAlreadyExists { .. }) => {
                return Err(ServerError::s3(
                    S3ErrorCode::BucketAlreadyExists,
                    "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.",
                )
                .into());
            }
            Err(e) => return Err(ServerError::from(e).into()),
        }
        s3(self.iam.reload().await)?;
        let mut out = CreateBucketOutput::default();
        out.location = Some(format!("/{bucket}"));
        Ok(S3Response::new(out))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        s3(self.meta.delete_bucket(&req.input.bucket).await)?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        if !s3(self.meta.bucket_exists(&req.input.bucket).await)? {
            return Err(ServerError::NoSuchBucket.into());
        }
        let mut out = HeadBucketOutput::default();
        out.bucket_region = Some("us-east-1".to_owned());
        Ok(S3Response::new(out))
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        // Each identity sees the buckets it may list (its own, and those policies open to it).
        let caller = principal(&req.extensions)?;
        let ctx = crate::iam::base_context(&caller, self.secure);
        let buckets = s3(self.meta.list_buckets().await)?
            .into_iter()
            .filter(|BucketInfo { name, .. }| {
                self.iam
                    .authorize(
                        &caller,
                        "s3:ListBucket",
                        &crate::iam::s3_arn(name, None),
                        Some(name),
                        &ctx,
                    )
                    .is_some()
            })
            .map(|BucketInfo { name, created }| {
                let mut b = Bucket::default();
                b.name = Some(name);
                b.creation_date = Some(ts(created));
                b.bucket_region = Some("us-east-1".to_owned());
                b
            })
            .collect();
        let mut out = ListBucketsOutput::default();
        out.buckets = Some(buckets);
        out.owner = Some(owner());
        Ok(S3Response::new(out))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        if !s3(self.meta.bucket_exists(&req.input.bucket).await)? {
            return Err(ServerError::NoSuchBucket.into());
        }
        // us-east-1 is reported as an empty LocationConstraint, as AWS does.
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        if !s3(self.meta.bucket_exists(&req.input.bucket).await)? {
            return Err(ServerError::NoSuchBucket.into());
        }
        Ok(S3Response::new(GetBucketVersioningOutput::default()))
    }

    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        let input = req.input;
        let rule = input
            .server_side_encryption_configuration
            .rules
            .into_iter()
            .next()
            .ok_or_else(|| ServerError::s3(S3ErrorCode::MalformedXML, "No encryption rule"))?;
        let default = rule
            .apply_server_side_encryption_by_default
            .ok_or_else(|| {
                ServerError::s3(
                    S3ErrorCode::MalformedXML,
                    "ApplyServerSideEncryptionByDefault is required",
                )
            })?;
        let algorithm = default.sse_algorithm.as_str().to_owned();
        match algorithm.as_str() {
            "AES256" => {
                if default.kms_master_key_id.is_some() {
                    return Err(ServerError::invalid_argument(
                        "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms",
                    )
                    .into());
                }
            }
            "aws:kms" => {
                if let Some(k) = &default.kms_master_key_id {
                    // The key must exist (AWS checks it when the bucket is used; Coffer checks
                    // it now so a typo is caught at configuration time).
                    s3(self
                        .keys
                        .kms
                        .describe_key(k)
                        .await
                        .map_err(ServerError::from))?;
                }
            }
            other => {
                return Err(ServerError::invalid_argument(format!(
                    "The encryption algorithm {other} is not supported"
                ))
                .into())
            }
        }
        let enc = BucketEncryption {
            algorithm,
            kms_key_id: default.kms_master_key_id,
            bucket_key_enabled: rule.bucket_key_enabled.unwrap_or(false),
        };
        s3(self
            .meta
            .set_bucket_encryption(&input.bucket, Some(&enc))
            .await)?;
        Ok(S3Response::new(PutBucketEncryptionOutput::default()))
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        // Every bucket has default encryption: SSE-S3 unless configured (as on AWS since 2023).
        let enc =
            s3(self.meta.bucket_encryption(&req.input.bucket).await)?.unwrap_or(BucketEncryption {
                algorithm: "AES256".into(),
                kms_key_id: None,
                bucket_key_enabled: false,
            });
        let by_default = ServerSideEncryptionByDefault {
            sse_algorithm: ServerSideEncryption::from(enc.algorithm),
            kms_master_key_id: enc.kms_key_id,
        };
        let mut rule = ServerSideEncryptionRule::default();
        rule.apply_server_side_encryption_by_default = Some(by_default);
        rule.bucket_key_enabled = Some(enc.bucket_key_enabled);
        let mut conf = ServerSideEncryptionConfiguration::default();
        conf.rules = vec![rule];
        let mut out = GetBucketEncryptionOutput::default();
        out.server_side_encryption_configuration = Some(conf);
        Ok(S3Response::new(out))
    }

    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        s3(self
            .meta
            .set_bucket_encryption(&req.input.bucket, None)
            .await)?;
        Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
    }

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        if !s3(self.meta.bucket_exists(&req.input.bucket).await)? {
            return Err(ServerError::NoSuchBucket.into());
        }
        let proof = authorized(&req.extensions)?;
        s3(self
            .iam
            .put_bucket_policy(proof, &req.input.bucket, &req.input.policy)
            .await)?;
        Ok(S3Response::new(PutBucketPolicyOutput::default()))
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        if !s3(self.meta.bucket_exists(&req.input.bucket).await)? {
            return Err(ServerError::NoSuchBucket.into());
        }
        let policy = self.iam.bucket_policy(&req.input.bucket).ok_or_else(|| {
            ServerError::s3(
                S3ErrorCode::NoSuchBucketPolicy,
                "The bucket policy does not exist",
            )
        })?;
        let mut out = GetBucketPolicyOutput::default();
        out.policy = Some(policy);
        Ok(S3Response::new(out))
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        if !s3(self.meta.bucket_exists(&req.input.bucket).await)? {
            return Err(ServerError::NoSuchBucket.into());
        }
        let proof = authorized(&req.extensions)?;
        s3(self
            .iam
            .delete_bucket_policy(proof, &req.input.bucket)
            .await)?;
        let mut resp = S3Response::new(DeleteBucketPolicyOutput::default());
        resp.status = Some(http::StatusCode::NO_CONTENT);
        Ok(resp)
    }

    // ---------------- objects ----------------

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let trailers = req.trailing_headers;
        let req_headers = req.headers;
        let input = req.input;
        s3(check_key(&input.key))?;
        s3(check_metadata(input.metadata.as_ref()))?;
        let (sse_rec, customer, bucket_key, proof) = self
            .write_choice(
                &req.extensions,
                &sse_headers!(input),
                &input.bucket,
                &input.key,
            )
            .await?;
        let bucket_key = input.bucket_key_enabled.unwrap_or(bucket_key);
        let mut sums = ChecksumRequest {
            crc32: input.checksum_crc32.clone(),
            crc32c: input.checksum_crc32c.clone(),
            crc64nvme: input.checksum_crc64nvme.clone(),
            sha1: input.checksum_sha1.clone(),
            sha256: input.checksum_sha256.clone(),
            algorithm: input
                .checksum_algorithm
                .as_ref()
                .map(|a| a.as_str().to_owned()),
        };
        let headers = object_headers(
            input.content_type.clone(),
            input.content_encoding.clone(),
            input.content_disposition.clone(),
            input.content_language.clone(),
            input.cache_control.clone(),
            input.expires.clone(),
            input.website_redirect_location.clone(),
            input.metadata.clone(),
        );
        let version = uuid::Uuid::new_v4().to_string();
        let body = input
            .body
            .unwrap_or_else(|| StreamingBlob::wrap::<_, std::io::Error>(futures::stream::empty()));
        let (seg, written, used) = s3(self
            .write_blob(
                body,
                &input.bucket,
                &input.key,
                &version,
                1,
                &sse_rec,
                customer.as_ref(),
                proof.as_ref(),
                &headers,
                s3(sums.hasher())?,
                self.limits.max_object_size,
                self.limits.body_idle_timeout,
            )
            .await)?;
        let commit = async {
            check_body_complete(&req_headers, written.plain_len)?;
            verify_content_md5(input.content_md5.as_deref(), &written.md5)?;
            sums.add_trailers(&req_headers, trailers)?;
            let checksums = sums.verify(&written.checksums)?;
            let rec = ObjectRecord {
                version_id: version.clone(),
                size: written.plain_len,
                etag: seg.etag.clone(),
                last_modified: now_ms(),
                headers,
                checksums,
                sse: sse_rec.clone(),
                bucket_key_enabled: bucket_key,
                segments: vec![seg.clone()],
            };
            let condition = precondition(input.if_match.as_ref(), input.if_none_match.as_ref());
            let old = self
                .meta
                .put_object(&input.bucket, &input.key, &rec, &condition)
                .await?;
            Ok::<_, ServerError>((rec, old))
        };
        let (rec, old) = match commit.await {
            Ok(v) => v,
            Err(e) => {
                self.blobs.delete(&seg.blob).await;
                return Err(e.into());
            }
        };
        if let Some(old) = old {
            self.delete_blobs(old.segments).await;
        }
        let s = sse_out(&rec.sse, customer.as_ref(), rec.bucket_key_enabled);
        let mut out = PutObjectOutput::default();
        out.e_tag = Some(etag(&rec.etag));
        out.server_side_encryption = s.sse;
        out.ssekms_key_id = s.kms_key_id;
        out.sse_customer_algorithm = s.c_algorithm;
        out.sse_customer_key_md5 = s.c_key_md5;
        out.bucket_key_enabled = s.bucket_key;
        if let (SseRecord::Kms { context, .. }, Some(_)) =
            (&rec.sse, input.ssekms_encryption_context.as_ref())
        {
            out.ssekms_encryption_context = Some(sse::format_kms_context(context));
        }
        out.checksum_crc32 = rec.checksums.crc32;
        out.checksum_crc32c = rec.checksums.crc32c;
        out.checksum_crc64nvme = rec.checksums.crc64nvme;
        out.checksum_sha1 = rec.checksums.sha1;
        out.checksum_sha256 = rec.checksums.sha256;
        Ok(with_key_used(out, used))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        s3(check_key(&input.key))?;
        let rec = s3(self.object(&input.bucket, &input.key).await)?;
        if req.headers.contains_key("x-amz-server-side-encryption")
            || req
                .headers
                .contains_key("x-amz-server-side-encryption-aws-kms-key-id")
        {
            return Err(ServerError::invalid_argument(
                "x-amz-server-side-encryption header is not supported for this operation.",
            )
            .into());
        }
        let customer = s3(self.customer_key(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        ))?;
        s3(self.keys.check_read_key(&rec.sse, customer.as_ref()))?;
        let proof = self
            .kms_use(&req.extensions, &rec.sse, "kms:Decrypt")
            .await?;
        s3(check_conditions(
            &rec,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        ))?;
        if input
            .version_id
            .as_deref()
            .is_some_and(|v| v != "null" && v != rec.version_id)
        {
            return Err(ServerError::s3(
                S3ErrorCode::NoSuchVersion,
                "The specified version does not exist.",
            )
            .into());
        }
        let total = rec.size;
        let (range, partial, parts_count) = match (input.part_number, input.range) {
            (Some(_), Some(_)) => {
                return Err(ServerError::invalid_request(
                    "Cannot specify both Range header and partNumber query parameter",
                )
                .into())
            }
            (Some(n), None) => {
                let n = usize::try_from(n).unwrap_or(0);
                if n == 0 || n > rec.segments.len() {
                    return Err(ServerError::s3(
                        S3ErrorCode::Custom("InvalidPartNumber".into()),
                        "The requested partnumber is not satisfiable",
                    )
                    .into());
                }
                let start: u64 = rec.segments[..n - 1].iter().map(|s| s.plain_len).sum();
                let r = start..start + rec.segments[n - 1].plain_len;
                let multipart = rec.etag.contains('-');
                (r, multipart, multipart.then_some(rec.segments.len() as i32))
            }
            (None, Some(r)) => {
                let r = r.check(total).map_err(|_| {
                    ServerError::s3(
                        S3ErrorCode::InvalidRange,
                        "The requested range is not satisfiable",
                    )
                })?;
                (r, true, None)
            }
            (None, None) => (0..total, false, None),
        };
        let (body, used) = s3(self
            .read_stream(
                &input.bucket,
                &input.key,
                &rec,
                customer,
                proof,
                range.clone(),
            )
            .await)?;
        let s = sse_out(&rec.sse, None, rec.bucket_key_enabled);
        let mut out = GetObjectOutput::default();
        out.body = Some(StreamingBlob::wrap(body_stream(body)));
        out.content_length = Some((range.end - range.start) as i64);
        if partial && total > 0 {
            out.content_range = Some(format!("bytes {}-{}/{}", range.start, range.end - 1, total));
        }
        out.parts_count = parts_count;
        out.accept_ranges = Some("bytes".to_owned());
        fill_headers(&rec, &mut HeaderFields::Get(&mut out));
        out.server_side_encryption = s.sse;
        out.ssekms_key_id = s.kms_key_id;
        out.bucket_key_enabled = s.bucket_key;
        if let SseRecord::C { .. } = rec.sse {
            out.sse_customer_algorithm = Some("AES256".to_owned());
            out.sse_customer_key_md5 = input.sse_customer_key_md5.clone();
        }
        if input
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
            && !partial
        {
            out.checksum_crc32 = rec.checksums.crc32.clone();
            out.checksum_crc32c = rec.checksums.crc32c.clone();
            out.checksum_crc64nvme = rec.checksums.crc64nvme.clone();
            out.checksum_sha1 = rec.checksums.sha1.clone();
            out.checksum_sha256 = rec.checksums.sha256.clone();
        }
        Ok(with_key_used(out, used))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        s3(check_key(&input.key))?;
        let rec = s3(self.object(&input.bucket, &input.key).await)?;
        let customer = s3(self.customer_key(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        ))?;
        s3(self.keys.check_read_key(&rec.sse, customer.as_ref()))?;
        s3(check_conditions(
            &rec,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        ))?;
        let mut out = HeadObjectOutput::default();
        let (len, parts) = match input.part_number {
            Some(n) => {
                let n = usize::try_from(n).unwrap_or(0);
                if n == 0 || n > rec.segments.len() {
                    return Err(ServerError::s3(
                        S3ErrorCode::Custom("InvalidPartNumber".into()),
                        "The requested partnumber is not satisfiable",
                    )
                    .into());
                }
                (
                    rec.segments[n - 1].plain_len,
                    rec.etag.contains('-').then_some(rec.segments.len() as i32),
                )
            }
            None => (rec.size, None),
        };
        out.content_length = Some(len as i64);
        out.parts_count = parts;
        out.accept_ranges = Some("bytes".to_owned());
        fill_headers(&rec, &mut HeaderFields::Head(&mut out));
        let s = sse_out(&rec.sse, customer.as_ref(), rec.bucket_key_enabled);
        out.server_side_encryption = s.sse;
        out.ssekms_key_id = s.kms_key_id;
        out.sse_customer_algorithm = s.c_algorithm;
        out.sse_customer_key_md5 = s.c_key_md5;
        out.bucket_key_enabled = s.bucket_key;
        if input
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
        {
            out.checksum_crc32 = rec.checksums.crc32.clone();
            out.checksum_crc32c = rec.checksums.crc32c.clone();
            out.checksum_crc64nvme = rec.checksums.crc64nvme.clone();
            out.checksum_sha1 = rec.checksums.sha1.clone();
            out.checksum_sha256 = rec.checksums.sha256.clone();
        }
        Ok(S3Response::new(out))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        s3(check_key(&input.key))?;
        if !s3(self.meta.bucket_exists(&input.bucket).await)? {
            return Err(ServerError::NoSuchBucket.into());
        }
        // Deleting a missing key succeeds (204), as on S3.
        if let Some(old) = s3(self.meta.delete_object(&input.bucket, &input.key).await)? {
            self.delete_blobs(old.segments).await;
            self.reserve.ensure();
        }
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let caller = principal(&req.extensions)?;
        let input = req.input;
        if !s3(self.meta.bucket_exists(&input.bucket).await)? {
            return Err(ServerError::NoSuchBucket.into());
        }
        if input.delete.objects.len() > 1000 {
            return Err(ServerError::s3(
                S3ErrorCode::MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema",
            )
            .into());
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        let ctx = crate::iam::base_context(&caller, self.secure);
        for id in input.delete.objects {
            // s3:DeleteObject is decided per key, as AWS does.
            let allowed = self.iam.authorize(
                &caller,
                "s3:DeleteObject",
                &crate::iam::s3_arn(&input.bucket, Some(&id.key)),
                Some(&input.bucket),
                &ctx,
            );
            if allowed.is_none() {
                let mut err = Error::default();
                err.key = Some(id.key);
                err.code = Some("AccessDenied".to_owned());
                err.message = Some("Access Denied".to_owned());
                errors.push(err);
                continue;
            }
            match self.meta.delete_object(&input.bucket, &id.key).await {
                Ok(old) => {
                    if let Some(old) = old {
                        self.delete_blobs(old.segments).await;
                    }
                    if !quiet {
                        let mut d = DeletedObject::default();
                        d.key = Some(id.key);
                        deleted.push(d);
                    }
                }
                Err(e) => {
                    let e: s3s::S3Error = ServerError::from(e).into();
                    let mut err = Error::default();
                    err.key = Some(id.key);
                    err.code = Some(e.code().as_str().to_owned());
                    err.message = e.message().map(str::to_owned);
                    errors.push(err);
                }
            }
        }
        self.reserve.ensure();
        let mut out = DeleteObjectsOutput::default();
        out.deleted = Some(deleted);
        out.errors = (!errors.is_empty()).then_some(errors);
        Ok(S3Response::new(out))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        s3(check_key(&input.key))?;
        s3(check_metadata(input.metadata.as_ref()))?;
        let (src_customer, src_bucket, src_key, src) = read_copy_source!(self, input);
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let sse_headers = sse_headers!(input);
        let changes_encryption = sse_headers.sse.is_some() || sse_headers.c_key.is_some();
        if src_bucket == input.bucket && src_key == input.key && !replace && !changes_encryption {
            return Err(ServerError::invalid_request(
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
            )
            .into());
        }
        let src_proof = self
            .kms_use(&req.extensions, &src.sse, "kms:Decrypt")
            .await?;
        let (sse_rec, customer, bucket_key, proof) = self
            .write_choice(&req.extensions, &sse_headers, &input.bucket, &input.key)
            .await?;
        let bucket_key = input.bucket_key_enabled.unwrap_or(bucket_key);
        let headers = if replace {
            object_headers(
                input.content_type.clone(),
                input.content_encoding.clone(),
                input.content_disposition.clone(),
                input.content_language.clone(),
                input.cache_control.clone(),
                input.expires.clone(),
                input.website_redirect_location.clone(),
                input.metadata.clone(),
            )
        } else {
            src.headers.clone()
        };
        let (body, _) = s3(self
            .read_stream(
                &src_bucket,
                &src_key,
                &src,
                src_customer,
                src_proof,
                0..src.size,
            )
            .await)?;
        let version = uuid::Uuid::new_v4().to_string();
        let mut sums = ChecksumRequest {
            algorithm: input
                .checksum_algorithm
                .as_ref()
                .map(|a| a.as_str().to_owned()),
            ..Default::default()
        };
        if sums.algorithm.is_none() {
            // Keep the source's checksum algorithm, as S3 does.
            sums.crc32 = src.checksums.crc32.clone();
            sums.crc32c = src.checksums.crc32c.clone();
            sums.crc64nvme = src.checksums.crc64nvme.clone();
            sums.sha1 = src.checksums.sha1.clone();
            sums.sha256 = src.checksums.sha256.clone();
            if src.etag.contains('-') {
                // Composite part checksums do not carry over to a single-part copy.
                sums = ChecksumRequest::default();
            }
        }
        let (seg, written, used) = s3(self
            .write_blob(
                body,
                &input.bucket,
                &input.key,
                &version,
                1,
                &sse_rec,
                customer.as_ref(),
                proof.as_ref(),
                &headers,
                s3(sums.hasher())?,
                self.limits.max_object_size,
                self.limits.body_idle_timeout,
            )
            .await)?;
        let checksums = Checksums {
            crc32: written.checksums.checksum_crc32.clone(),
            crc32c: written.checksums.checksum_crc32c.clone(),
            crc64nvme: written.checksums.checksum_crc64nvme.clone(),
            sha1: written.checksums.checksum_sha1.clone(),
            sha256: written.checksums.checksum_sha256.clone(),
            kind: None,
        };
        if written.plain_len != src.size {
            self.blobs.delete(&seg.blob).await;
            return Err(ServerError::Integrity("copy source changed length".into()).into());
        }
        let rec = ObjectRecord {
            version_id: version,
            size: written.plain_len,
            etag: seg.etag.clone(),
            last_modified: now_ms(),
            headers,
            checksums,
            sse: sse_rec,
            bucket_key_enabled: bucket_key,
            segments: vec![seg.clone()],
        };
        let old = match self
            .meta
            .put_object(&input.bucket, &input.key, &rec, &Precondition::NONE)
            .await
        {
            Ok(old) => old,
            Err(e) => {
                self.blobs.delete(&seg.blob).await;
                return Err(ServerError::from(e).into());
            }
        };
        if let Some(old) = old {
            self.delete_blobs(old.segments).await;
        }
        let s = sse_out(&rec.sse, customer.as_ref(), rec.bucket_key_enabled);
        let mut result = CopyObjectResult::default();
        result.e_tag = Some(etag(&rec.etag));
        result.last_modified = Some(ts(rec.last_modified));
        result.checksum_crc32 = rec.checksums.crc32.clone();
        result.checksum_crc32c = rec.checksums.crc32c.clone();
        result.checksum_crc64nvme = rec.checksums.crc64nvme.clone();
        result.checksum_sha1 = rec.checksums.sha1.clone();
        result.checksum_sha256 = rec.checksums.sha256.clone();
        let mut out = CopyObjectOutput::default();
        out.copy_object_result = Some(result);
        out.server_side_encryption = s.sse;
        out.ssekms_key_id = s.kms_key_id;
        out.sse_customer_algorithm = s.c_algorithm;
        out.sse_customer_key_md5 = s.c_key_md5;
        out.bucket_key_enabled = s.bucket_key;
        Ok(with_key_used(out, used))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let (prefix, limit, marker, page) =
            list_input!(self, input, || Ok(input.marker.clone().unwrap_or_default()));
        let ListPage {
            contents,
            prefixes,
            truncated,
            next,
        } = page;
        let mut out = ListObjectsOutput::default();
        list_output!(out, input, prefix, limit);
        out.marker = Some(marker);
        out.is_truncated = Some(truncated);
        // NextMarker is returned only with a delimiter (S3 ListObjects docs); clients use
        // the last key otherwise.
        out.next_marker = if out.delimiter.is_some() { next } else { None };
        out.contents = Some(
            contents
                .into_iter()
                .map(|(k, r)| to_object(k, &r))
                .collect(),
        );
        out.common_prefixes = Some(ListPage::common_prefixes(prefixes));
        url_encode_v1(&mut out);
        Ok(S3Response::new(out))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let after = || match &input.continuation_token {
            Some(t) => B64
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ServerError::invalid_argument("The continuation token provided is incorrect")
                }),
            None => Ok(input.start_after.clone().unwrap_or_default()),
        };
        let (prefix, limit, _, page) = list_input!(self, input, after);
        let ListPage {
            contents,
            prefixes,
            truncated,
            next,
        } = page;
        let fetch_owner = input.fetch_owner.unwrap_or(false);
        let mut out = ListObjectsV2Output::default();
        list_output!(out, input, prefix, limit);
        out.key_count = Some((contents.len() + prefixes.len()) as i32);
        out.start_after = input.start_after;
        out.continuation_token = input.continuation_token;
        out.is_truncated = Some(truncated);
        out.next_continuation_token = next.map(|n| B64.encode(n));
        out.contents = Some(
            contents
                .into_iter()
                .map(|(k, r)| {
                    let mut o = to_object(k, &r);
                    if fetch_owner {
                        o.owner = Some(owner());
                    }
                    o
                })
                .collect(),
        );
        out.common_prefixes = Some(ListPage::common_prefixes(prefixes));
        url_encode_v2(&mut out);
        Ok(S3Response::new(out))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        // Versioning is off: every object is its only ("null") version.
        let input = req.input;
        let (prefix, limit, marker, page) = list_input!(self, input, || Ok(input
            .key_marker
            .clone()
            .unwrap_or_default()));
        let ListPage {
            contents,
            prefixes,
            truncated,
            next,
        } = page;
        let mut out = ListObjectVersionsOutput::default();
        list_output!(out, input, prefix, limit);
        out.key_marker = Some(marker);
        out.is_truncated = Some(truncated);
        out.next_key_marker = next;
        if truncated {
            out.next_version_id_marker = Some("null".to_owned());
        }
        out.versions = Some(
            contents
                .into_iter()
                .map(|(k, r)| {
                    let mut v = ObjectVersion::default();
                    v.key = Some(k);
                    v.e_tag = Some(etag(&r.etag));
                    v.is_latest = Some(true);
                    v.last_modified = Some(ts(r.last_modified));
                    v.size = Some(r.size as i64);
                    v.version_id = Some("null".to_owned());
                    v.owner = Some(owner());
                    v.storage_class = Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    ));
                    v
                })
                .collect(),
        );
        out.common_prefixes = Some(ListPage::common_prefixes(prefixes));
        url_encode_versions(&mut out);
        Ok(S3Response::new(out))
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let input = req.input;
        s3(check_key(&input.key))?;
        let rec = s3(self.object(&input.bucket, &input.key).await)?;
        let customer = s3(self.customer_key(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        ))?;
        s3(self.keys.check_read_key(&rec.sse, customer.as_ref()))?;
        let wants = |a: &str| {
            input
                .object_attributes
                .iter()
                .any(|x| x.as_str().eq_ignore_ascii_case(a))
        };
        let mut out = GetObjectAttributesOutput::default();
        out.last_modified = Some(ts(rec.last_modified));
        if wants("ETag") {
            out.e_tag = Some(etag(rec.etag.split('-').next().unwrap_or(&rec.etag)));
        }
        if wants("ObjectSize") {
            out.object_size = Some(rec.size as i64);
        }
        if wants("StorageClass") {
            out.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
        }
        if wants("Checksum") {
            let c = &rec.checksums;
            if c.crc32.is_some()
                || c.crc32c.is_some()
                || c.crc64nvme.is_some()
                || c.sha1.is_some()
                || c.sha256.is_some()
            {
                let mut sum = s3s::dto::Checksum::default();
                sum.checksum_crc32 = c.crc32.clone();
                sum.checksum_crc32c = c.crc32c.clone();
                sum.checksum_crc64nvme = c.crc64nvme.clone();
                sum.checksum_sha1 = c.sha1.clone();
                sum.checksum_sha256 = c.sha256.clone();
                out.checksum = Some(sum);
            }
        }
        if wants("ObjectParts") && rec.etag.contains('-') {
            let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
            let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
            let all: Vec<&Segment> = rec
                .segments
                .iter()
                .filter(|s| s.part_number > marker)
                .collect();
            let page: Vec<ObjectPart> = all
                .iter()
                .take(max)
                .map(|s| {
                    let mut p = ObjectPart::default();
                    p.part_number = Some(s.part_number as i32);
                    p.size = Some(s.plain_len as i64);
                    p
                })
                .collect();
            let mut parts = GetObjectAttributesParts::default();
            parts.total_parts_count = Some(rec.segments.len() as i32);
            parts.part_number_marker = Some(marker as i32);
            parts.max_parts = Some(max as i32);
            parts.is_truncated = Some(all.len() > max);
            parts.next_part_number_marker = page.last().and_then(|p| p.part_number);
            parts.parts = Some(page);
            out.object_parts = Some(parts);
        }
        Ok(S3Response::new(out))
    }

    // ---------------- multipart ----------------

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        s3(check_key(&input.key))?;
        s3(check_metadata(input.metadata.as_ref()))?;
        let (sse_rec, customer, bucket_key, proof) = self
            .write_choice(
                &req.extensions,
                &sse_headers!(input),
                &input.bucket,
                &input.key,
            )
            .await?;
        // The proof is not kept: each UploadPart asks for its own.
        drop(proof);
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let rec = UploadRecord {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            initiated: now_ms(),
            headers: object_headers(
                input.content_type.clone(),
                input.content_encoding.clone(),
                input.content_disposition.clone(),
                input.content_language.clone(),
                input.cache_control.clone(),
                input.expires.clone(),
                input.website_redirect_location.clone(),
                input.metadata.clone(),
            ),
            sse: sse_rec,
            bucket_key_enabled: input.bucket_key_enabled.unwrap_or(bucket_key),
            checksum_algorithm: input
                .checksum_algorithm
                .as_ref()
                .map(|a| a.as_str().to_owned()),
        };
        s3(self.meta.create_upload(&upload_id, &rec).await)?;
        let s = sse_out(&rec.sse, customer.as_ref(), rec.bucket_key_enabled);
        let mut out = CreateMultipartUploadOutput::default();
        out.bucket = Some(input.bucket);
        out.key = Some(input.key);
        out.upload_id = Some(upload_id);
        out.server_side_encryption = s.sse;
        out.ssekms_key_id = s.kms_key_id;
        out.sse_customer_algorithm = s.c_algorithm;
        out.sse_customer_key_md5 = s.c_key_md5;
        out.bucket_key_enabled = s.bucket_key;
        out.checksum_algorithm = input.checksum_algorithm;
        if let (SseRecord::Kms { context, .. }, Some(_)) =
            (&rec.sse, input.ssekms_encryption_context.as_ref())
        {
            out.ssekms_encryption_context = Some(sse::format_kms_context(context));
        }
        Ok(S3Response::new(out))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let trailers = req.trailing_headers;
        let req_headers = req.headers;
        let input = req.input;
        let upload = s3(self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await)?;
        let part = s3(part_number(input.part_number))?;
        let customer = s3(self.customer_key(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        ))?;
        s3(self.keys.check_part_key(&upload.sse, customer.as_ref()))?;
        let proof = self
            .kms_use(&req.extensions, &upload.sse, "kms:GenerateDataKey")
            .await?;
        let mut sums = ChecksumRequest {
            crc32: input.checksum_crc32.clone(),
            crc32c: input.checksum_crc32c.clone(),
            crc64nvme: input.checksum_crc64nvme.clone(),
            sha1: input.checksum_sha1.clone(),
            sha256: input.checksum_sha256.clone(),
            algorithm: input
                .checksum_algorithm
                .as_ref()
                .map(|a| a.as_str().to_owned())
                .or_else(|| upload.checksum_algorithm.clone()),
        };
        let body = input
            .body
            .unwrap_or_else(|| StreamingBlob::wrap::<_, std::io::Error>(futures::stream::empty()));
        let (seg, written, used) = s3(self
            .write_blob(
                body,
                &input.bucket,
                &input.key,
                &input.upload_id,
                part,
                &upload.sse,
                customer.as_ref(),
                proof.as_ref(),
                &upload.headers,
                s3(sums.hasher())?,
                self.limits.max_object_size,
                self.limits.body_idle_timeout,
            )
            .await)?;
        let commit = async {
            check_body_complete(&req_headers, written.plain_len)?;
            verify_content_md5(input.content_md5.as_deref(), &written.md5)?;
            sums.add_trailers(&req_headers, trailers)?;
            let checksums = sums.verify(&written.checksums)?;
            let rec = PartRecord {
                segment: seg.clone(),
                last_modified: now_ms(),
                checksums,
            };
            let old = self.meta.put_part(&input.upload_id, part, &rec).await?;
            Ok::<_, ServerError>((rec, old))
        };
        let (rec, old) = match commit.await {
            Ok(v) => v,
            Err(e) => {
                self.blobs.delete(&seg.blob).await;
                return Err(e.into());
            }
        };
        if let Some(old) = old {
            self.blobs.delete(&old.segment.blob).await;
        }
        let s = sse_out(&upload.sse, customer.as_ref(), upload.bucket_key_enabled);
        let mut out = UploadPartOutput::default();
        out.e_tag = Some(etag(&rec.segment.etag));
        out.server_side_encryption = s.sse;
        out.ssekms_key_id = s.kms_key_id;
        out.sse_customer_algorithm = s.c_algorithm;
        out.sse_customer_key_md5 = s.c_key_md5;
        out.bucket_key_enabled = s.bucket_key;
        out.checksum_crc32 = rec.checksums.crc32;
        out.checksum_crc32c = rec.checksums.crc32c;
        out.checksum_crc64nvme = rec.checksums.crc64nvme;
        out.checksum_sha1 = rec.checksums.sha1;
        out.checksum_sha256 = rec.checksums.sha256;
        Ok(with_key_used(out, used))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let upload = s3(self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await)?;
        let part = s3(part_number(input.part_number))?;
        let customer = s3(self.customer_key(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        ))?;
        s3(self.keys.check_part_key(&upload.sse, customer.as_ref()))?;
        let (src_customer, src_bucket, src_key, src) = read_copy_source!(self, input);
        let proof = self
            .kms_use(&req.extensions, &upload.sse, "kms:GenerateDataKey")
            .await?;
        let src_proof = self
            .kms_use(&req.extensions, &src.sse, "kms:Decrypt")
            .await?;
        let range = match input.copy_source_range.as_deref() {
            None => 0..src.size,
            Some(r) => s3(parse_copy_source_range(r, src.size))?,
        };
        let want = range.end - range.start;
        let (body, _) = s3(self
            .read_stream(&src_bucket, &src_key, &src, src_customer, src_proof, range)
            .await)?;
        let sums = ChecksumRequest {
            algorithm: upload.checksum_algorithm.clone(),
            ..Default::default()
        };
        let (seg, written, used) = s3(self
            .write_blob(
                body,
                &input.bucket,
                &input.key,
                &input.upload_id,
                part,
                &upload.sse,
                customer.as_ref(),
                proof.as_ref(),
                &upload.headers,
                s3(sums.hasher())?,
                self.limits.max_object_size,
                self.limits.body_idle_timeout,
            )
            .await)?;
        if written.plain_len != want {
            self.blobs.delete(&seg.blob).await;
            return Err(ServerError::Integrity("copy source changed length".into()).into());
        }
        let rec = PartRecord {
            segment: seg.clone(),
            last_modified: now_ms(),
            checksums: Checksums {
                crc32: written.checksums.checksum_crc32.clone(),
                crc32c: written.checksums.checksum_crc32c.clone(),
                crc64nvme: written.checksums.checksum_crc64nvme.clone(),
                sha1: written.checksums.checksum_sha1.clone(),
                sha256: written.checksums.checksum_sha256.clone(),
                kind: None,
            },
        };
        let old = match self.meta.put_part(&input.upload_id, part, &rec).await {
            Ok(old) => old,
            Err(e) => {
                self.blobs.delete(&seg.blob).await;
                return Err(ServerError::from(e).into());
            }
        };
        if let Some(old) = old {
            self.blobs.delete(&old.segment.blob).await;
        }
        let s = sse_out(&upload.sse, customer.as_ref(), upload.bucket_key_enabled);
        let mut result = CopyPartResult::default();
        result.e_tag = Some(etag(&rec.segment.etag));
        result.last_modified = Some(ts(rec.last_modified));
        result.checksum_crc32 = rec.checksums.crc32.clone();
        result.checksum_crc32c = rec.checksums.crc32c.clone();
        result.checksum_crc64nvme = rec.checksums.crc64nvme.clone();
        result.checksum_sha1 = rec.checksums.sha1.clone();
        result.checksum_sha256 = rec.checksums.sha256.clone();
        let mut out = UploadPartCopyOutput::default();
        out.copy_part_result = Some(result);
        out.server_side_encryption = s.sse;
        out.ssekms_key_id = s.kms_key_id;
        out.sse_customer_algorithm = s.c_algorithm;
        out.sse_customer_key_md5 = s.c_key_md5;
        out.bucket_key_enabled = s.bucket_key;
        Ok(with_key_used(out, used))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let upload = s3(self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await)?;
        let customer = s3(self.customer_key(
            input.sse_customer_algorithm.as_deref(),
            input.sse_customer_key.as_deref(),
            input.sse_customer_key_md5.as_deref(),
        ))?;
        if customer.is_some() {
            s3(self.keys.check_part_key(&upload.sse, customer.as_ref()))?;
        }
        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(ServerError::s3(
                S3ErrorCode::MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema",
            )
            .into());
        }
        let mut stored = s3(self.meta.list_parts(&input.upload_id).await)?;
        let mut segments = Vec::new();
        let mut md5s = Vec::new();
        let mut last_number = 0;
        let count = requested.len();
        for (i, p) in requested.into_iter().enumerate() {
            let n = p.part_number.unwrap_or(0);
            if n <= last_number {
                return Err(ServerError::s3(
                    S3ErrorCode::InvalidPartOrder,
                    "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
                )
                .into());
            }
            last_number = n;
            let invalid = || {
                ServerError::s3(
                    S3ErrorCode::InvalidPart,
                    "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag.",
                )
            };
            let rec = stored.remove(&(n as u32)).ok_or_else(invalid)?;
            let Some(e) = &p.e_tag else {
                return Err(ServerError::s3(
                    S3ErrorCode::MalformedXML,
                    "The XML you provided was not well-formed or did not validate against our published schema: a Part needs its ETag",
                )
                .into());
            };
            if e.value().trim_matches('"') != rec.segment.etag {
                return Err(invalid().into());
            }
            if i + 1 < count && rec.segment.plain_len < MIN_PART {
                return Err(ServerError::s3(
                    S3ErrorCode::EntityTooSmall,
                    "Your proposed upload is smaller than the minimum allowed object size.",
                )
                .into());
            }
            md5s.push(rec.segment.etag.clone());
            segments.push(rec.segment);
        }
        let size: u64 = segments.iter().map(|s| s.plain_len).sum();
        if let Some(expected) = input.mpu_object_size {
            if expected != size as i64 {
                return Err(ServerError::invalid_request(
                    "The provided MpuObjectSize does not match the object's size",
                )
                .into());
            }
        }
        let rec = ObjectRecord {
            version_id: input.upload_id.clone(),
            size,
            etag: s3(multipart_etag(&md5s))?,
            last_modified: now_ms(),
            headers: upload.headers.clone(),
            checksums: Checksums::default(),
            sse: upload.sse.clone(),
            bucket_key_enabled: upload.bucket_key_enabled,
            segments,
        };
        let old = s3(self
            .meta
            .complete_upload(
                &input.upload_id,
                &input.bucket,
                &input.key,
                &rec,
                &precondition(input.if_match.as_ref(), input.if_none_match.as_ref()),
            )
            .await)?;
        // Parts uploaded but not named in the request are discarded, as on S3.
        self.delete_blobs(stored.into_values().map(|p| p.segment))
            .await;
        if let Some(old) = old {
            self.delete_blobs(old.segments).await;
        }
        let s = sse_out(&rec.sse, None, rec.bucket_key_enabled);
        let mut out = CompleteMultipartUploadOutput::default();
        out.bucket = Some(input.bucket.clone());
        out.key = Some(input.key.clone());
        out.location = Some(format!("/{}/{}", input.bucket, input.key));
        out.e_tag = Some(etag(&rec.etag));
        out.server_side_encryption = s.sse;
        out.ssekms_key_id = s.kms_key_id;
        out.bucket_key_enabled = s.bucket_key;
        Ok(S3Response::new(out))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        s3(self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await)?;
        let parts = s3(self.meta.delete_upload(&input.upload_id).await)?;
        self.delete_blobs(parts.into_iter().map(|p| p.segment))
            .await;
        self.reserve.ensure();
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        s3(check_list_params(
            &[("max-uploads", input.max_uploads)],
            input.encoding_type.as_ref(),
        ))?;
        if !s3(self.meta.bucket_exists(&input.bucket).await)? {
            return Err(ServerError::NoSuchBucket.into());
        }
        let prefix = input.prefix.clone().unwrap_or_default();
        let limit = input.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let rows = s3(self
            .meta
            .list_uploads(
                &input.bucket,
                &prefix,
                &key_marker,
                if input.key_marker.is_some() {
                    &id_marker
                } else {
                    ""
                },
                limit + 1,
            )
            .await)?;
        let truncated = rows.len() > limit;
        let rows: Vec<_> = rows.into_iter().take(limit).collect();
        let mut out = ListMultipartUploadsOutput::default();
        out.bucket = Some(input.bucket);
        out.prefix = Some(prefix);
        out.key_marker = Some(key_marker);
        out.upload_id_marker = Some(id_marker);
        out.max_uploads = Some(limit as i32);
        out.is_truncated = Some(truncated);
        if truncated {
            if let Some((id, rec)) = rows.last() {
                out.next_key_marker = Some(rec.key.clone());
                out.next_upload_id_marker = Some(id.clone());
            }
        }
        out.uploads = Some(
            rows.into_iter()
                .map(|(id, rec)| {
                    let mut u = MultipartUpload::default();
                    u.key = Some(rec.key);
                    u.upload_id = Some(id);
                    u.initiated = Some(ts(rec.initiated));
                    u.owner = Some(owner());
                    u.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
                    u
                })
                .collect(),
        );
        Ok(S3Response::new(out))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        s3(check_list_params(
            &[
                ("max-parts", input.max_parts),
                ("part-number-marker", input.part_number_marker),
            ],
            None,
        ))?;
        let upload = s3(self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await)?;
        let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
        let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
        let all: Vec<(u32, PartRecord)> = s3(self.meta.list_parts(&input.upload_id).await)?
            .into_iter()
            .filter(|(n, _)| *n > marker)
            .collect();
        let truncated = all.len() > max;
        let page: Vec<Part> = all
            .into_iter()
            .take(max)
            .map(|(n, r)| {
                let mut p = Part::default();
                p.part_number = Some(n as i32);
                p.e_tag = Some(etag(&r.segment.etag));
                p.size = Some(r.segment.plain_len as i64);
                p.last_modified = Some(ts(r.last_modified));
                p.checksum_crc32 = r.checksums.crc32;
                p.checksum_crc32c = r.checksums.crc32c;
                p.checksum_crc64nvme = r.checksums.crc64nvme;
                p.checksum_sha1 = r.checksums.sha1;
                p.checksum_sha256 = r.checksums.sha256;
                p
            })
            .collect();
        let mut out = ListPartsOutput::default();
        out.bucket = Some(input.bucket);
        out.key = Some(input.key);
        out.upload_id = Some(input.upload_id);
        out.part_number_marker = Some(marker as i32);
        out.max_parts = Some(max as i32);
        out.is_truncated = Some(truncated);
        out.next_part_number_marker = page.last().and_then(|p| p.part_number);
        out.owner = Some(owner());
        out.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
        out.checksum_algorithm = upload.checksum_algorithm.map(ChecksumAlgorithm::from);
        out.parts = Some(page);
        Ok(S3Response::new(out))
    }
}

impl S3Handlers {
    async fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> ServerResult<UploadRecord> {
        match self.meta.upload(upload_id).await? {
            Some(u) if u.bucket == bucket && u.key == key => Ok(u),
            _ => {
                if !self.meta.bucket_exists(bucket).await? {
                    return Err(ServerError::NoSuchBucket);
                }
                Err(ServerError::NoSuchUpload)
            }
        }
    }
}

/// Parses `x-amz-copy-source-range: bytes=first-last` against a source of `size` bytes.
pub fn parse_copy_source_range(r: &str, size: u64) -> ServerResult<Range<u64>> {
    let bad = || {
        ServerError::invalid_argument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
        )
    };
    let (a, b) = r
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    if a.is_empty() || b.is_empty() || !a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let a: u64 = a.parse().map_err(|_| bad())?;
    let b: u64 = b.parse().map_err(|_| bad())?;
    if a > b || b >= size {
        return Err(ServerError::s3(
            S3ErrorCode::InvalidRange,
            "The requested range is not satisfiable",
        ));
    }
    Ok(a..b + 1)
}

/// Names S3 reserves for its own features (bucket naming rules).
fn check_new_bucket_name(name: &str) -> ServerResult<()> {
    const PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const SUFFIXES: [&str; 5] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];
    if PREFIXES.iter().any(|p| name.starts_with(p)) || SUFFIXES.iter().any(|x| name.ends_with(x)) {
        return Err(ServerError::s3(
            S3ErrorCode::InvalidBucketName,
            "The specified bucket is not valid: the name uses a reserved prefix or suffix",
        ));
    }
    Ok(())
}

fn part_number(n: i32) -> ServerResult<u32> {
    if !(1..=MAX_PARTS).contains(&n) {
        return Err(ServerError::invalid_argument(
            "Part number must be an integer between 1 and 10000, inclusive",
        ));
    }
    Ok(n as u32)
}

/// Conditional writes (If-Match / If-None-Match on PUT and CompleteMultipartUpload), for
/// the store to evaluate inside the write's transaction. `If-None-Match` with an ETag (not
/// `*`) is not a write condition on S3 and is ignored, as before.
fn precondition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> Precondition {
    Precondition {
        if_none_match_any: matches!(if_none_match, Some(ETagCondition::Any)),
        if_match: if_match.map(|c| match c {
            ETagCondition::Any => EtagMatch::Any,
            ETagCondition::ETag(ETag::Strong(e)) => EtagMatch::Strong(e.clone()),
            ETagCondition::ETag(ETag::Weak(e)) => EtagMatch::Weak(e.clone()),
        }),
    }
}

fn body_stream(
    body: ChannelBody,
) -> impl Stream<Item = Result<Bytes, BodyStreamError>> + Send + Sync + Unpin + 'static {
    futures::StreamExt::map(body, |r| r.map_err(BodyStreamError))
}

/// A body error surfaced to hyper (the connection is cut; no altered bytes are sent).
#[derive(Debug)]
pub struct BodyStreamError(StdError);
impl std::fmt::Display for BodyStreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for BodyStreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// `EncodingType=url`: keys, prefixes and markers are percent-encoded in the response (the
/// client decodes them), so keys with characters XML 1.0 cannot carry survive the listing.
fn url_encode(v: &mut Option<String>) {
    if let Some(s) = v.as_mut() {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        *s = out;
    }
}

fn wants_url(e: &Option<EncodingType>) -> bool {
    e.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL)
}

fn url_encode_common(prefixes: &mut Option<Vec<CommonPrefix>>) {
    for p in prefixes.iter_mut().flatten() {
        url_encode(&mut p.prefix);
    }
}

fn url_encode_v1(out: &mut ListObjectsOutput) {
    if !wants_url(&out.encoding_type) {
        return;
    }
    for o in out.contents.iter_mut().flatten() {
        url_encode(&mut o.key);
    }
    url_encode_common(&mut out.common_prefixes);
    url_encode(&mut out.prefix);
    url_encode(&mut out.delimiter);
    url_encode(&mut out.marker);
    url_encode(&mut out.next_marker);
}

fn url_encode_v2(out: &mut ListObjectsV2Output) {
    if !wants_url(&out.encoding_type) {
        return;
    }
    for o in out.contents.iter_mut().flatten() {
        url_encode(&mut o.key);
    }
    url_encode_common(&mut out.common_prefixes);
    url_encode(&mut out.prefix);
    url_encode(&mut out.delimiter);
    url_encode(&mut out.start_after);
}

fn url_encode_versions(out: &mut ListObjectVersionsOutput) {
    if !wants_url(&out.encoding_type) {
        return;
    }
    for v in out.versions.iter_mut().flatten() {
        url_encode(&mut v.key);
    }
    url_encode_common(&mut out.common_prefixes);
    url_encode(&mut out.prefix);
    url_encode(&mut out.delimiter);
    url_encode(&mut out.key_marker);
    url_encode(&mut out.next_key_marker);
}

enum HeaderFields<'a> {
    Get(&'a mut GetObjectOutput),
    Head(&'a mut HeadObjectOutput),
}

fn fill_headers(rec: &ObjectRecord, out: &mut HeaderFields<'_>) {
    let h = &rec.headers;
    let meta: Option<s3s::dto::Metadata> = (!h.user_metadata.is_empty()).then(|| {
        h.user_metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    });
    let ct = Some(
        h.content_type
            .clone()
            .unwrap_or_else(|| "binary/octet-stream".to_owned()),
    );
    macro_rules! fill {
        ($o:expr) => {{
            $o.e_tag = Some(etag(&rec.etag));
            $o.last_modified = Some(ts(rec.last_modified));
            $o.content_type = ct;
            $o.content_encoding = h.content_encoding.clone();
            $o.content_disposition = h.content_disposition.clone();
            $o.content_language = h.content_language.clone();
            $o.cache_control = h.cache_control.clone();
            $o.expires = parse_expires(&h.expires);
            $o.website_redirect_location = h.website_redirect_location.clone();
            $o.metadata = meta;
        }};
    }
    match out {
        HeaderFields::Get(o) => fill!(o),
        HeaderFields::Head(o) => fill!(o),
    }
}

/// Checks a buffered (small, non-streaming) request body against its `Content-MD5` and
/// `x-amz-checksum-*` headers; `require` demands one of them (DeleteObjects, as S3 does).
pub(crate) fn verify_small_body(
    headers: &http::HeaderMap,
    body: &[u8],
    require: bool,
) -> ServerResult<()> {
    let header = |n: &str| {
        headers
            .get(n)
            .map(|v| v.to_str().map(str::to_owned))
            .transpose()
            .map_err(|_| ServerError::invalid_argument(format!("invalid {n} header")))
    };
    let req = ChecksumRequest {
        crc32: header("x-amz-checksum-crc32")?,
        crc32c: header("x-amz-checksum-crc32c")?,
        crc64nvme: header("x-amz-checksum-crc64nvme")?,
        sha1: header("x-amz-checksum-sha1")?,
        sha256: header("x-amz-checksum-sha256")?,
        algorithm: None,
    };
    let content_md5 = header("content-md5")?;
    let has_checksum = [
        &req.crc32,
        &req.crc32c,
        &req.crc64nvme,
        &req.sha1,
        &req.sha256,
    ]
    .iter()
    .any(|v| v.is_some());
    if require && content_md5.is_none() && !has_checksum {
        return Err(ServerError::invalid_request(
            "Missing required header for this request: Content-MD5",
        ));
    }
    if content_md5.is_some() {
        let md5: [u8; 16] = md5::Md5::digest(body).into();
        verify_content_md5(content_md5.as_deref(), &md5)?;
    }
    if has_checksum {
        let mut h = req.hasher()?;
        h.update(body);
        req.verify(&h.finalize())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lists `keys` (stored in an in-memory metadata store) the way the S3 handlers do.
    async fn page(
        keys: &[&str],
        prefix: &str,
        delimiter: Option<&str>,
        after: &str,
        max: usize,
    ) -> (Vec<String>, Vec<String>, bool, Option<String>) {
        let meta = coffer_meta::MemoryStore::new();
        meta.create_bucket("b", 0, "root").await.unwrap();
        for k in keys {
            let rec = coffer_meta::conformance::sample_object(k);
            meta.put_object("b", k, &rec, &Precondition::NONE)
                .await
                .unwrap();
        }
        let page = list_page(&meta, "b", prefix, delimiter, after, max)
            .await
            .unwrap();
        (
            page.contents.into_iter().map(|(k, _)| k).collect(),
            page.prefixes,
            page.truncated,
            page.next,
        )
    }

    #[tokio::test]
    async fn delimiter_rolls_up_common_prefixes() {
        let keys = ["a/1", "a/2", "b", "c/x/y", "c/z", "d"];
        let (c, p, t, _) = page(&keys, "", Some("/"), "", 1000).await;
        assert_eq!(c, ["b", "d"]);
        assert_eq!(p, ["a/", "c/"]);
        assert!(!t);
        let (c, p, _, _) = page(&keys, "c/", Some("/"), "", 1000).await;
        assert_eq!(c, ["c/z"]);
        assert_eq!(p, ["c/x/"]);
    }

    #[tokio::test]
    async fn pagination_resumes_after_a_common_prefix_without_repeating_it() {
        let keys = ["a/1", "a/2", "a/3", "b", "c/1"];
        let (c, p, t, next) = page(&keys, "", Some("/"), "", 1).await;
        assert!(c.is_empty());
        assert_eq!(p, ["a/"]);
        assert!(t);
        let next = next.unwrap();
        assert_eq!(next, "a/");
        let (c, p, t, next) = page(&keys, "", Some("/"), &next, 1).await;
        assert_eq!(c, ["b"]);
        assert!(p.is_empty());
        assert!(t);
        let (c, p, t, next) = page(&keys, "", Some("/"), &next.unwrap(), 1).await;
        assert!(c.is_empty());
        assert_eq!(p, ["c/"]);
        // The last entry fills the page exactly: S3 reports no truncation when nothing follows.
        assert!(!t, "nothing follows c/");
        assert!(next.is_none());
    }

    #[tokio::test]
    async fn pagination_without_delimiter_visits_every_key_once() {
        let keys: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let (c, p, t, next) = page(&refs, "", None, &after, 1000).await;
            assert!(p.is_empty());
            seen.extend(c);
            if !t {
                break;
            }
            after = next.unwrap();
        }
        assert_eq!(seen, keys);
    }

    #[test]
    fn aws_chunked_is_not_a_stored_content_encoding() {
        let h = object_headers(
            None,
            Some("aws-chunked".into()),
            None,
            None,
            None,
            None,
            None,
            None,
        );
        assert_eq!(h.content_encoding, None);
        let h = object_headers(
            None,
            Some("gzip, aws-chunked".into()),
            None,
            None,
            None,
            None,
            None,
            None,
        );
        assert_eq!(h.content_encoding.as_deref(), Some("gzip"));
    }

    #[test]
    fn url_encoding_keeps_unreserved_and_slash() {
        let mut v = Some("a b+c/ü%".to_owned());
        url_encode(&mut v);
        assert_eq!(v.as_deref(), Some("a%20b%2Bc/%C3%BC%25"));
    }

    #[test]
    fn copy_source_range_is_strict() {
        assert_eq!(parse_copy_source_range("bytes=0-9", 10).unwrap(), 0..10);
        assert_eq!(parse_copy_source_range("bytes=5-5", 10).unwrap(), 5..6);
        for bad in [
            "bytes=-5",
            "bytes=5-",
            "bytes=+1-2",
            "0-9",
            "bytes=a-b",
            "bytes=1-2-3",
        ] {
            assert!(
                matches!(
                    parse_copy_source_range(bad, 10),
                    Err(ServerError::S3(S3ErrorCode::InvalidArgument, _))
                ),
                "{bad}"
            );
        }
        for unsatisfiable in [
            "bytes=5-4",
            "bytes=0-10",
            "bytes=18446744073709551615-18446744073709551615",
        ] {
            assert!(
                matches!(
                    parse_copy_source_range(unsatisfiable, 10),
                    Err(ServerError::S3(S3ErrorCode::InvalidRange, _))
                ),
                "{unsatisfiable}"
            );
        }
    }

    #[test]
    fn content_md5_is_checked() {
        let md5: [u8; 16] = Md5::digest(b"hello").into();
        assert!(verify_content_md5(Some(&B64.encode(md5)), &md5).is_ok());
        let other: [u8; 16] = Md5::digest(b"hellO").into();
        assert!(matches!(
            verify_content_md5(Some(&B64.encode(other)), &md5),
            Err(ServerError::S3(S3ErrorCode::BadDigest, _))
        ));
        assert!(matches!(
            verify_content_md5(Some("not base64!"), &md5),
            Err(ServerError::S3(S3ErrorCode::InvalidDigest, _))
        ));
    }
}
