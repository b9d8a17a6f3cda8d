//! The write path shared by PutObject and UploadPart: one body streamed into one encrypted blob, checked, then committed.

use super::*;

/// Conditional writes (If-Match / If-None-Match on PUT and CompleteMultipartUpload), for
/// the store to evaluate inside the write's transaction. `If-None-Match` with an ETag (not
/// `*`) is not a write condition on S3 and is ignored, as before.
pub(super) fn precondition(
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

/// Where one body is stored: the blob of (bucket, key, version, part), encrypted under
/// `sse` (with the SSE-C key or the caller's SSE-KMS proof where the kind needs one), with
/// `headers` bound into the blob.
pub(super) struct BlobTarget<'a> {
    pub(super) bucket: &'a str,
    pub(super) key: &'a str,
    pub(super) version: &'a str,
    pub(super) part: u32,
    pub(super) sse: &'a SseRecord,
    pub(super) customer: Option<&'a CustomerKey>,
    pub(super) proof: Option<&'a KeyUse>,
    pub(super) headers: &'a ObjectHeaders,
}

/// What a streamed request body announced about itself: its length (`Content-Length` or
/// `x-amz-decoded-content-length`), `Content-MD5`, and `x-amz-checksum-*` in headers or
/// trailers.
pub(super) struct Announced<'a> {
    pub(super) headers: &'a http::HeaderMap,
    pub(super) trailers: Option<s3s::TrailingHeaders>,
    pub(super) content_md5: Option<&'a str>,
    pub(super) sums: ChecksumRequest,
}

impl S3Handlers {
    /// Encrypts a body into one blob (see [`BlobTarget`]), within the server's object size
    /// and body idle-time limits.
    pub(super) async fn write_blob<S>(
        &self,
        body: S,
        to: &BlobTarget<'_>,
        hasher: s3s::checksum::ChecksumHasher,
    ) -> ServerResult<(Segment, WrittenBlob, Option<KeyUsed>)>
    where
        S: Stream<Item = Result<Bytes, StdError>> + Unpin,
    {
        let ctx = sse::blob_context(to.bucket, to.key, to.version, to.part)?;
        let bk = self
            .keys
            .new_blob_key(to.sse, to.customer, to.proof, &ctx)
            .await?;
        let used = to
            .proof
            .map(|p| KeyUsed::new(p, bk.wrapped.reference().version));
        let written = self
            .blobs
            .write(
                body,
                bk,
                &ctx,
                &header_metadata(to.headers)?,
                hasher,
                self.limits.max_object_size,
                self.limits.body_idle_timeout,
            )
            .await?;
        let seg = Segment {
            blob: written.name.clone(),
            version: to.version.to_owned(),
            part_number: to.part,
            plain_len: written.plain_len,
            blob_len: written.blob_len,
            header_len: written.header_len,
            etag: hex::encode(written.md5),
        };
        Ok((seg, written, used))
    }

    /// The write path of PutObject and UploadPart: streams `body` into one blob, checks it
    /// against what the request announced (length, Content-MD5, checksums including
    /// trailers), then hands the blob's segment and verified checksums to `commit` (the
    /// metadata write, which decides whether the blob becomes visible). If a check or the
    /// commit fails the blob is deleted, so a failed request leaves nothing behind. Returns
    /// what `commit` returned and, for SSE-KMS, the key version used.
    pub(super) async fn save_stream<T, F, Fut>(
        &self,
        body: Option<StreamingBlob>,
        to: &BlobTarget<'_>,
        mut announced: Announced<'_>,
        commit: F,
    ) -> ServerResult<(T, Option<KeyUsed>)>
    where
        F: FnOnce(Segment, Checksums) -> Fut,
        Fut: std::future::Future<Output = ServerResult<T>>,
    {
        let body = body
            .unwrap_or_else(|| StreamingBlob::wrap::<_, std::io::Error>(futures::stream::empty()));
        let hasher = announced.sums.hasher()?;
        let (seg, written, used) = self.write_blob(body, to, hasher).await?;
        let blob = seg.blob.clone();
        let checked = async {
            check_body_complete(announced.headers, written.plain_len)?;
            verify_content_md5(announced.content_md5, &written.md5)?;
            announced
                .sums
                .add_trailers(announced.headers, announced.trailers)?;
            let checksums = announced.sums.verify(&written.checksums)?;
            commit(seg, checksums).await
        };
        match checked.await {
            Ok(v) => Ok((v, used)),
            Err(e) => {
                self.blobs.delete(&blob).await;
                Err(e)
            }
        }
    }
}

impl S3Handlers {
    /// What a write stores (its SSE record, SSE-C key, bucket-key flag) and, for SSE-KMS,
    /// the caller's `kms:GenerateDataKey` proof on the chosen key.
    #[allow(clippy::type_complexity)]
    pub(super) async fn write_choice(
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
