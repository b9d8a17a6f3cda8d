//! CopyObject and the copy source shared with UploadPartCopy.

use super::*;

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

impl S3Handlers {
    /// Reads a copy source: checks conditions and the source's SSE-C key, returns its record.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn copy_source(
        &self,
        source: &CopySource,
        if_match: Option<&ETagCondition>,
        if_none_match: Option<&ETagCondition>,
        if_modified_since: Option<&Timestamp>,
        if_unmodified_since: Option<&Timestamp>,
        customer: Option<&CustomerKey>,
    ) -> ServerResult<(String, String, ObjectRecord)> {
        let (bucket, key, version_id) = match source {
            CopySource::Bucket {
                bucket,
                key,
                version_id,
            } => (
                bucket.to_string(),
                key.to_string(),
                version_id.as_deref().map(str::to_owned),
            ),
            _ => {
                return Err(ServerError::s3(
                    S3ErrorCode::NotImplemented,
                    "Access point copy sources are not supported",
                ))
            }
        };
        // A delete marker as the source: S3 answers 400 InvalidRequest when it is named,
        // 404 NoSuchKey when it is the latest version.
        let rec = self
            .object_at(&bucket, &key, version_id.as_deref())
            .await
            .map_err(|e| match e {
                ServerError::DeleteMarker { named: true, .. } => ServerError::invalid_request(
                    "The source of a copy request may not specifically refer to a delete marker by version id.",
                ),
                ServerError::DeleteMarker { named: false, .. } => ServerError::NoSuchKey,
                e => e,
            })?;
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
}

pub(super) async fn copy_object(
    h: &S3Handlers,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let input = req.input;
    s3(check_key(&input.key))?;
    s3(check_metadata(input.metadata.as_ref()))?;
    check_write_acl!(h, input);
    let (src_customer, src_bucket, src_key, src) = read_copy_source!(h, input);
    let replace = input
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
    let sse_headers = sse_headers!(input);
    let changes_encryption = sse_headers.sse.is_some() || sse_headers.c_key.is_some();
    // Copying a named older version onto its own key restores it (allowed on S3).
    let names_version = matches!(
        &input.copy_source,
        CopySource::Bucket {
            version_id: Some(_),
            ..
        }
    );
    if src_bucket == input.bucket
        && src_key == input.key
        && !replace
        && !changes_encryption
        && !names_version
    {
        return Err(ServerError::invalid_request(
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        )
        .into());
    }
    let src_proof = h.kms_use(&req.extensions, &src.sse, "kms:Decrypt").await?;
    let (sse_rec, customer, bucket_key, proof) = h
        .write_choice(&req.extensions, &sse_headers, &input.bucket, &input.key)
        .await?;
    let bucket_key = input.bucket_key_enabled.unwrap_or(bucket_key);
    let headers = if replace {
        object_headers!(input)
    } else {
        src.headers.clone()
    };
    let mut extras = write_extras!(h, input);
    // x-amz-tagging-directive: COPY (the default) keeps the source's tags.
    if input
        .tagging_directive
        .as_ref()
        .is_none_or(|d| d.as_str() != TaggingDirective::REPLACE)
    {
        extras.tags = src.tags.clone();
    }
    let (body, _) = s3(h
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
    let (seg, written, used) = s3(h
        .write_blob(
            body,
            &BlobTarget {
                bucket: &input.bucket,
                key: &input.key,
                version: &version,
                part: 1,
                sse: &sse_rec,
                customer: customer.as_ref(),
                proof: proof.as_ref(),
                headers: &headers,
            },
            s3(sums.hasher())?,
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
        h.blobs.delete(&seg.blob).await;
        return Err(ServerError::Integrity("copy source changed length".into()).into());
    }
    let mut rec = ObjectRecord {
        version_id: version,
        size: written.plain_len,
        etag: seg.etag.clone(),
        last_modified: now_ms(),
        headers,
        checksums,
        sse: sse_rec,
        bucket_key_enabled: bucket_key,
        segments: vec![seg.clone()],
        versioned: false,
        delete_marker: false,
        retention: None,
        legal_hold: false,
        tags: BTreeMap::new(),
    };
    extras.apply(&mut rec);
    let old = match h
        .meta
        .put_object(&input.bucket, &input.key, &rec, &Precondition::NONE)
        .await
    {
        Ok(old) => old,
        Err(e) => {
            h.blobs.delete(&seg.blob).await;
            return Err(ServerError::from(e).into());
        }
    };
    h.delete_records(old.replaced).await;
    let s = sse_out(&rec.sse, customer.as_ref(), rec.bucket_key_enabled);
    let mut result = CopyObjectResult::default();
    result.e_tag = Some(etag(&rec.etag));
    result.last_modified = Some(ts(rec.last_modified));
    set_checksums!(result, rec.checksums.clone());
    let mut out = CopyObjectOutput::default();
    out.copy_object_result = Some(result);
    out.version_id = old.version_id;
    out.copy_source_version_id = version_out(&src, names_version);
    set_sse!(out, s);
    Ok(with_key_used(out, used))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
