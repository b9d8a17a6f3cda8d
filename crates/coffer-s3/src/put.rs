//! PutObject.

use super::*;

pub(super) async fn put_object(
    h: &S3Handlers,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let input = req.input;
    s3(check_key(&input.key))?;
    s3(check_metadata(input.metadata.as_ref()))?;
    check_write_acl!(h, input);
    let (sse_rec, customer, bucket_key, proof) = h
        .write_choice(
            &req.extensions,
            &sse_headers!(input),
            &input.bucket,
            &input.key,
        )
        .await?;
    let bucket_key = input.bucket_key_enabled.unwrap_or(bucket_key);
    let headers = object_headers!(input);
    let extras = write_extras!(h, input);
    let version = uuid::Uuid::new_v4().to_string();
    let to = BlobTarget {
        bucket: &input.bucket,
        key: &input.key,
        version: &version,
        part: 1,
        sse: &sse_rec,
        customer: customer.as_ref(),
        proof: proof.as_ref(),
        headers: &headers,
    };
    let announced = Announced {
        headers: &req.headers,
        trailers: req.trailing_headers,
        content_md5: input.content_md5.as_deref(),
        sums: checksum_request!(input, None),
    };
    let condition = precondition(input.if_match.as_ref(), input.if_none_match.as_ref());
    let ((rec, old), used) = s3(h
        .save_stream(input.body, &to, announced, |seg, checksums| async {
            let mut rec = ObjectRecord {
                version_id: version.clone(),
                size: seg.plain_len,
                etag: seg.etag.clone(),
                last_modified: now_ms(),
                headers: headers.clone(),
                checksums,
                sse: sse_rec.clone(),
                bucket_key_enabled: bucket_key,
                segments: vec![seg],
                versioned: false,
                delete_marker: false,
                retention: None,
                legal_hold: false,
                tags: BTreeMap::new(),
            };
            extras.apply(&mut rec);
            let old = h
                .meta
                .put_object(&input.bucket, &input.key, &rec, &condition)
                .await?;
            Ok((rec, old))
        })
        .await)?;
    h.delete_records(old.replaced).await;
    let s = sse_out(&rec.sse, customer.as_ref(), rec.bucket_key_enabled);
    let mut out = PutObjectOutput::default();
    out.version_id = old.version_id;
    out.e_tag = Some(etag(&rec.etag));
    set_sse!(out, s);
    if let (SseRecord::Kms { context, .. }, Some(_)) =
        (&rec.sse, input.ssekms_encryption_context.as_ref())
    {
        out.ssekms_encryption_context = Some(sse::format_kms_context(context));
    }
    set_checksums!(out, rec.checksums);
    Ok(with_key_used(out, used))
}
