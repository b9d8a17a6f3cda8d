//! Multipart uploads: create, upload a part (by body or by copy), complete, abort, list uploads and parts.

use super::*;

pub(super) fn multipart_etag(md5s: &[String]) -> ServerResult<String> {
    let mut h = Md5::new();
    for m in md5s {
        h.update(hex::decode(m).map_err(|_| ServerError::Internal("stored etag".into()))?);
    }
    Ok(format!("{}-{}", hex::encode(h.finalize()), md5s.len()))
}

pub(super) fn part_number_of(n: i32) -> ServerResult<u32> {
    if !(1..=MAX_PARTS).contains(&n) {
        return Err(ServerError::invalid_argument(
            "Part number must be an integer between 1 and 10000, inclusive",
        ));
    }
    Ok(n as u32)
}

/// What UploadPart and UploadPartCopy write a part into: the upload, the part number and
/// the request's SSE-C key, checked against the upload's — the preamble both share, in the
/// order its errors are answered.
pub(super) struct PartInto {
    pub(super) upload: UploadRecord,
    pub(super) part: u32,
    pub(super) customer: Option<CustomerKey>,
}

impl PartInto {
    /// The new part's blob, under the upload's encryption and headers.
    fn target<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        upload_id: &'a str,
        proof: Option<&'a KeyUse>,
    ) -> BlobTarget<'a> {
        BlobTarget {
            bucket,
            key,
            version: upload_id,
            part: self.part,
            sse: &self.upload.sse,
            customer: self.customer.as_ref(),
            proof,
            headers: &self.upload.headers,
        }
    }

    /// The SSE fields of the part's response.
    fn sse_out(&self) -> SseOut {
        sse_out(
            &self.upload.sse,
            self.customer.as_ref(),
            self.upload.bucket_key_enabled,
        )
    }
}

/// [`S3Handlers::part_into`] for an UploadPart / UploadPartCopy input (same field names, no
/// shared trait); returns early on error.
macro_rules! part_into {
    ($h:ident, $input:ident) => {
        s3($h
            .part_into(
                &$input.bucket,
                &$input.key,
                &$input.upload_id,
                $input.part_number,
                [
                    $input.sse_customer_algorithm.as_deref(),
                    $input.sse_customer_key.as_deref(),
                    $input.sse_customer_key_md5.as_deref(),
                ],
            )
            .await)?
    };
}

impl S3Handlers {
    /// The upload a part goes into, its number, and the SSE-C key (`customer`: algorithm,
    /// key, key MD5 headers) checked against the upload's.
    pub(super) async fn part_into(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        [algorithm, customer_key, md5]: [Option<&str>; 3],
    ) -> ServerResult<PartInto> {
        let upload = self.upload(bucket, key, upload_id).await?;
        let part = part_number_of(part_number)?;
        let customer = self.customer_key(algorithm, customer_key, md5)?;
        self.keys.check_part_key(&upload.sse, customer.as_ref())?;
        Ok(PartInto {
            upload,
            part,
            customer,
        })
    }

    pub(super) async fn upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> ServerResult<UploadRecord> {
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

pub(super) async fn create_multipart_upload(
    h: &S3Handlers,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let input = req.input;
    s3(check_key(&input.key))?;
    s3(check_metadata(input.metadata.as_ref()))?;
    let (sse_rec, customer, bucket_key, proof) = h
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
    check_write_acl!(h, input);
    let extras = write_extras!(h, input);
    let checksum_type = s3(upload_checksum_type(
        input.checksum_algorithm.as_ref().map(|a| a.as_str()),
        input.checksum_type.as_ref().map(|t| t.as_str()),
    ))?;
    let rec = UploadRecord {
        checksum_type: checksum_type.clone(),
        retention: extras.retention,
        legal_hold: extras.legal_hold,
        tags: extras.tags,
        bucket: input.bucket.clone(),
        key: input.key.clone(),
        initiated: now_ms(),
        headers: object_headers!(input),
        sse: sse_rec,
        bucket_key_enabled: input.bucket_key_enabled.unwrap_or(bucket_key),
        checksum_algorithm: input
            .checksum_algorithm
            .as_ref()
            .map(|a| a.as_str().to_owned()),
    };
    s3(h.meta.create_upload(&upload_id, &rec).await)?;
    let s = sse_out(&rec.sse, customer.as_ref(), rec.bucket_key_enabled);
    let mut out = CreateMultipartUploadOutput::default();
    out.bucket = Some(input.bucket);
    out.key = Some(input.key);
    out.upload_id = Some(upload_id);
    set_sse!(out, s);
    out.checksum_algorithm = input.checksum_algorithm;
    out.checksum_type = checksum_type.map(ChecksumType::from);
    if let (SseRecord::Kms { context, .. }, Some(_)) =
        (&rec.sse, input.ssekms_encryption_context.as_ref())
    {
        out.ssekms_encryption_context = Some(sse::format_kms_context(context));
    }
    Ok(S3Response::new(out))
}

pub(super) async fn upload_part(
    h: &S3Handlers,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let input = req.input;
    let into = part_into!(h, input);
    let part = into.part;
    let proof = h
        .kms_use(&req.extensions, &into.upload.sse, "kms:GenerateDataKey")
        .await?;
    let to = into.target(&input.bucket, &input.key, &input.upload_id, proof.as_ref());
    let announced = Announced {
        headers: &req.headers,
        trailers: req.trailing_headers,
        content_md5: input.content_md5.as_deref(),
        sums: checksum_request!(input, into.upload.checksum_algorithm.clone()),
    };
    let ((rec, old), used) = s3(h
        .save_stream(input.body, &to, announced, |segment, checksums| async {
            let rec = PartRecord {
                segment,
                last_modified: now_ms(),
                checksums,
            };
            let old = h.meta.put_part(&input.upload_id, part, &rec).await?;
            Ok((rec, old))
        })
        .await)?;
    if let Some(old) = old {
        h.blobs.delete(&old.segment.blob).await;
    }
    let s = into.sse_out();
    let mut out = UploadPartOutput::default();
    out.e_tag = Some(etag(&rec.segment.etag));
    set_sse!(out, s);
    set_checksums!(out, rec.checksums);
    Ok(with_key_used(out, used))
}

pub(super) async fn upload_part_copy(
    h: &S3Handlers,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let input = req.input;
    let into = part_into!(h, input);
    let part = into.part;
    let (src_customer, src_bucket, src_key, src) = read_copy_source!(h, input);
    let proof = h
        .kms_use(&req.extensions, &into.upload.sse, "kms:GenerateDataKey")
        .await?;
    let src_proof = h.kms_use(&req.extensions, &src.sse, "kms:Decrypt").await?;
    let range = match input.copy_source_range.as_deref() {
        None => 0..src.size,
        Some(r) => s3(parse_copy_source_range(r, src.size))?,
    };
    let want = range.end - range.start;
    let (body, _) = s3(h
        .read_stream(&src_bucket, &src_key, &src, src_customer, src_proof, range)
        .await)?;
    let sums = ChecksumRequest {
        algorithm: into.upload.checksum_algorithm.clone(),
        ..Default::default()
    };
    let (seg, written, used) = s3(h
        .write_blob(
            body,
            &into.target(&input.bucket, &input.key, &input.upload_id, proof.as_ref()),
            s3(sums.hasher())?,
        )
        .await)?;
    if written.plain_len != want {
        h.blobs.delete(&seg.blob).await;
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
    let old = match h.meta.put_part(&input.upload_id, part, &rec).await {
        Ok(old) => old,
        Err(e) => {
            h.blobs.delete(&seg.blob).await;
            return Err(ServerError::from(e).into());
        }
    };
    if let Some(old) = old {
        h.blobs.delete(&old.segment.blob).await;
    }
    let s = into.sse_out();
    let mut result = CopyPartResult::default();
    result.e_tag = Some(etag(&rec.segment.etag));
    result.last_modified = Some(ts(rec.last_modified));
    set_checksums!(result, rec.checksums.clone());
    let mut out = UploadPartCopyOutput::default();
    out.copy_part_result = Some(result);
    set_sse!(out, s);
    Ok(with_key_used(out, used))
}

pub(super) async fn complete_multipart_upload(
    h: &S3Handlers,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let input = req.input;
    let upload = match h.upload(&input.bucket, &input.key, &input.upload_id).await {
        Ok(u) => u,
        Err(ServerError::NoSuchUpload) => {
            return Ok(S3Response::new(s3(completed_again(h, &input).await)?))
        }
        Err(e) => return Err(e.into()),
    };
    let customer = customer_key!(h, input);
    if customer.is_some() {
        s3(h.keys.check_part_key(&upload.sse, customer.as_ref()))?;
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
    let mut stored = s3(h.meta.list_parts(&input.upload_id).await)?;
    let mut segments = Vec::new();
    let mut md5s = Vec::new();
    let mut part_sums = Vec::new();
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
        if let Some(alg) = upload.checksum_algorithm.as_deref() {
            part_sums.push((
                s3(part_checksum(alg, n, &rec.checksums, &p))?,
                rec.segment.plain_len,
            ));
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
        checksums: s3(object_checksum(
            &upload,
            &part_sums,
            [
                input.checksum_crc32.as_deref(),
                input.checksum_crc32c.as_deref(),
                input.checksum_crc64nvme.as_deref(),
            ],
        ))?,
        sse: upload.sse.clone(),
        bucket_key_enabled: upload.bucket_key_enabled,
        segments,
        versioned: false,
        delete_marker: false,
        retention: upload.retention,
        legal_hold: upload.legal_hold,
        tags: upload.tags.clone(),
    };
    let old = s3(h
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
    h.delete_blobs(stored.into_values().map(|p| p.segment))
        .await;
    h.delete_records(old.replaced).await;
    Ok(S3Response::new(completed(
        &input.bucket,
        &input.key,
        &rec,
        old.version_id,
    )))
}

/// The answer to a completed upload: the object it made.
fn completed(
    bucket: &str,
    key: &str,
    rec: &ObjectRecord,
    version_id: Option<String>,
) -> CompleteMultipartUploadOutput {
    let s = sse_out(&rec.sse, None, rec.bucket_key_enabled);
    let mut out = CompleteMultipartUploadOutput::default();
    out.version_id = version_id;
    out.bucket = Some(bucket.to_owned());
    out.key = Some(key.to_owned());
    out.location = Some(format!("/{bucket}/{key}"));
    out.e_tag = Some(etag(&rec.etag));
    out.server_side_encryption = s.sse;
    out.ssekms_key_id = s.kms_key_id;
    out.bucket_key_enabled = s.bucket_key;
    out.checksum_type = rec.checksums.kind.clone().map(ChecksumType::from);
    set_checksums!(out, rec.checksums.clone());
    out
}

/// The stored checksum (raw bytes) of part `n` under the upload's algorithm `alg`; a
/// checksum the completion request names for the part must be that one (`InvalidPart`).
fn part_checksum(
    alg: &str,
    n: i32,
    stored: &Checksums,
    named: &CompletedPart,
) -> ServerResult<Vec<u8>> {
    let (have, sent) = match alg.to_ascii_uppercase().as_str() {
        "CRC32" => (&stored.crc32, &named.checksum_crc32),
        "CRC32C" => (&stored.crc32c, &named.checksum_crc32c),
        "CRC64NVME" => (&stored.crc64nvme, &named.checksum_crc64nvme),
        "SHA1" => (&stored.sha1, &named.checksum_sha1),
        "SHA256" => (&stored.sha256, &named.checksum_sha256),
        other => {
            return Err(ServerError::Internal(format!(
                "stored upload algorithm {other}"
            )))
        }
    };
    let have = have.as_deref().ok_or_else(|| {
        ServerError::s3(
            S3ErrorCode::InvalidPart,
            format!("Part {n} has no {alg} checksum; the upload was created with {alg}."),
        )
    })?;
    if sent.as_deref().is_some_and(|v| v != have) {
        return Err(ServerError::s3(
            S3ErrorCode::InvalidPart,
            format!("The {alg} checksum of part {n} did not match the one it was uploaded with."),
        ));
    }
    B64.decode(have)
        .map_err(|_| ServerError::Internal(format!("stored {alg} checksum of part {n}")))
}

/// The checksum type of a new upload (`x-amz-checksum-type`), as S3 allows it: CRC64NVME
/// is FULL_OBJECT only, SHA1/SHA256 COMPOSITE only, CRC32/CRC32C either (COMPOSITE unless
/// asked); a type needs an algorithm.
fn upload_checksum_type(alg: Option<&str>, kind: Option<&str>) -> ServerResult<Option<String>> {
    let Some(alg) = alg.map(str::to_ascii_uppercase) else {
        if kind.is_some() {
            return Err(ServerError::invalid_request(
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.",
            ));
        }
        return Ok(None);
    };
    let kind = match kind {
        Some(k) => k.to_ascii_uppercase(),
        None if alg == "CRC64NVME" => "FULL_OBJECT".to_owned(),
        None => "COMPOSITE".to_owned(),
    };
    let ok = match kind.as_str() {
        "FULL_OBJECT" => matches!(alg.as_str(), "CRC32" | "CRC32C" | "CRC64NVME"),
        "COMPOSITE" => alg != "CRC64NVME",
        _ => false,
    };
    if !ok {
        return Err(ServerError::invalid_request(format!(
            "The {kind} checksum type cannot be used with the {} checksum algorithm.",
            alg.to_ascii_lowercase()
        )));
    }
    Ok(Some(kind))
}

/// The object checksum of a completed upload: FULL_OBJECT (the CRC of the whole object,
/// combined from the parts' CRCs and lengths; a full-object checksum the completion request
/// sends must equal it, else `400 BadDigest`) or COMPOSITE.
fn object_checksum(
    upload: &UploadRecord,
    parts: &[(Vec<u8>, u64)],
    // The completion request's x-amz-checksum-crc32, -crc32c, -crc64nvme.
    sent: [Option<&str>; 3],
) -> ServerResult<Checksums> {
    let Some(alg) = upload.checksum_algorithm.as_deref() else {
        return Ok(Checksums::default());
    };
    if upload.checksum_type.as_deref() != Some("FULL_OBJECT") {
        let sums: Vec<Vec<u8>> = parts.iter().map(|(s, _)| s.clone()).collect();
        return composite_checksum(alg, &sums);
    }
    let (algorithm, width) = match alg.to_ascii_uppercase().as_str() {
        "CRC32" => (crc_fast::CrcAlgorithm::Crc32IsoHdlc, 4),
        "CRC32C" => (crc_fast::CrcAlgorithm::Crc32Iscsi, 4),
        "CRC64NVME" => (crc_fast::CrcAlgorithm::Crc64Nvme, 8),
        other => {
            return Err(ServerError::Internal(format!(
                "FULL_OBJECT upload with algorithm {other}"
            )))
        }
    };
    let mut whole: Option<u64> = None;
    for (sum, len) in parts {
        if sum.len() != width {
            return Err(ServerError::Internal(format!(
                "stored {alg} part checksum of {} bytes",
                sum.len()
            )));
        }
        let v = sum.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        whole = Some(match whole {
            None => v,
            Some(w) => crc_fast::checksum_combine(algorithm, w, v, *len),
        });
    }
    let Some(whole) = whole else {
        return Ok(Checksums::default());
    };
    let bytes = whole.to_be_bytes();
    let value = B64.encode(&bytes[8 - width..]);
    let sent = match width {
        8 => sent[2],
        _ if alg.eq_ignore_ascii_case("CRC32C") => sent[1],
        _ => sent[0],
    };
    if sent.is_some_and(|s| s != value) {
        return Err(ServerError::s3(
            S3ErrorCode::BadDigest,
            format!("The {alg} you specified did not match the calculated checksum."),
        ));
    }
    let mut out = Checksums {
        kind: Some("FULL_OBJECT".to_owned()),
        ..Checksums::default()
    };
    match alg.to_ascii_uppercase().as_str() {
        "CRC32" => out.crc32 = Some(value),
        "CRC32C" => out.crc32c = Some(value),
        _ => out.crc64nvme = Some(value),
    }
    Ok(out)
}

/// S3's COMPOSITE checksum: the algorithm over the concatenated part checksums, `-N`.
fn composite_checksum(alg: &str, parts: &[Vec<u8>]) -> ServerResult<Checksums> {
    if parts.is_empty() {
        return Ok(Checksums::default());
    }
    let mut hasher = ChecksumRequest {
        algorithm: Some(alg.to_owned()),
        ..Default::default()
    }
    .hasher()?;
    for p in parts {
        hasher.update(p);
    }
    let sum = hasher.finalize();
    let n = parts.len();
    let tag = |v: Option<String>| v.map(|v| format!("{v}-{n}"));
    Ok(Checksums {
        crc32: tag(sum.checksum_crc32),
        crc32c: tag(sum.checksum_crc32c),
        crc64nvme: None,
        sha1: tag(sum.checksum_sha1),
        sha256: tag(sum.checksum_sha256),
        kind: Some("COMPOSITE".to_owned()),
    })
}

/// A CompleteMultipartUpload repeated after it succeeded (a client retrying a response it
/// lost) gets the same answer, as on S3, while the object it made is still the current one:
/// its version is the upload's id (completion names it so) and the listed parts' ETags make
/// its ETag. Anything else is `NoSuchUpload`, as before.
async fn completed_again(
    h: &S3Handlers,
    input: &CompleteMultipartUploadInput,
) -> ServerResult<CompleteMultipartUploadOutput> {
    let rec = h
        .meta
        .object(&input.bucket, &input.key)
        .await?
        .filter(|r| r.version_id == input.upload_id)
        .ok_or(ServerError::NoSuchUpload)?;
    let md5s: Option<Vec<String>> = input
        .multipart_upload
        .as_ref()
        .and_then(|m| m.parts.as_ref())
        .and_then(|parts| {
            parts
                .iter()
                .map(|p| {
                    p.e_tag
                        .as_ref()
                        .map(|e| e.value().trim_matches('"').to_owned())
                })
                .collect::<Option<Vec<String>>>()
        });
    // The ETags are the client's: one that is not an MD5 in hex matches nothing (it is not
    // a stored value gone bad, which is what `multipart_etag`'s error means).
    match md5s {
        Some(m) if !m.is_empty() && multipart_etag(&m).is_ok_and(|e| e == rec.etag) => Ok(
            completed(&input.bucket, &input.key, &rec, version_out(&rec, false)),
        ),
        _ => Err(ServerError::NoSuchUpload),
    }
}

pub(super) async fn abort_multipart_upload(
    h: &S3Handlers,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    s3(h.upload(&input.bucket, &input.key, &input.upload_id).await)?;
    let parts = s3(h.meta.delete_upload(&input.upload_id).await)?;
    h.delete_blobs(parts.into_iter().map(|p| p.segment)).await;
    h.reserve.ensure();
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub(super) async fn list_multipart_uploads(
    h: &S3Handlers,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    s3(check_list_params(
        &[("max-uploads", input.max_uploads)],
        input.encoding_type.as_ref(),
    ))?;
    if !s3(h.meta.bucket_exists(&input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    let prefix = input.prefix.clone().unwrap_or_default();
    let limit = input.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
    let key_marker = input.key_marker.clone().unwrap_or_default();
    let id_marker = input.upload_id_marker.clone().unwrap_or_default();
    let rows = s3(h
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
                u.owner = Some(h.bucket_owner(&rec.bucket));
                u.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
                u
            })
            .collect(),
    );
    Ok(S3Response::new(out))
}

pub(super) async fn list_parts(
    h: &S3Handlers,
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
    let upload = s3(h.upload(&input.bucket, &input.key, &input.upload_id).await)?;
    let marker = input.part_number_marker.unwrap_or(0).max(0) as u32;
    let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
    let all: Vec<(u32, PartRecord)> = s3(h.meta.list_parts(&input.upload_id).await)?
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
    out.owner = Some(h.bucket_owner(&out.bucket.clone().unwrap_or_default()));
    out.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
    out.checksum_algorithm = upload.checksum_algorithm.map(ChecksumAlgorithm::from);
    out.parts = Some(page);
    Ok(S3Response::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(alg: &str, kind: &str) -> UploadRecord {
        UploadRecord {
            bucket: "b".into(),
            key: "k".into(),
            initiated: 0,
            headers: ObjectHeaders::default(),
            sse: SseRecord::S3,
            bucket_key_enabled: false,
            checksum_algorithm: Some(alg.into()),
            checksum_type: Some(kind.into()),
            retention: None,
            legal_hold: false,
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn full_object_crcs_combine_to_the_crc_of_the_whole_object() {
        let parts: [&[u8]; 3] = [b"the quick brown ", b"fox jumps over ", b"the lazy dog"];
        let whole: Vec<u8> = parts.concat();
        for (alg, algorithm, width) in [
            ("CRC32", crc_fast::CrcAlgorithm::Crc32IsoHdlc, 4),
            ("CRC32C", crc_fast::CrcAlgorithm::Crc32Iscsi, 4),
            ("CRC64NVME", crc_fast::CrcAlgorithm::Crc64Nvme, 8),
        ] {
            let be = |v: u64| v.to_be_bytes()[8 - width..].to_vec();
            let sums: Vec<(Vec<u8>, u64)> = parts
                .iter()
                .map(|p| (be(crc_fast::checksum(algorithm, p)), p.len() as u64))
                .collect();
            let want = B64.encode(be(crc_fast::checksum(algorithm, &whole)));
            let got = object_checksum(&upload(alg, "FULL_OBJECT"), &sums, [None; 3]).unwrap();
            let value = got.crc32.or(got.crc32c).or(got.crc64nvme);
            assert_eq!(value.as_deref(), Some(want.as_str()), "{alg}");
            assert_eq!(got.kind.as_deref(), Some("FULL_OBJECT"));
            let wrong = Some("AAAAAA==");
            assert!(
                object_checksum(&upload(alg, "FULL_OBJECT"), &sums, [wrong, wrong, wrong]).is_err(),
                "{alg}: a full-object checksum that differs is BadDigest"
            );
        }
    }

    #[test]
    fn checksum_types_follow_s3_rules() {
        assert_eq!(
            upload_checksum_type(Some("CRC64NVME"), None)
                .unwrap()
                .as_deref(),
            Some("FULL_OBJECT")
        );
        assert_eq!(
            upload_checksum_type(Some("CRC32"), None)
                .unwrap()
                .as_deref(),
            Some("COMPOSITE")
        );
        assert!(upload_checksum_type(Some("SHA256"), Some("FULL_OBJECT")).is_err());
        assert!(upload_checksum_type(Some("CRC64NVME"), Some("COMPOSITE")).is_err());
        assert!(upload_checksum_type(None, Some("FULL_OBJECT")).is_err());
        assert_eq!(upload_checksum_type(None, None).unwrap(), None);
    }
}
