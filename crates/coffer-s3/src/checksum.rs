//! Request integrity: Content-MD5, `x-amz-checksum-*` headers and trailers, and the length a request announced.

use super::*;

/// Which checksums a write computes: those the request names or sends.
#[derive(Default, Clone)]
pub(super) struct ChecksumRequest {
    pub(super) crc32: Option<String>,
    pub(super) crc32c: Option<String>,
    pub(super) crc64nvme: Option<String>,
    pub(super) sha1: Option<String>,
    pub(super) sha256: Option<String>,
    pub(super) algorithm: Option<String>,
}

impl ChecksumRequest {
    pub(super) fn hasher(&self) -> ServerResult<s3s::checksum::ChecksumHasher> {
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
    pub(super) fn add_trailers(
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
    pub(super) fn verify(&self, got: &s3s::dto::Checksum) -> ServerResult<Checksums> {
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
pub(super) fn check_body_complete(headers: &http::HeaderMap, got: u64) -> ServerResult<()> {
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

pub(super) fn verify_content_md5(content_md5: Option<&str>, md5: &[u8; 16]) -> ServerResult<()> {
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

/// Checks a buffered (small, non-streaming) request body against its `Content-MD5` and
/// `x-amz-checksum-*` headers; `require` demands one of them (DeleteObjects, as S3 does).
pub fn verify_small_body(
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
