//! Object headers: what a write stores (content headers, user metadata) and what a read answers, including the SSE response headers.

use super::*;

pub(super) fn sse_algorithm(rec: &SseRecord) -> Option<ServerSideEncryption> {
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

pub(super) fn kms_key(rec: &SseRecord) -> Option<String> {
    match rec {
        SseRecord::Kms { key_arn, .. } => Some(key_arn.clone()),
        _ => None,
    }
}

/// The SSE fields every object response carries.
pub(super) struct SseOut {
    pub(super) sse: Option<ServerSideEncryption>,
    pub(super) kms_key_id: Option<String>,
    pub(super) c_algorithm: Option<String>,
    pub(super) c_key_md5: Option<String>,
    pub(super) bucket_key: Option<bool>,
}

pub(super) fn sse_out(rec: &SseRecord, customer: Option<&CustomerKey>, bucket_key: bool) -> SseOut {
    SseOut {
        sse: sse_algorithm(rec),
        kms_key_id: kms_key(rec),
        c_algorithm: customer.map(|_| "AES256".to_owned()),
        c_key_md5: customer.map(|c| c.key_md5.clone()),
        bucket_key: matches!(rec, SseRecord::Kms { .. }).then_some(bucket_key),
    }
}

pub(super) fn header_metadata(h: &ObjectHeaders) -> ServerResult<Metadata> {
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
pub(super) fn object_headers(
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
pub(super) fn check_metadata(m: Option<&s3s::dto::Metadata>) -> ServerResult<()> {
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

pub(super) fn parse_expires(s: &Option<String>) -> Option<Timestamp> {
    s.as_deref()
        .and_then(|s| Timestamp::parse(TimestampFormat::HttpDate, s).ok())
}

pub(super) enum HeaderFields<'a> {
    Get(&'a mut GetObjectOutput),
    Head(&'a mut HeadObjectOutput),
}

pub(super) fn fill_headers(rec: &ObjectRecord, out: &mut HeaderFields<'_>) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
