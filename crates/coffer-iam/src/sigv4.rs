//! AWS Signature Version 4 verification for the KMS API (header-signed requests only), and
//! the re-signing of an S3 request whose signed `Range` header the front service normalises
//! ([`resign_s3`]).
//!
//! s3s verifies S3 requests itself but refuses a credential scope whose service is not `s3`,
//! so KMS requests (`X-Amz-Target: TrentService.*`) are verified here. The canonical request
//! and the signature come from the `aws-sigv4` crate (the signer the AWS Rust SDK uses): the
//! request is re-signed with exactly the headers the client listed in `SignedHeaders`, the
//! client's timestamp and the secret found for its access key, and the two signatures are
//! compared in constant time. This module checks what the signer leaves to the receiver: the
//! credential scope (`<date>/us-east-1/kms/aws4_request`), the clock skew (15 minutes), that
//! `host` and every `x-amz-*` header are signed, and the payload hash.
//!
//! A [`Verified`] can only be made here, so a handler holding one knows the signature was
//! checked (STYLE.md §5).

use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use aws_sigv4::http_request::{
    sign, PercentEncodingMode, SignableBody, SignableRequest, SigningParams, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;

use crate::principal::{IdentityLookup, Principal};

/// The only region Coffer serves.
pub const REGION: &str = "us-east-1";
/// Largest accepted difference between the request's time and the server's.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// A request whose SigV4 signature was verified; constructible only in this module.
#[derive(Debug)]
pub struct Verified {
    principal: Principal,
}

impl Verified {
    /// The identity that signed the request.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
}

/// Why a signature was refused, named after AWS's exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigV4Error {
    /// No `Authorization` header.
    MissingAuthenticationToken,
    /// The header is not `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`, or a
    /// required part (`X-Amz-Date`) is missing or garbled.
    IncompleteSignature(String),
    /// The access key names no identity.
    UnrecognizedClient,
    /// Wrong scope, expired, unsigned headers, or the signature does not match.
    InvalidSignature(String),
}

impl SigV4Error {
    /// AWS's exception name (`__type`).
    pub fn aws_code(&self) -> &'static str {
        match self {
            SigV4Error::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            SigV4Error::IncompleteSignature(_) => "IncompleteSignatureException",
            SigV4Error::UnrecognizedClient => "UnrecognizedClientException",
            SigV4Error::InvalidSignature(_) => "InvalidSignatureException",
        }
    }

    /// A message safe to return to the client.
    pub fn message(&self) -> String {
        match self {
            SigV4Error::MissingAuthenticationToken => {
                "Request is missing Authentication Token".into()
            }
            SigV4Error::IncompleteSignature(m) | SigV4Error::InvalidSignature(m) => m.clone(),
            SigV4Error::UnrecognizedClient => {
                "The security token included in the request is invalid.".into()
            }
        }
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
struct AuthorizationHeader<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn incomplete(msg: &str) -> SigV4Error {
    SigV4Error::IncompleteSignature(msg.to_owned())
}

fn parse_authorization(value: &str) -> Result<AuthorizationHeader<'_>, SigV4Error> {
    let auth = crate::request::Authorization::parse(value)
        .filter(|a| a.algorithm == "AWS4-HMAC-SHA256")
        .ok_or_else(|| {
            incomplete("Authorization header requires the AWS4-HMAC-SHA256 algorithm")
        })?;
    if auth.unknown_component {
        return Err(incomplete("Authorization header has an unknown component"));
    }
    let (Some(credential), Some(signed), Some(signature)) =
        (auth.credential, auth.signed_headers, auth.signature)
    else {
        return Err(incomplete(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters",
        ));
    };
    let Some(crate::request::CredentialScope {
        access_key,
        date,
        region,
        service,
        terminator,
    }) = crate::request::CredentialScope::parse(credential)
    else {
        return Err(incomplete(
            "Credential must have the form <access key>/<date>/<region>/<service>/aws4_request",
        ));
    };
    if access_key.is_empty() {
        return Err(incomplete("Credential has an empty access key"));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(incomplete("Signature must be 64 hexadecimal characters"));
    }
    let signed_headers: Vec<&str> = signed.split(';').collect();
    if signed_headers.iter().any(|h| {
        h.is_empty()
            || h.bytes()
                .any(|b| b.is_ascii_uppercase() || !(b.is_ascii_graphic()))
    }) {
        return Err(incomplete(
            "SignedHeaders must be lower-case header names separated by ';'",
        ));
    }
    Ok(AuthorizationHeader {
        access_key,
        date,
        region,
        service,
        terminator,
        signed_headers,
        signature,
    })
}

/// Parses `YYYYMMDDTHHMMSSZ` (the `X-Amz-Date` format).
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = i32::try_from(digits(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(digits(4..6)?).ok()?).ok()?;
    let day = u8::try_from(digits(6..8)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let t = time::Time::from_hms(
        u8::try_from(digits(9..11)?).ok()?,
        u8::try_from(digits(11..13)?).ok()?,
        u8::try_from(digits(13..15)?).ok()?,
    )
    .ok()?;
    let unix = time::PrimitiveDateTime::new(date, t)
        .assume_utc()
        .unix_timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).ok()?))
}

/// What the signed payload is.
enum Payload<'a> {
    /// A body read in full: its SHA-256 is computed here, and a client's
    /// `x-amz-content-sha256` must agree with it (the KMS API).
    Body(&'a [u8]),
    /// A request that has not been read: the signature covers the `x-amz-content-sha256`
    /// value as sent (S3: the body's hash, `UNSIGNED-PAYLOAD`, …), which s3s checks later.
    Claimed,
}

/// A verified header signature, with what re-signing needs.
struct Checked<'h> {
    principal: Principal,
    secret: zeroize::Zeroizing<String>,
    auth: AuthorizationHeader<'h>,
    time: SystemTime,
    payload_hash: String,
}

/// Verifies a header-signed SigV4 request for `service` whose body has been read in full.
/// `uri` is the request target as received (`/` for KMS). `now` is the server's time.
pub fn verify(
    method: &str,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    body: &[u8],
    service: &str,
    identities: &dyn IdentityLookup,
    now: SystemTime,
) -> Result<Verified, SigV4Error> {
    check(
        method,
        uri,
        headers,
        Payload::Body(body),
        service,
        identities,
        now,
    )
    .map(|c| Verified {
        principal: c.principal,
    })
}

/// Re-signs a header-signed S3 request after the front service changed one signed header
/// (`value` `None`: removed it), so s3s, which verifies every S3 request itself, accepts the
/// changed request. The original signature is verified first, with the same rules as
/// [`verify`], under the signer's own secret and timestamp; the new `Authorization` header
/// lists the same signed headers (less a removed one). Nothing changes if verification
/// fails: s3s then refuses the original request as it would have.
///
/// Used only for a `Range` unit that RFC 9110 §14.2 tells the server to ignore or read
/// case-insensitively (lib.rs); it never widens what the signer authorised.
pub fn resign_s3(
    method: &str,
    uri: &http::Uri,
    headers: &mut http::HeaderMap,
    name: &http::HeaderName,
    value: Option<http::HeaderValue>,
    identities: &dyn IdentityLookup,
    now: SystemTime,
) -> Result<(), SigV4Error> {
    let (authorization, changed) = {
        let checked = check(
            method,
            uri,
            headers,
            Payload::Claimed,
            "s3",
            identities,
            now,
        )?;
        let mut changed = headers.clone();
        match &value {
            Some(v) => {
                changed.insert(name.clone(), v.clone());
            }
            None => {
                changed.remove(name);
            }
        }
        let signed: Vec<&str> = checked
            .auth
            .signed_headers
            .iter()
            .copied()
            .filter(|h| value.is_some() || *h != name.as_str())
            .collect();
        let pairs = signed_pairs(uri, &changed, &signed)?;
        let (listed, signature) = signature(
            method,
            uri,
            pairs,
            checked.payload_hash.clone(),
            &checked.auth,
            &checked.secret,
            checked.time,
        )?;
        if listed != signed.join(";") {
            return Err(incomplete("the request cannot be canonicalised"));
        }
        let a = &checked.auth;
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}/{}/{}/{}, SignedHeaders={listed}, Signature={signature}",
            a.access_key, a.date, a.region, a.service, a.terminator
        );
        (authorization, changed)
    };
    let authorization = http::HeaderValue::from_str(&authorization)
        .map_err(|_| incomplete("the request cannot be canonicalised"))?;
    *headers = changed;
    headers.insert(http::header::AUTHORIZATION, authorization);
    Ok(())
}

/// Exactly the signed headers, with their received values. HTTP/2 carries the host in the
/// `:authority` pseudo-header, which hyper puts in the URI.
fn signed_pairs<'h>(
    uri: &'h http::Uri,
    headers: &'h http::HeaderMap,
    signed_headers: &[&'h str],
) -> Result<Vec<(&'h str, &'h str)>, SigV4Error> {
    let authority = uri.authority().map(|a| a.as_str());
    let mut signed: Vec<(&str, &str)> = Vec::new();
    for name in signed_headers {
        let mut any = false;
        for v in headers.get_all(*name) {
            let v = v
                .to_str()
                .map_err(|_| incomplete("a signed header is not ASCII"))?;
            signed.push((name, v));
            any = true;
        }
        if !any {
            match (*name, authority) {
                ("host", Some(a)) => signed.push(("host", a)),
                _ => {
                    return Err(SigV4Error::InvalidSignature(format!(
                        "The request signature we calculated does not match the signature you provided: signed header '{name}' is missing"
                    )))
                }
            }
        }
    }
    Ok(signed)
}

/// The signature aws-sigv4 computes for these headers under `auth`'s scope, and the signed
/// header list it put in its own `Authorization` header.
fn signature(
    method: &str,
    uri: &http::Uri,
    pairs: Vec<(&str, &str)>,
    payload_hash: String,
    auth: &AuthorizationHeader<'_>,
    secret: &str,
    time: SystemTime,
) -> Result<(String, String), SigV4Error> {
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = SignableRequest::new(
        method,
        path_and_query,
        pairs.into_iter(),
        SignableBody::Precomputed(payload_hash),
    )
    .map_err(|_| incomplete("the request cannot be canonicalised"))?;
    let identity = aws_credential_types::Credentials::new(
        auth.access_key,
        secret,
        None,
        None,
        "coffer-identity",
    )
    .into();
    let mut settings = SigningSettings::default();
    // Verify exactly what the client signed: no header is dropped from its list.
    settings.excluded_headers = Some(Vec::new());
    if auth.service == "s3" {
        // S3 signs the path as sent: neither normalised nor encoded a second time.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    let params: SigningParams<'_> = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|_| incomplete("the request cannot be canonicalised"))?
        .into();
    let expected =
        sign(request, &params).map_err(|_| incomplete("the request cannot be canonicalised"))?;
    let (instructions, signature) = expected.into_parts();
    let listed = instructions
        .headers()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| v.split("SignedHeaders=").nth(1))
        .and_then(|v| v.split(',').next())
        .map(str::to_owned)
        .unwrap_or_default();
    Ok((listed, signature))
}

fn check<'h>(
    method: &str,
    uri: &http::Uri,
    headers: &'h http::HeaderMap,
    payload: Payload<'_>,
    service: &str,
    identities: &dyn IdentityLookup,
    now: SystemTime,
) -> Result<Checked<'h>, SigV4Error> {
    let Some(auth) = headers.get(http::header::AUTHORIZATION) else {
        return Err(SigV4Error::MissingAuthenticationToken);
    };
    let auth = auth
        .to_str()
        .map_err(|_| incomplete("Authorization header is not ASCII"))?;
    let auth = parse_authorization(auth)?;
    if auth.terminator != "aws4_request" {
        return Err(SigV4Error::InvalidSignature(
            "Credential should be scoped with a valid terminator: 'aws4_request'".into(),
        ));
    }
    if auth.service != service {
        return Err(SigV4Error::InvalidSignature(format!(
            "Credential should be scoped to correct service: '{service}'."
        )));
    }
    if auth.region != REGION {
        return Err(SigV4Error::InvalidSignature(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            auth.region
        )));
    }
    let amz_date = headers
        .get("x-amz-date")
        .ok_or_else(|| incomplete("Authorization requires the X-Amz-Date header"))?
        .to_str()
        .map_err(|_| incomplete("X-Amz-Date is not ASCII"))?;
    let time = parse_amz_date(amz_date)
        .ok_or_else(|| incomplete("X-Amz-Date must be YYYYMMDDTHHMMSSZ"))?;
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(SigV4Error::InvalidSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            auth.date,
            amz_date.get(..8).unwrap_or_default()
        )));
    }
    let skew = match now.duration_since(time) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > MAX_SKEW {
        return Err(SigV4Error::InvalidSignature(format!(
            "Signature expired: {amz_date} is now earlier or later than the server's time by more than 15 minutes."
        )));
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(SigV4Error::InvalidSignature(
            "The host header must be signed".into(),
        ));
    }
    let mut unsigned: Vec<&str> = headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("x-amz-") && !auth.signed_headers.contains(k))
        .collect();
    unsigned.dedup();
    if !unsigned.is_empty() {
        return Err(SigV4Error::InvalidSignature(format!(
            "There were headers present in the request which were not signed: {}",
            unsigned.join(", ")
        )));
    }
    let claimed = headers.get("x-amz-content-sha256");
    let payload_hash = match payload {
        // The payload hash: SHA-256 of the body we received; a client that sent
        // x-amz-content-sha256 must have sent that same hash.
        Payload::Body(body) => {
            let body_hash = hex::encode(digest::digest(&digest::SHA256, body).as_ref());
            if claimed.is_some_and(|c| c.as_bytes() != body_hash.as_bytes()) {
                return Err(SigV4Error::InvalidSignature(
                    "The provided 'x-amz-content-sha256' header does not match what was computed."
                        .into(),
                ));
            }
            body_hash
        }
        // S3 requires the header, and signs it.
        Payload::Claimed => claimed
            .filter(|_| auth.signed_headers.contains(&"x-amz-content-sha256"))
            .and_then(|c| c.to_str().ok())
            .ok_or_else(|| incomplete("x-amz-content-sha256 must be sent and signed"))?
            .to_owned(),
    };
    let pairs = signed_pairs(uri, headers, &auth.signed_headers)?;
    let Some((secret, principal)) = identities.lookup(auth.access_key) else {
        return Err(SigV4Error::UnrecognizedClient);
    };
    let (listed, signature) = signature(
        method,
        uri,
        pairs,
        payload_hash.clone(),
        &auth,
        &secret,
        time,
    )?;
    // The signer lists the signed headers itself; they must be the client's list.
    let ours_match = listed == auth.signed_headers.join(";");
    let signature_match = aws_lc_rs::constant_time::verify_slices_are_equal(
        signature.as_bytes(),
        auth.signature.to_ascii_lowercase().as_bytes(),
    )
    .is_ok();
    if !(ours_match && signature_match) {
        return Err(SigV4Error::InvalidSignature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
                .into(),
        ));
    }
    Ok(Checked {
        principal,
        secret,
        auth,
        time,
        payload_hash,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use zeroize::Zeroizing;

    struct OneKey;
    impl IdentityLookup for OneKey {
        fn lookup(&self, access_key: &str) -> Option<(Zeroizing<String>, Principal)> {
            (access_key == "AKIDEXAMPLE").then(|| {
                (
                    Zeroizing::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned()),
                    Principal::authenticated("alice", access_key, false),
                )
            })
        }
        fn allows_unbound(&self, _: &Principal, _: &str, _: bool) -> bool {
            false
        }
    }

    const BODY: &[u8] = br#"{"KeyId":"alias/a","Plaintext":"aGk="}"#;

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// A request signed by aws-sigv4 as the AWS SDK signs it.
    fn signed(
        region: &str,
        service: &str,
        extra: &[(&str, &str)],
        time: SystemTime,
    ) -> (http::Uri, http::HeaderMap) {
        let mut req = http::Request::builder()
            .method("POST")
            .uri("https://localhost:9443/")
            .header("host", "localhost:9443")
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "TrentService.Encrypt");
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let mut req = req.body(BODY.to_vec()).unwrap();
        let settings = SigningSettings::default();
        sdk_sign(
            &mut req,
            region,
            service,
            time,
            settings,
            SignableBody::Bytes(BODY),
        );
        let uri: http::Uri = "/".parse().unwrap();
        (uri, req.headers().clone())
    }

    /// Signs `req` in place with aws-sigv4, as the AWS SDK does, under the test key.
    fn sdk_sign<B>(
        req: &mut http::Request<B>,
        region: &str,
        service: &str,
        time: SystemTime,
        settings: SigningSettings,
        body: SignableBody<'_>,
    ) {
        let identity = aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        )
        .into();
        let params: SigningParams<'_> = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(time)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let uri = req.uri().to_string();
        let signable = SignableRequest::new(
            req.method().as_str(),
            &uri,
            req.headers()
                .iter()
                .map(|(k, v)| (k.as_str(), v.to_str().unwrap())),
            body,
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        instructions.apply_to_request_http1x(req);
    }

    fn check(
        headers: &http::HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, SigV4Error> {
        verify(
            "POST",
            &"/".parse().unwrap(),
            headers,
            body,
            "kms",
            &OneKey,
            now,
        )
    }

    #[test]
    fn a_valid_signature_names_the_principal() {
        let (_, headers) = signed(REGION, "kms", &[], at());
        let v = check(&headers, BODY, at() + Duration::from_secs(60)).unwrap();
        assert_eq!(v.principal().arn(), "arn:aws:iam::000000000000:user/alice");
    }

    #[test]
    fn a_signed_content_hash_must_match_the_body() {
        let hash = hex::encode(digest::digest(&digest::SHA256, BODY).as_ref());
        let (_, headers) = signed(REGION, "kms", &[("x-amz-content-sha256", &hash)], at());
        assert!(check(&headers, BODY, at()).is_ok());
        let (_, headers) = signed(
            REGION,
            "kms",
            &[("x-amz-content-sha256", &"0".repeat(64))],
            at(),
        );
        assert_eq!(
            check(&headers, BODY, at()).unwrap_err().aws_code(),
            "InvalidSignatureException"
        );
    }

    #[test]
    fn a_tampered_body_fails() {
        let (_, headers) = signed(REGION, "kms", &[], at());
        let err = check(&headers, br#"{"KeyId":"alias/b","Plaintext":"aGk="}"#, at()).unwrap_err();
        assert_eq!(err.aws_code(), "InvalidSignatureException");
    }

    #[test]
    fn a_tampered_header_fails() {
        let (_, mut headers) = signed(REGION, "kms", &[], at());
        headers.insert("x-amz-target", "TrentService.Decrypt".parse().unwrap());
        let err = check(&headers, BODY, at()).unwrap_err();
        assert_eq!(err.aws_code(), "InvalidSignatureException");
        assert!(
            err.message().contains("does not match"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn the_wrong_service_or_region_fails() {
        let (_, headers) = signed(REGION, "s3", &[], at());
        let err = check(&headers, BODY, at()).unwrap_err();
        assert_eq!(err.aws_code(), "InvalidSignatureException");
        assert!(err.message().contains("service"), "{}", err.message());
        let (_, headers) = signed("eu-west-1", "kms", &[], at());
        let err = check(&headers, BODY, at()).unwrap_err();
        assert_eq!(err.aws_code(), "InvalidSignatureException");
        assert!(err.message().contains("region"), "{}", err.message());
    }

    #[test]
    fn an_old_or_future_signature_is_expired() {
        let (_, headers) = signed(REGION, "kms", &[], at());
        for now in [
            at() + Duration::from_secs(16 * 60),
            at() - Duration::from_secs(16 * 60),
        ] {
            let err = check(&headers, BODY, now).unwrap_err();
            assert_eq!(err.aws_code(), "InvalidSignatureException");
            assert!(
                err.message().starts_with("Signature expired"),
                "{}",
                err.message()
            );
        }
        assert!(check(&headers, BODY, at() + Duration::from_secs(14 * 60)).is_ok());
    }

    #[test]
    fn an_unsigned_amz_header_fails() {
        let (_, mut headers) = signed(REGION, "kms", &[], at());
        headers.insert("x-amz-meta-extra", "1".parse().unwrap());
        let err = check(&headers, BODY, at()).unwrap_err();
        assert_eq!(err.aws_code(), "InvalidSignatureException");
        assert!(
            err.message().contains("x-amz-meta-extra"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn missing_garbled_and_unknown_credentials() {
        let (_, mut headers) = signed(REGION, "kms", &[], at());
        let good = headers.get("authorization").unwrap().clone();
        headers.remove("authorization");
        assert_eq!(
            check(&headers, BODY, at()).unwrap_err(),
            SigV4Error::MissingAuthenticationToken
        );
        for bad in [
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/kms/aws4_request",
            "Basic dXNlcjpwYXNz",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/kms/aws4_request, SignedHeaders=host, Signature=00",
        ] {
            headers.insert("authorization", bad.parse().unwrap());
            assert_eq!(
                check(&headers, BODY, at()).unwrap_err().aws_code(),
                "IncompleteSignatureException",
                "{bad}"
            );
        }
        let other = good.to_str().unwrap().replace("AKIDEXAMPLE", "AKIDOTHER");
        headers.insert("authorization", other.parse().unwrap());
        assert_eq!(
            check(&headers, BODY, at()).unwrap_err(),
            SigV4Error::UnrecognizedClient
        );
    }

    #[test]
    fn amz_dates_parse_strictly() {
        assert_eq!(
            parse_amz_date("20231114T221320Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        for bad in [
            "20231114T221320",
            "2023-11-14T22:13:20Z",
            "20231314T221320Z",
            "2023111xT221320Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    /// An S3 GET signed by aws-sigv4 as the AWS SDK for S3 signs it (path as sent, the
    /// payload hash in `x-amz-content-sha256`).
    fn s3_get(range: Option<&str>, time: SystemTime) -> http::HeaderMap {
        let uri = "https://localhost:9443/bkt/a%20b/c?versionId=x%2By";
        let mut req = http::Request::builder()
            .method("GET")
            .uri(uri)
            .header("host", "localhost:9443")
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
        if let Some(r) = range {
            req = req.header("range", r);
        }
        let mut req = req.body(()).unwrap();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        sdk_sign(
            &mut req,
            REGION,
            "s3",
            time,
            settings,
            SignableBody::UnsignedPayload,
        );
        req.headers().clone()
    }

    fn resign(headers: &mut http::HeaderMap, value: Option<&str>) -> Result<(), SigV4Error> {
        resign_s3(
            "GET",
            &"/bkt/a%20b/c?versionId=x%2By".parse().unwrap(),
            headers,
            &http::header::RANGE,
            value.map(|v| v.parse().unwrap()),
            &OneKey,
            at() + Duration::from_secs(5),
        )
    }

    #[test]
    fn a_resigned_request_is_what_the_sdk_signs_for_the_changed_request() {
        // Dropping an unknown range unit: the SDK's signature of the request without Range.
        let mut headers = s3_get(Some("items=0-1"), at());
        resign(&mut headers, None).unwrap();
        assert_eq!(headers, s3_get(None, at()));
        // Lower-casing the bytes unit: the SDK's signature of `bytes=0-1`.
        let mut headers = s3_get(Some("BYTES=0-1"), at());
        resign(&mut headers, Some("bytes=0-1")).unwrap();
        assert_eq!(headers, s3_get(Some("bytes=0-1"), at()));
        // And s3s's rules would verify it: it checks here too, as an S3 request.
        let uri: http::Uri = "/bkt/a%20b/c?versionId=x%2By".parse().unwrap();
        let c = super::check("GET", &uri, &headers, Payload::Claimed, "s3", &OneKey, at());
        assert_eq!(c.unwrap().principal.name(), "alice");
    }

    #[test]
    fn nothing_is_resigned_without_a_valid_original_signature() {
        type Tamper = fn(&mut http::HeaderMap);
        let cases: [(&str, Tamper); 5] = [
            ("range changed after signing", |h| {
                h.insert("range", "items=0-9".parse().unwrap());
            }),
            ("payload hash changed", |h| {
                h.insert("x-amz-content-sha256", "e3b0".parse().unwrap());
            }),
            ("signature altered", |h| {
                let a = h["authorization"].to_str().unwrap();
                let last = a.chars().last().unwrap();
                let swapped = if last == '0' { '1' } else { '0' };
                let a = format!("{}{swapped}", &a[..a.len() - 1]);
                h.insert("authorization", a.parse().unwrap());
            }),
            ("unknown access key", |h| {
                let a = h["authorization"]
                    .to_str()
                    .unwrap()
                    .replace("AKIDEXAMPLE", "AKIDX");
                h.insert("authorization", a.parse().unwrap());
            }),
            ("unsigned x-amz header added", |h| {
                h.insert("x-amz-meta-extra", "1".parse().unwrap());
            }),
        ];
        for (what, tamper) in cases {
            let mut headers = s3_get(Some("items=0-1"), at());
            tamper(&mut headers);
            let before = headers.clone();
            assert!(resign(&mut headers, None).is_err(), "{what}");
            assert_eq!(headers, before, "{what}: headers changed");
        }
        // An expired signature is not renewed either.
        let mut headers = s3_get(Some("items=0-1"), at() - Duration::from_secs(3600));
        let before = headers.clone();
        assert!(resign(&mut headers, None).is_err());
        assert_eq!(headers, before);
        // A KMS-scoped signature is not an S3 one.
        let (_, mut headers) = signed(REGION, "kms", &[("range", "items=0-1")], at());
        assert!(resign(&mut headers, None).is_err());
    }
}
