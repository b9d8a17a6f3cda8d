//! GetObject, HeadObject, GetObjectAttributes and the read conditions (If-Match and friends).

use super::*;

/// Conditional-request evaluation for GET and HEAD (RFC 9110 §13.2.2 order, as S3).
pub(super) fn check_conditions(
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

/// The object a GET or HEAD reads (same input field names, no shared trait), in the order
/// S3 answers their errors: the key, the record, no write-side SSE headers, the SSE-C key
/// checked against the object's. Evaluates to `(record, customer key)`; returns early on
/// error.
macro_rules! readable {
    ($h:ident, $req:ident, $input:ident) => {{
        s3(check_key(&$input.key))?;
        let rec = s3($h
            .object_at(&$input.bucket, &$input.key, $input.version_id.as_deref())
            .await)?;
        s3(refuse_write_sse(&$req.headers))?;
        let customer = customer_key!($h, $input);
        s3($h.keys.check_read_key(&rec.sse, customer.as_ref()))?;
        (rec, customer)
    }};
}

/// The read conditions of a GET or HEAD (`If-Match`, `If-None-Match`, `If-Modified-Since`,
/// `If-Unmodified-Since`) against `rec`; a `304` carries the validators. Returns early.
macro_rules! read_conditions {
    ($rec:ident, $input:ident) => {
        s3(check_conditions(
            &$rec,
            $input.if_match.as_ref(),
            $input.if_none_match.as_ref(),
            $input.if_modified_since.as_ref(),
            $input.if_unmodified_since.as_ref(),
        ))
        .map_err(|e| with_validators(e, &$rec))?
    };
}

/// A `304 Not Modified` carries the object's validators (`ETag`, `Last-Modified`), as S3's
/// do, so a client can refresh what it cached; other errors pass unchanged.
fn with_validators(mut e: s3s::S3Error, rec: &ObjectRecord) -> s3s::S3Error {
    if *e.code() != S3ErrorCode::NotModified {
        return e;
    }
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = etag(&rec.etag).to_http_header() {
        headers.insert(http::header::ETAG, v);
    }
    let mut date = Vec::new();
    if ts(rec.last_modified)
        .format(s3s::dto::TimestampFormat::HttpDate, &mut date)
        .is_ok()
    {
        if let Ok(v) = http::HeaderValue::from_bytes(&date) {
            headers.insert(http::header::LAST_MODIFIED, v);
        }
    }
    e.set_headers(headers);
    e
}

/// GET and HEAD carry no SSE-S3/SSE-KMS headers (those choose how a *write* is encrypted;
/// a read is decrypted with what the object records): S3 refuses them with 400.
fn refuse_write_sse(headers: &http::HeaderMap) -> ServerResult<()> {
    if headers.contains_key("x-amz-server-side-encryption")
        || headers.contains_key("x-amz-server-side-encryption-aws-kms-key-id")
    {
        return Err(ServerError::invalid_argument(
            "x-amz-server-side-encryption header is not supported for this operation.",
        ));
    }
    Ok(())
}

/// The plaintext range of part `n` (`partNumber`, GET and HEAD) and the object's part count
/// (`None` for an object not uploaded in parts, whose only part is the whole object).
fn part_range(rec: &ObjectRecord, n: i32) -> ServerResult<(Range<u64>, Option<i32>)> {
    let n = usize::try_from(n).unwrap_or(0);
    if n == 0 || n > rec.segments.len() {
        return Err(ServerError::s3(
            S3ErrorCode::Custom("InvalidPartNumber".into()),
            "The requested partnumber is not satisfiable",
        ));
    }
    let start: u64 = rec.segments[..n - 1].iter().map(|s| s.plain_len).sum();
    let multipart = rec.etag.contains('-');
    Ok((
        start..start + rec.segments[n - 1].plain_len,
        multipart.then_some(rec.segments.len() as i32),
    ))
}

/// `x-amz-checksum-mode: ENABLED`: the stored checksums go in the response.
fn checksums_wanted(mode: Option<&ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
}

pub(super) async fn get_object(
    h: &S3Handlers,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let input = req.input;
    let (rec, customer) = readable!(h, req, input);
    let proof = h.kms_use(&req.extensions, &rec.sse, "kms:Decrypt").await?;
    read_conditions!(rec, input);
    let total = rec.size;
    let (range, partial, parts_count) = match (input.part_number, input.range) {
        (Some(_), Some(_)) => {
            return Err(ServerError::invalid_request(
                "Cannot specify both Range header and partNumber query parameter",
            )
            .into())
        }
        (Some(n), None) => {
            let (r, parts_count) = s3(part_range(&rec, n))?;
            (r, parts_count.is_some(), parts_count)
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
    let (body, used) = s3(h
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
    out.version_id = version_out(&rec, input.version_id.is_some());
    out.tag_count = (!rec.tags.is_empty()).then_some(rec.tags.len() as i32);
    set_lock_headers!(out, &rec);
    fill_headers(&rec, &mut HeaderFields::Get(&mut out));
    out.server_side_encryption = s.sse;
    out.ssekms_key_id = s.kms_key_id;
    out.bucket_key_enabled = s.bucket_key;
    if let SseRecord::C { .. } = rec.sse {
        out.sse_customer_algorithm = Some("AES256".to_owned());
        out.sse_customer_key_md5 = input.sse_customer_key_md5.clone();
    }
    if checksums_wanted(input.checksum_mode.as_ref()) && !partial {
        set_checksums!(out, rec.checksums.clone());
    }
    Ok(with_key_used(out, used))
}

pub(super) async fn head_object(
    h: &S3Handlers,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = req.input;
    let (rec, customer) = readable!(h, req, input);
    read_conditions!(rec, input);
    let mut out = HeadObjectOutput::default();
    let (len, parts) = match input.part_number {
        Some(n) => {
            let (r, parts_count) = s3(part_range(&rec, n))?;
            (r.end - r.start, parts_count)
        }
        None => (rec.size, None),
    };
    out.content_length = Some(len as i64);
    out.parts_count = parts;
    out.accept_ranges = Some("bytes".to_owned());
    out.version_id = version_out(&rec, input.version_id.is_some());
    set_lock_headers!(out, &rec);
    fill_headers(&rec, &mut HeaderFields::Head(&mut out));
    let s = sse_out(&rec.sse, customer.as_ref(), rec.bucket_key_enabled);
    set_sse!(out, s);
    if checksums_wanted(input.checksum_mode.as_ref()) {
        set_checksums!(out, rec.checksums.clone());
    }
    Ok(S3Response::new(out))
}

pub(super) async fn get_object_attributes(
    h: &S3Handlers,
    req: S3Request<GetObjectAttributesInput>,
) -> S3Result<S3Response<GetObjectAttributesOutput>> {
    let input = req.input;
    s3(check_key(&input.key))?;
    let rec = s3(h
        .object_at(&input.bucket, &input.key, input.version_id.as_deref())
        .await)?;
    let customer = customer_key!(h, input);
    s3(h.keys.check_read_key(&rec.sse, customer.as_ref()))?;
    // `x-amz-object-attributes` is a list: SDKs send it as one comma-separated header.
    let wants = |a: &str| {
        input
            .object_attributes
            .iter()
            .flat_map(|x| x.as_str().split(','))
            .any(|x| x.trim().eq_ignore_ascii_case(a))
    };
    let mut out = GetObjectAttributesOutput::default();
    out.last_modified = Some(ts(rec.last_modified));
    out.version_id = version_out(&rec, input.version_id.is_some());
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
            set_checksums!(sum, c.clone());
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
