//! Server-side encryption: which key protects each data key, and the S3 headers that choose
//! it (SSE-S3, SSE-KMS, SSE-C).
//!
//! Every blob (a whole object or one multipart part) gets a fresh 256-bit data key (DEK),
//! stored only wrapped in the blob's header:
//! - SSE-S3: wrapped by the service key (derived from the KMS root key), kind `Service`;
//! - SSE-KMS: a KMS `GenerateDataKey` under the CMK, bound to the S3 encryption context
//!   (`aws:s3:arn` plus the caller's context), kind `Kms`;
//! - SSE-C: wrapped by HKDF(customer key), kind `CustomerProvided`, whose key id is a keyed
//!   fingerprint (HMAC-SHA256 under a root-derived key) of the customer key. The customer key
//!   is never stored; the fingerprint recognises it on later requests.
//!
//! The payload's C2SP context binds bucket, key, version (or upload id) and part number, so a
//! blob moved to another object or part fails to decrypt.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lc_rs::{hkdf, hmac};
use base64::Engine;
use coffer_format::{Context, KeyKind, KeyReference, SecretKey, WrappedKey};
use coffer_kms::{CallContext, KeyUse, Kms, Principal, MANAGED_OWNER, S3_VIA_SERVICE};
use md5::{Digest, Md5};
use s3s::S3ErrorCode;
use zeroize::Zeroizing;

use coffer_meta::{BucketEncryption, SseRecord};
use coffer_outcome::{ServerError, ServerResult};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The alias of the default SSE-KMS key, as on AWS.
pub const DEFAULT_KMS_ALIAS: &str = "alias/aws/s3";
const SSE_S3_KEY_ID: &str = "sse-s3";
const SSE_C_KEK_INFO: &[u8] = b"coffer-server/v1/sse-c-kek";

/// A customer-provided key from the SSE-C headers, checked against its MD5.
pub struct CustomerKey {
    key: SecretKey,
    /// Base64 MD5 of the key, as the client sent it (echoed in responses).
    pub key_md5: String,
}

/// What a write asked for, after validation.
pub enum SseChoice {
    S3,
    Kms {
        key: Option<String>,
        /// Base64 JSON object from `x-amz-server-side-encryption-context`.
        context: Option<String>,
    },
    C(CustomerKey),
}

/// Raw SSE headers of a write request.
#[derive(Default)]
pub struct SseHeaders<'a> {
    pub sse: Option<&'a str>,
    pub kms_key_id: Option<&'a str>,
    pub kms_context: Option<&'a str>,
    pub c_algorithm: Option<&'a str>,
    pub c_key: Option<&'a str>,
    pub c_key_md5: Option<&'a str>,
}

/// Parses the three SSE-C headers: none → None; all three and consistent → the key.
pub fn parse_customer_key(
    algorithm: Option<&str>,
    key: Option<&str>,
    key_md5: Option<&str>,
    secure: bool,
) -> ServerResult<Option<CustomerKey>> {
    if algorithm.is_none() && key.is_none() && key_md5.is_none() {
        return Ok(None);
    }
    if !secure {
        return Err(ServerError::invalid_request(
            "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection.",
        ));
    }
    let Some(algorithm) = algorithm else {
        return Err(ServerError::invalid_argument(
            "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm.",
        ));
    };
    if algorithm != "AES256" {
        return Err(ServerError::invalid_argument(
            "The encryption algorithm specified is not valid: only AES256 is supported.",
        ));
    }
    let (Some(key), Some(key_md5)) = (key, key_md5) else {
        return Err(ServerError::invalid_argument(
            "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key and its MD5.",
        ));
    };
    let raw = Zeroizing::new(B64.decode(key.trim()).map_err(|_| {
        ServerError::invalid_argument("The secret key was invalid for the specified algorithm.")
    })?);
    let key = SecretKey::from_slice(&raw).map_err(|_| {
        ServerError::invalid_argument("The secret key was invalid for the specified algorithm.")
    })?;
    let md5 = Md5::digest(key.expose());
    let given = B64.decode(key_md5.trim()).unwrap_or_default();
    if !coffer_format::secret::ct_eq(&md5, &given) {
        return Err(ServerError::invalid_argument(
            "The calculated MD5 hash of the key did not match the hash that was provided.",
        ));
    }
    Ok(Some(CustomerKey {
        key,
        key_md5: B64.encode(md5),
    }))
}

/// Validates a write's SSE headers and picks the key model (bucket default when none).
pub fn choose(
    h: &SseHeaders<'_>,
    bucket_default: Option<&BucketEncryption>,
    secure: bool,
) -> ServerResult<SseChoice> {
    let customer = parse_customer_key(h.c_algorithm, h.c_key, h.c_key_md5, secure)?;
    match (h.sse, customer) {
        (Some(_), Some(_)) => Err(ServerError::invalid_argument(
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
        )),
        (None, Some(c)) => {
            if h.kms_key_id.is_some() || h.kms_context.is_some() {
                return Err(ServerError::invalid_argument(
                    "Server Side Encryption with Customer provided key is incompatible with the encryption method specified",
                ));
            }
            Ok(SseChoice::C(c))
        }
        (Some("AES256"), None) => {
            if h.kms_key_id.is_some() || h.kms_context.is_some() {
                return Err(ServerError::invalid_argument(
                    "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
                ));
            }
            Ok(SseChoice::S3)
        }
        (Some("aws:kms"), None) => Ok(SseChoice::Kms {
            key: h.kms_key_id.map(str::to_owned),
            context: h.kms_context.map(str::to_owned),
        }),
        (Some(other), None) => Err(ServerError::invalid_argument(format!(
            "The encryption method specified is not supported: {other}"
        ))),
        (None, None) => {
            if h.kms_key_id.is_some() || h.kms_context.is_some() {
                return Err(ServerError::invalid_argument(
                    "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms",
                ));
            }
            Ok(match bucket_default {
                Some(d) if d.algorithm == "aws:kms" => SseChoice::Kms {
                    key: d.kms_key_id.clone(),
                    context: None,
                },
                _ => SseChoice::S3,
            })
        }
    }
}

/// The key material for one blob: its DEK and the wrapped form that goes in the header.
pub struct BlobKey {
    pub dek: SecretKey,
    pub wrapped: WrappedKey,
}

/// The C2SP context of one blob.
pub fn blob_context(bucket: &str, key: &str, version: &str, part: u32) -> ServerResult<Context> {
    Ok(Context::from_pairs([
        ("bucket", bucket.to_owned()),
        ("key", key.to_owned()),
        ("part", part.to_string()),
        ("version", version.to_owned()),
    ])?)
}

/// The object's ARN, S3's default KMS encryption context.
pub fn object_arn(bucket: &str, key: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{key}")
}

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

pub struct Keys {
    pub kms: Arc<Kms>,
    sse_s3: SecretKey,
    fingerprint: hmac::Key,
}

impl Keys {
    pub fn new(kms: Arc<Kms>) -> ServerResult<Keys> {
        let sse_s3 = kms.derive_subsystem_key("server/sse-s3-key/v1")?;
        let fp = kms.derive_subsystem_key("server/sse-c-fingerprint/v1")?;
        Ok(Keys {
            fingerprint: hmac::Key::new(hmac::HMAC_SHA256, fp.expose()),
            kms,
            sse_s3,
        })
    }

    /// The keyed fingerprint that recognises a customer key (hex, 128 bits).
    pub fn fingerprint(&self, c: &CustomerKey) -> String {
        let tag = hmac::sign(&self.fingerprint, c.key.expose());
        hex::encode(&tag.as_ref()[..16])
    }

    fn sse_c_kek(c: &CustomerKey) -> ServerResult<SecretKey> {
        let mut out = Zeroizing::new([0u8; 32]);
        hkdf::Salt::new(hkdf::HKDF_SHA256, SSE_C_KEK_INFO)
            .extract(c.key.expose())
            .expand(&[SSE_C_KEK_INFO], Len32)
            .and_then(|okm| okm.fill(&mut out[..]))
            .map_err(|_| ServerError::Internal("HKDF failed".into()))?;
        Ok(SecretKey::from_bytes(&mut out))
    }

    /// Resolves a write's choice into what is stored: for SSE-KMS the key's ARN (the
    /// AWS-managed `aws/s3` key when none is named) and the full encryption context, and
    /// the caller's `kms:GenerateDataKey` proof on that key (the key is resolved once, by
    /// the authorization).
    pub async fn resolve(
        &self,
        choice: &SseChoice,
        bucket: &str,
        key: &str,
        caller: &Principal,
        secure: bool,
    ) -> ServerResult<(SseRecord, Option<KeyUse>)> {
        Ok(match choice {
            SseChoice::S3 => (SseRecord::S3, None),
            SseChoice::C(c) => (
                SseRecord::C {
                    fingerprint: self.fingerprint(c),
                },
                None,
            ),
            SseChoice::Kms {
                key: key_id,
                context,
            } => {
                let id = match key_id.as_deref() {
                    Some(k) if !k.is_empty() => k.to_owned(),
                    _ => self
                        .kms
                        .ensure_managed_key(
                            DEFAULT_KMS_ALIAS,
                            MANAGED_OWNER,
                            "Default key that protects my S3 objects when no other key is defined",
                        )
                        .await?,
                };
                let mut ctx = match context {
                    Some(b64) => parse_kms_context(b64)?,
                    None => BTreeMap::new(),
                };
                ctx.entry("aws:s3:arn".to_owned())
                    .or_insert_with(|| object_arn(bucket, key));
                let proof = self
                    .authorize(caller, &id, "kms:GenerateDataKey", &ctx, secure)
                    .await?;
                if !proof.metadata().enabled {
                    return Err(coffer_kms::KmsError::Disabled(proof.key_arn().to_owned()).into());
                }
                let record = SseRecord::Kms {
                    key_arn: proof.key_arn().to_owned(),
                    context: ctx,
                };
                (record, Some(proof))
            }
        })
    }

    /// SSE-KMS uses the key on the caller's behalf: the caller needs `action` on the key
    /// (key policy or grant), decided by the KMS core with `kms:ViaService` = S3, as AWS
    /// does.
    pub async fn authorize(
        &self,
        caller: &Principal,
        key: &str,
        action: &str,
        context: &BTreeMap<String, String>,
        secure: bool,
    ) -> ServerResult<KeyUse> {
        let call = CallContext {
            encryption_context: Some(context),
            via_service: Some(S3_VIA_SERVICE),
            secure,
            grant_operations: &[],
        };
        Ok(self.kms.authorize(caller, key, action, &call).await?)
    }

    /// A fresh data key for one blob under `sse`; SSE-KMS needs the caller's
    /// `kms:GenerateDataKey` proof on the record's key.
    pub async fn new_blob_key(
        &self,
        sse: &SseRecord,
        customer: Option<&CustomerKey>,
        proof: Option<&KeyUse>,
        blob_ctx: &Context,
    ) -> ServerResult<BlobKey> {
        match sse {
            SseRecord::S3 => {
                let dek = SecretKey::generate()?;
                let wrapped = WrappedKey::wrap(
                    KeyReference::new(KeyKind::Service, SSE_S3_KEY_ID, 1)?,
                    &self.sse_s3,
                    dek.expose(),
                    blob_ctx,
                )?;
                Ok(BlobKey { dek, wrapped })
            }
            SseRecord::Kms { key_arn, context } => {
                let proof = kms_proof(proof, key_arn)?;
                let dk = self
                    .kms
                    .generate_data_key(proof, &to_context(context)?)
                    .await?;
                let wrapped = WrappedKey::decode(&dk.ciphertext_blob)?;
                Ok(BlobKey {
                    dek: dk.plaintext,
                    wrapped,
                })
            }
            SseRecord::C { fingerprint } => {
                let c = customer.ok_or_else(|| {
                    ServerError::invalid_request("The SSE-C key is required for this object.")
                })?;
                let fp = hex::decode(fingerprint)
                    .map_err(|_| ServerError::Internal("stored fingerprint is not hex".into()))?;
                let dek = SecretKey::generate()?;
                let wrapped = WrappedKey::wrap(
                    KeyReference::new(KeyKind::CustomerProvided, fp, 1)?,
                    &Self::sse_c_kek(c)?,
                    dek.expose(),
                    blob_ctx,
                )?;
                Ok(BlobKey { dek, wrapped })
            }
        }
    }

    /// Checks that a read presents what the object needs: the SSE-C key for SSE-C objects
    /// (and the right one), no SSE-C key otherwise.
    pub fn check_read_key(
        &self,
        sse: &SseRecord,
        customer: Option<&CustomerKey>,
    ) -> ServerResult<()> {
        match (sse, customer) {
            (SseRecord::C { fingerprint }, Some(c)) => {
                let fp = self.fingerprint(c);
                if coffer_format::secret::ct_eq(fp.as_bytes(), fingerprint.as_bytes()) {
                    Ok(())
                } else {
                    Err(ServerError::s3(S3ErrorCode::AccessDenied, "Access Denied"))
                }
            }
            (SseRecord::C { .. }, None) => Err(ServerError::invalid_request(
                "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.",
            )),
            (_, Some(_)) => Err(ServerError::invalid_request(
                "The encryption parameters are not applicable to this object.",
            )),
            (_, None) => Ok(()),
        }
    }

    /// Checks a multipart part request's SSE-C key against its upload (S3 answers
    /// `400 InvalidRequest` for a missing or different key here, not `403`).
    pub fn check_part_key(
        &self,
        sse: &SseRecord,
        customer: Option<&CustomerKey>,
    ) -> ServerResult<()> {
        match (sse, customer) {
            (SseRecord::C { .. }, None) => Err(ServerError::invalid_request(
                "The multipart upload initiate requested encryption. Subsequent part requests must include the appropriate encryption parameters.",
            )),
            (SseRecord::C { .. }, Some(_)) | (_, Some(_)) => {
                self.check_read_key(sse, customer).map_err(|_| {
                    ServerError::invalid_request(
                        "The provided encryption parameters did not match the ones used originally.",
                    )
                })
            }
            (_, None) => Ok(()),
        }
    }

    /// Unwraps a blob's DEK from its header's wrapped key; SSE-KMS needs the caller's
    /// `kms:Decrypt` proof on the record's key.
    pub async fn unwrap_dek(
        &self,
        sse: &SseRecord,
        customer: Option<&CustomerKey>,
        proof: Option<&KeyUse>,
        wrapped: &WrappedKey,
        blob_ctx: &Context,
    ) -> ServerResult<SecretKey> {
        let expect_kind = match sse {
            SseRecord::S3 => KeyKind::Service,
            SseRecord::Kms { .. } => KeyKind::Kms,
            SseRecord::C { .. } => KeyKind::CustomerProvided,
        };
        if wrapped.reference().kind != expect_kind {
            return Err(ServerError::Integrity(
                "the blob's key reference does not match the object's encryption".into(),
            ));
        }
        let bytes = match sse {
            SseRecord::S3 => wrapped.unwrap(&self.sse_s3, blob_ctx)?,
            SseRecord::Kms { key_arn, context } => {
                let proof = kms_proof(proof, key_arn)?;
                self.kms
                    .decrypt(proof, &wrapped.encode(), &to_context(context)?)
                    .await?
                    .plaintext
            }
            SseRecord::C { .. } => {
                let c = customer.ok_or_else(|| {
                    ServerError::invalid_request("The SSE-C key is required for this object.")
                })?;
                wrapped.unwrap(&Self::sse_c_kek(c)?, blob_ctx)?
            }
        };
        bytes
            .into_key()
            .map_err(|_| ServerError::Integrity("data key is not 32 bytes".into()))
    }
}

/// The proof an SSE-KMS blob operation needs: present, and for the object's key. Its
/// absence is a server defect (every SSE-KMS path authorizes first), so it fails closed.
fn kms_proof<'a>(proof: Option<&'a KeyUse>, key_arn: &str) -> ServerResult<&'a KeyUse> {
    match proof {
        Some(p) if p.key_arn() == key_arn => Ok(p),
        Some(p) => Err(ServerError::Internal(format!(
            "SSE-KMS proof is for {}, the object is under {key_arn}",
            p.key_arn()
        ))),
        None => Err(ServerError::Internal(format!(
            "SSE-KMS operation on {key_arn} without an authorization"
        ))),
    }
}

fn to_context(map: &BTreeMap<String, String>) -> ServerResult<Context> {
    Ok(Context::from_pairs(
        map.iter().map(|(k, v)| (k.clone(), v.clone())),
    )?)
}

/// Parses `x-amz-server-side-encryption-context`: base64 of a JSON object of strings.
pub fn parse_kms_context(b64: &str) -> ServerResult<BTreeMap<String, String>> {
    let bad = || {
        ServerError::invalid_argument(
            "The header 'x-amz-server-side-encryption-context' shall be Base64-encoded UTF-8 string holding JSON which represents a string-string map",
        )
    };
    let json = B64.decode(b64.trim()).map_err(|_| bad())?;
    let map: BTreeMap<String, String> = serde_json::from_slice(&json).map_err(|_| bad())?;
    Ok(map)
}

/// The base64 JSON form of an encryption context, as S3 returns it.
pub fn format_kms_context(map: &BTreeMap<String, String>) -> String {
    B64.encode(serde_json::to_vec(map).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_headers(key: &[u8; 32]) -> (String, String) {
        (B64.encode(key), B64.encode(Md5::digest(key)))
    }

    fn code(r: ServerResult<SseChoice>) -> S3ErrorCode {
        match r {
            Err(ServerError::S3(c, _)) => c,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn choice_follows_headers_then_bucket_default() {
        let none = SseHeaders::default();
        assert!(matches!(choose(&none, None, true), Ok(SseChoice::S3)));
        let kms_default = BucketEncryption {
            algorithm: "aws:kms".into(),
            kms_key_id: Some("alias/x".into()),
            bucket_key_enabled: false,
        };
        assert!(matches!(
            choose(&none, Some(&kms_default), true),
            Ok(SseChoice::Kms { key: Some(k), .. }) if k == "alias/x"
        ));
        let s3 = SseHeaders {
            sse: Some("AES256"),
            ..Default::default()
        };
        assert!(matches!(
            choose(&s3, Some(&kms_default), true),
            Ok(SseChoice::S3)
        ));
    }

    #[test]
    fn misuse_gets_aws_error_codes() {
        let (k, md5) = key_headers(&[7u8; 32]);
        let (_, wrong_md5) = key_headers(&[8u8; 32]);
        let ssec = |md5: &'static str| SseHeaders {
            c_algorithm: Some("AES256"),
            c_key: Some(Box::leak(k.clone().into_boxed_str())),
            c_key_md5: Some(md5),
            ..Default::default()
        };
        let md5: &'static str = Box::leak(md5.into_boxed_str());
        let wrong_md5: &'static str = Box::leak(wrong_md5.into_boxed_str());
        assert!(matches!(
            choose(&ssec(md5), None, true),
            Ok(SseChoice::C(_))
        ));
        assert_eq!(
            code(choose(&ssec(wrong_md5), None, true)),
            S3ErrorCode::InvalidArgument
        );
        // SSE-C over plain HTTP.
        assert_eq!(
            code(choose(&ssec(md5), None, false)),
            S3ErrorCode::InvalidRequest
        );
        // SSE-C together with aws:kms.
        let mut both = ssec(md5);
        both.sse = Some("aws:kms");
        assert_eq!(
            code(choose(&both, None, true)),
            S3ErrorCode::InvalidArgument
        );
        // A KMS key id without aws:kms.
        let stray = SseHeaders {
            sse: Some("AES256"),
            kms_key_id: Some("alias/x"),
            ..Default::default()
        };
        assert_eq!(
            code(choose(&stray, None, true)),
            S3ErrorCode::InvalidArgument
        );
        // Key without its MD5; a short key; an unknown algorithm.
        let partial = SseHeaders {
            c_algorithm: Some("AES256"),
            c_key: Some(Box::leak(k.clone().into_boxed_str())),
            ..Default::default()
        };
        assert_eq!(
            code(choose(&partial, None, true)),
            S3ErrorCode::InvalidArgument
        );
        let short = SseHeaders {
            c_algorithm: Some("AES256"),
            c_key: Some("AAAA"),
            c_key_md5: Some(md5),
            ..Default::default()
        };
        assert_eq!(
            code(choose(&short, None, true)),
            S3ErrorCode::InvalidArgument
        );
        let unknown = SseHeaders {
            sse: Some("aws:kms:dsse"),
            ..Default::default()
        };
        assert_eq!(
            code(choose(&unknown, None, true)),
            S3ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn kms_context_header_must_be_base64_json_strings() {
        let ok = B64.encode(br#"{"team":"blue"}"#);
        assert_eq!(parse_kms_context(&ok).unwrap()["team"], "blue");
        for bad in ["%%%", &B64.encode(b"[1,2]"), &B64.encode(br#"{"n":1}"#)] {
            assert!(parse_kms_context(bad).is_err(), "{bad}");
        }
    }
}
