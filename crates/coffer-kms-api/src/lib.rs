//! The KMS HTTP API: AWS KMS's JSON 1.1 protocol (`X-Amz-Target: TrentService.<Operation>`,
//! `Content-Type: application/x-amz-json-1.1`, SigV4 with service `kms`) on the S3 port.
//!
//! A request goes: buffer the body (≤ 64 KiB, idle timeout) → verify SigV4 ([`coffer_iam::sigv4`])
//! → decode the operation's JSON → [`Kms::authorize`] (resolves the key once, key policy
//! then grants, returns a [`KeyUse`]) → call [`coffer_kms::Kms`] with that proof → encode
//! the response. This file holds the DTOs and handlers only; the decision lives in
//! `coffer_kms::authz`. Every response carries a [`KmsAudit`] in
//! its `http::Extensions` for the audit trail.
//!
//! Authorization (docs/kms.md, "Authorization"): the creator of a key owns it and its default
//! key policy allows the owner `kms:*`; an explicit `Deny` in the key policy always wins; else
//! the key policy or a grant for the caller must allow the action. The root identity has no
//! implicit access to keys it does not own, and identity policies do not grant key use.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Buf;
use coffer_format::{Context, SecretBytes};
use coffer_kms::authz::{access_denied, check_lockout, default_key_policy, parse_key_policy};
use coffer_kms::{
    CallContext, GrantConstraints, GrantRecord, KeyMetadata, KeyUse, Kms, KmsError, Origin,
    WrappingKeySpec, MANAGED_OWNER,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use coffer_iam::principal::{IdentityLookup, Principal, ACCOUNT};
use coffer_iam::sigv4;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `X-Amz-Target` prefix of every KMS operation.
pub const TARGET_PREFIX: &str = "TrentService.";
/// Largest request body accepted (AWS KMS's request limit is far below; plaintexts ≤ 4 KiB).
pub const MAX_BODY: usize = 64 * 1024;
const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Grant operations Coffer's symmetric keys support (AWS's grant operations minus the
/// asymmetric and HMAC ones).
const GRANT_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
];

/// What the audit trail needs about one KMS request; put in the response's extensions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KmsAudit {
    /// `kms:<Operation>`.
    pub action: String,
    /// The key the operation was on, when one was resolved.
    pub key_id: Option<String>,
    /// The key version used (cryptographic operations).
    pub key_version: Option<u32>,
    /// The encryption context's keys (never its values).
    pub context_keys: Vec<String>,
    /// The AWS error code, when the request failed.
    pub error_code: Option<String>,
}

/// A KMS API failure: AWS's exception name, the HTTP status and a message safe to return.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct KmsApiError {
    pub code: &'static str,
    pub status: u16,
    pub message: String,
}

impl KmsApiError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        KmsApiError {
            code,
            status: 400,
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }

    fn unsupported(message: impl Into<String>) -> Self {
        Self::new("UnsupportedOperationException", message)
    }
}

impl From<KmsError> for KmsApiError {
    fn from(e: KmsError) -> Self {
        if e.is_client_error() {
            KmsApiError {
                code: e.aws_code(),
                status: e.http_status(),
                message: e.to_string(),
            }
        } else {
            // Internal detail goes to the log, never to the client (STYLE.md §8).
            tracing::error!("kms: {e}");
            KmsApiError {
                code: "KMSInternalException",
                status: 500,
                message: "An internal error occurred.".into(),
            }
        }
    }
}

impl From<&sigv4::SigV4Error> for KmsApiError {
    fn from(e: &sigv4::SigV4Error) -> Self {
        Self::new(e.aws_code(), e.message())
    }
}

/// The KMS API service. Cheap to share (`Arc` inside).
pub struct KmsApi {
    kms: Arc<Kms>,
    identities: Arc<dyn IdentityLookup>,
    secure: bool,
    body_idle_timeout: Duration,
}

impl std::fmt::Debug for KmsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsApi")
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

// ---- request decoding ----

/// A base64 blob field (`CiphertextBlob`, `ImportToken`, …).
#[derive(Debug, Clone, Default)]
struct Blob(Vec<u8>);

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s.as_bytes())
            .map(Blob)
            .map_err(|_| serde::de::Error::custom("a blob field is not valid base64"))
    }
}

/// A base64 field holding secret bytes (`Plaintext`); wiped on drop.
struct SecretBlob(SecretBytes);

impl<'de> Deserialize<'de> for SecretBlob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        let mut out = Zeroizing::new(Vec::with_capacity(s.len() * 3 / 4 + 3));
        B64.decode_vec(s.as_bytes(), &mut out)
            .map_err(|_| serde::de::Error::custom("Plaintext is not valid base64"))?;
        Ok(SecretBlob(SecretBytes::from_zeroizing(out)))
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    tag_key: String,
    tag_value: String,
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, KmsApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    // JSON text is UTF-8 (RFC 8259 §8.1). serde_json checks the strings it keeps, but skips
    // an unknown member's string without looking at its bytes: check the whole body first.
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(KmsApiError::new(
            "SerializationException",
            "The request body is not valid UTF-8",
        ));
    };
    serde_json::from_str(text).map_err(|e| {
        let text = e.to_string();
        if let Some(field) = text.strip_prefix("missing field `") {
            let field = field.split('`').next().unwrap_or_default();
            KmsApiError::validation(format!(
                "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
            ))
        } else {
            KmsApiError::new(
                "SerializationException",
                "The request body could not be read as JSON of the operation's shape",
            )
        }
    })
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn to_context(map: &BTreeMap<String, String>) -> Result<Context, KmsApiError> {
    Context::from_pairs(map.iter().map(|(k, v)| (k.clone(), v.clone())))
        .map_err(|e| KmsApiError::validation(format!("EncryptionContext: {e}")))
}

fn check_algorithm(algorithm: Option<&str>) -> Result<(), KmsApiError> {
    match algorithm {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some(other) => Err(KmsApiError::new(
            "InvalidKeyUsageException",
            format!("The key does not support the encryption algorithm {other}"),
        )),
    }
}

/// Splits `items` into a page: `marker` is the index to start at (opaque to clients).
fn paginate<T>(
    items: Vec<T>,
    limit: Option<i64>,
    marker: Option<&str>,
    default_limit: usize,
    max_limit: usize,
) -> Result<(Vec<T>, Option<String>), KmsApiError> {
    let limit = match limit {
        None => default_limit,
        Some(l) if l >= 1 && (l as usize) <= max_limit => l as usize,
        Some(_) => {
            return Err(KmsApiError::validation(format!(
                "Limit must be 1..={max_limit}"
            )))
        }
    };
    let start = match marker {
        None => 0,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|s| *s <= items.len())
            .ok_or_else(|| KmsApiError::new("InvalidMarkerException", "The marker is invalid"))?,
    };
    let end = start.saturating_add(limit).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((
        items.into_iter().skip(start).take(end - start).collect(),
        next,
    ))
}

fn page(mut body: Map<String, Value>, next: Option<String>) -> Value {
    body.insert("Truncated".into(), Value::Bool(next.is_some()));
    if let Some(next) = next {
        body.insert("NextMarker".into(), Value::String(next));
    }
    Value::Object(body)
}

fn key_metadata_json(m: &KeyMetadata, managed: bool) -> Value {
    let mut v = json!({
        "AWSAccountId": ACCOUNT,
        "KeyId": m.key_id,
        "Arn": m.arn,
        "CreationDate": epoch(m.creation_date),
        "Enabled": m.enabled,
        "Description": m.description,
        "KeyUsage": m.key_usage,
        "KeyState": m.key_state.as_str(),
        "Origin": m.origin.as_str(),
        "KeyManager": if managed { "AWS" } else { "CUSTOMER" },
        "CustomerMasterKeySpec": m.key_spec,
        "KeySpec": m.key_spec,
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": false,
    });
    if let Some(o) = v.as_object_mut() {
        if let Some(d) = m.deletion_date {
            o.insert("DeletionDate".into(), json!(epoch(d)));
        }
        if let Some(d) = m.valid_to {
            o.insert("ValidTo".into(), json!(epoch(d)));
        }
        if let Some(e) = m.expiration_model {
            o.insert("ExpirationModel".into(), json!(e));
        }
    }
    v
}

fn grant_json(g: &GrantRecord, key_arn: &str) -> Value {
    let mut v = json!({
        "KeyId": key_arn,
        "GrantId": g.grant_id,
        "CreationDate": g.created_at,
        "GranteePrincipal": g.grantee_principal,
        "IssuingAccount": format!("arn:aws:iam::{ACCOUNT}:root"),
        "Operations": g.operations,
    });
    if let Some(o) = v.as_object_mut() {
        if let Some(n) = &g.name {
            o.insert("Name".into(), json!(n));
        }
        if let Some(r) = &g.retiring_principal {
            o.insert("RetiringPrincipal".into(), json!(r));
        }
        if let Some(c) = &g.constraints {
            let mut cj = Map::new();
            if let Some(e) = &c.encryption_context_equals {
                cj.insert("EncryptionContextEquals".into(), json!(e));
            }
            if let Some(s) = &c.encryption_context_subset {
                cj.insert("EncryptionContextSubset".into(), json!(s));
            }
            o.insert("Constraints".into(), Value::Object(cj));
        }
    }
    v
}

fn token_hash(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

fn tags_map(tags: Vec<Tag>) -> BTreeMap<String, String> {
    tags.into_iter().map(|t| (t.tag_key, t.tag_value)).collect()
}

// ---- operation shapes (AWS KMS API reference, request syntax) ----

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyIdOnly {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateKeyRequest {
    policy: Option<String>,
    description: Option<String>,
    key_usage: Option<String>,
    key_spec: Option<String>,
    customer_master_key_spec: Option<String>,
    origin: Option<String>,
    custom_key_store_id: Option<String>,
    #[serde(default)]
    bypass_policy_lockout_safety_check: bool,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    multi_region: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeKeyRequest {
    key_id: String,
    #[serde(default)]
    grant_tokens: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListRequest {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasRequest {
    alias_name: String,
    target_key_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScheduleKeyDeletionRequest {
    key_id: String,
    pending_window_in_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnableKeyRotationRequest {
    key_id: String,
    rotation_period_in_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetParametersForImportRequest {
    key_id: String,
    wrapping_algorithm: String,
    wrapping_key_spec: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImportKeyMaterialRequest {
    key_id: String,
    import_token: Blob,
    encrypted_key_material: Blob,
    valid_to: Option<f64>,
    expiration_model: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptRequest {
    key_id: String,
    plaintext: SecretBlob,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
    #[serde(default)]
    grant_tokens: Vec<String>,
    encryption_algorithm: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest {
    ciphertext_blob: Blob,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
    #[serde(default)]
    grant_tokens: Vec<String>,
    key_id: Option<String>,
    encryption_algorithm: Option<String>,
    recipient: Option<Value>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReEncryptRequest {
    ciphertext_blob: Blob,
    #[serde(default)]
    source_encryption_context: BTreeMap<String, String>,
    source_key_id: Option<String>,
    destination_key_id: String,
    #[serde(default)]
    destination_encryption_context: BTreeMap<String, String>,
    source_encryption_algorithm: Option<String>,
    destination_encryption_algorithm: Option<String>,
    #[serde(default)]
    grant_tokens: Vec<String>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateDataKeyRequest {
    key_id: String,
    #[serde(default)]
    encryption_context: BTreeMap<String, String>,
    number_of_bytes: Option<i64>,
    key_spec: Option<String>,
    #[serde(default)]
    grant_tokens: Vec<String>,
    recipient: Option<Value>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateRandomRequest {
    number_of_bytes: Option<i64>,
    custom_key_store_id: Option<String>,
    recipient: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyPolicyRequest {
    key_id: String,
    policy_name: Option<String>,
    policy: Option<String>,
    #[serde(default)]
    bypass_policy_lockout_safety_check: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConstraintsShape {
    encryption_context_subset: Option<BTreeMap<String, String>>,
    encryption_context_equals: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateGrantRequest {
    key_id: String,
    grantee_principal: String,
    retiring_principal: Option<String>,
    operations: Vec<String>,
    constraints: Option<ConstraintsShape>,
    #[serde(default)]
    grant_tokens: Vec<String>,
    name: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListGrantsRequest {
    key_id: String,
    limit: Option<i64>,
    marker: Option<String>,
    grant_id: Option<String>,
    grantee_principal: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RetireGrantRequest {
    grant_token: Option<String>,
    key_id: Option<String>,
    grant_id: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RevokeGrantRequest {
    key_id: String,
    grant_id: String,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagResourceRequest {
    key_id: String,
    tags: Vec<Tag>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UntagResourceRequest {
    key_id: String,
    tag_keys: Vec<String>,
}

/// A successful operation's JSON body. `Zeroizing` because some carry plaintext.
type Reply = Result<Zeroizing<String>, KmsApiError>;

fn reply(v: Value) -> Reply {
    Ok(Zeroizing::new(v.to_string()))
}

fn dry_run() -> KmsApiError {
    KmsApiError {
        code: "DryRunOperationException",
        status: 412,
        message: "The request would have succeeded, but the DryRun option is set.".into(),
    }
}

impl KmsApi {
    pub fn new(
        kms: Arc<Kms>,
        identities: Arc<dyn IdentityLookup>,
        secure: bool,
        body_idle_timeout: Duration,
    ) -> Self {
        KmsApi {
            kms,
            identities,
            secure,
            body_idle_timeout,
        }
    }

    /// Whether a request is for this API (`POST` with `X-Amz-Target: TrentService.*`).
    pub fn is_kms_request<B>(req: &http::Request<B>) -> bool {
        req.method() == http::Method::POST
            && req
                .headers()
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with(TARGET_PREFIX))
    }

    /// Serves one request: reads the body, verifies the signature, runs the operation.
    pub async fn serve<B>(&self, req: http::Request<B>) -> http::Response<s3s::Body>
    where
        B: http_body::Body + Unpin,
        B::Error: std::fmt::Display,
    {
        let target = req
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let operation = target
            .strip_prefix(TARGET_PREFIX)
            .unwrap_or_default()
            .to_owned();
        let mut audit = KmsAudit {
            action: format!("kms:{operation}"),
            ..KmsAudit::default()
        };
        let (parts, body) = req.into_parts();
        let result = match self.read_body(&parts.headers, body).await {
            Err(e) => Err(e),
            Ok(body) => match sigv4::verify(
                parts.method.as_str(),
                &parts.uri,
                &parts.headers,
                &body,
                "kms",
                self.identities.as_ref(),
                SystemTime::now(),
            ) {
                Err(e) => Err(KmsApiError::from(&e)),
                Ok(verified) => {
                    let content_type_ok = parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with(JSON_CONTENT_TYPE));
                    if content_type_ok {
                        self.handle(verified.principal(), &operation, &body, &mut audit)
                            .await
                    } else {
                        Err(KmsApiError::new(
                            "SerializationException",
                            format!("Content-Type must be {JSON_CONTENT_TYPE}"),
                        ))
                    }
                }
            },
        };
        let (status, body) = match result {
            Ok(body) => (200, body),
            Err(e) => {
                audit.error_code = Some(e.code.to_owned());
                (
                    e.status,
                    Zeroizing::new(json!({"__type": e.code, "message": e.message}).to_string()),
                )
            }
        };
        let mut resp = http::Response::new(s3s::Body::from(body.as_str().to_owned()));
        *resp.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(JSON_CONTENT_TYPE),
        );
        if let Ok(id) = http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            resp.headers_mut().insert("x-amzn-requestid", id);
        }
        resp.extensions_mut().insert(audit);
        resp
    }

    async fn read_body<B>(
        &self,
        headers: &http::HeaderMap,
        mut body: B,
    ) -> Result<Zeroizing<Vec<u8>>, KmsApiError>
    where
        B: http_body::Body + Unpin,
        B::Error: std::fmt::Display,
    {
        let too_large = || KmsApiError {
            code: "ValidationException",
            status: 413,
            message: format!("Request entity too large: the limit is {MAX_BODY} bytes"),
        };
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let mut out = Zeroizing::new(Vec::new());
        loop {
            let frame = tokio::time::timeout(
                self.body_idle_timeout,
                futures::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)),
            )
            .await;
            match frame {
                Err(_) => {
                    return Err(KmsApiError::new(
                        "RequestTimeoutException",
                        "The request body was not received in time",
                    ))
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(KmsApiError::new(
                        "SerializationException",
                        format!("The request body could not be read: {e}"),
                    ))
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(mut data) = frame.into_data() {
                        if out.len() + data.remaining() > MAX_BODY {
                            return Err(too_large());
                        }
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            let n = chunk.len();
                            out.extend_from_slice(chunk);
                            data.advance(n);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Runs one operation for an authenticated principal. Public for tests and in-process
    /// callers; `serve` is the HTTP entry point.
    pub async fn handle(
        &self,
        principal: &Principal,
        operation: &str,
        body: &[u8],
        audit: &mut KmsAudit,
    ) -> Reply {
        let r = self.dispatch(principal, operation, body, audit).await;
        if let Err(e) = &r {
            audit.error_code = Some(e.code.to_owned());
        }
        r
    }

    async fn dispatch(
        &self,
        principal: &Principal,
        operation: &str,
        body: &[u8],
        audit: &mut KmsAudit,
    ) -> Reply {
        match operation {
            "CreateKey" => {
                self.handle_create_key(principal, decode(body)?, audit)
                    .await
            }
            "DescribeKey" => {
                self.handle_describe_key(principal, decode(body)?, audit)
                    .await
            }
            "ListKeys" => self.handle_list_keys(principal, decode(body)?).await,
            "CreateAlias" => {
                self.handle_create_alias(principal, decode(body)?, audit)
                    .await
            }
            "UpdateAlias" => {
                self.handle_update_alias(principal, decode(body)?, audit)
                    .await
            }
            "DeleteAlias" => {
                self.handle_delete_alias(principal, decode(body)?, audit)
                    .await
            }
            "ListAliases" => self.handle_list_aliases(principal, decode(body)?).await,
            "EnableKey"
            | "DisableKey"
            | "CancelKeyDeletion"
            | "DisableKeyRotation"
            | "RotateKeyOnDemand"
            | "DeleteImportedKeyMaterial"
            | "GetKeyRotationStatus" => {
                self.handle_key_admin(principal, operation, decode(body)?, audit)
                    .await
            }
            "ScheduleKeyDeletion" => {
                self.handle_schedule_key_deletion(principal, decode(body)?, audit)
                    .await
            }
            "EnableKeyRotation" => {
                self.handle_enable_key_rotation(principal, decode(body)?, audit)
                    .await
            }
            "ListKeyRotations" => {
                self.handle_list_key_rotations(principal, decode(body)?, audit)
                    .await
            }
            "GetParametersForImport" => {
                self.handle_get_parameters_for_import(principal, decode(body)?, audit)
                    .await
            }
            "ImportKeyMaterial" => {
                self.handle_import_key_material(principal, decode(body)?, audit)
                    .await
            }
            "Encrypt" => self.handle_encrypt(principal, decode(body)?, audit).await,
            "Decrypt" => self.handle_decrypt(principal, decode(body)?, audit).await,
            "ReEncrypt" => {
                self.handle_re_encrypt(principal, decode(body)?, audit)
                    .await
            }
            "GenerateDataKey" => {
                self.handle_generate_data_key(principal, decode(body)?, true, audit)
                    .await
            }
            "GenerateDataKeyWithoutPlaintext" => {
                self.handle_generate_data_key(principal, decode(body)?, false, audit)
                    .await
            }
            "GenerateRandom" => self.handle_generate_random(principal, decode(body)?).await,
            "GetKeyPolicy" => {
                self.handle_get_key_policy(principal, decode(body)?, audit)
                    .await
            }
            "PutKeyPolicy" => {
                self.handle_put_key_policy(principal, decode(body)?, audit)
                    .await
            }
            "CreateGrant" => {
                self.handle_create_grant(principal, decode(body)?, audit)
                    .await
            }
            "ListGrants" => {
                self.handle_list_grants(principal, decode(body)?, audit)
                    .await
            }
            "RetireGrant" => {
                self.handle_retire_grant(principal, decode(body)?, audit)
                    .await
            }
            "RevokeGrant" => {
                self.handle_revoke_grant(principal, decode(body)?, audit)
                    .await
            }
            "TagResource" => {
                self.handle_tag_resource(principal, decode(body)?, audit)
                    .await
            }
            "UntagResource" => {
                self.handle_untag_resource(principal, decode(body)?, audit)
                    .await
            }
            "ListResourceTags" => {
                self.handle_list_resource_tags(principal, decode(body)?, audit)
                    .await
            }
            _ => Err(KmsApiError::new(
                "UnknownOperationException",
                format!("Unknown operation {operation}"),
            )),
        }
    }

    // ---- authorization ----

    /// Authorization of operations on no particular key (CreateKey, ListKeys, ListAliases,
    /// GenerateRandom): the caller's identity policies decide (the root identity is allowed
    /// unless a policy denies; see docs/security.md).
    pub fn authorize_unbound(
        &self,
        principal: &Principal,
        action: &str,
    ) -> Result<(), KmsApiError> {
        if self
            .identities
            .allows_unbound(principal, action, self.secure)
        {
            return Ok(());
        }
        Err(KmsApiError::new(
            "AccessDeniedException",
            format!(
                "User: {} is not authorized to perform: {action} because no identity-based policy allows the {action} action",
                principal.arn()
            ),
        ))
    }

    /// Checks the grant tokens a request carries: each must name an existing grant.
    async fn check_grant_tokens(&self, tokens: &[String]) -> Result<(), KmsApiError> {
        if tokens.len() > 10 {
            return Err(KmsApiError::validation("at most 10 GrantTokens"));
        }
        for t in tokens {
            if self
                .kms
                .grant_by_token_hash(&token_hash(t))
                .await?
                .is_none()
            {
                return Err(KmsApiError::new(
                    "InvalidGrantTokenException",
                    "The grant token is not valid",
                ));
            }
        }
        Ok(())
    }

    /// Resolves `key`, authorizes `action` on it (`coffer_kms::authz`), and records the
    /// resolved key in `audit`, also when the decision is a denial.
    async fn authorize(
        &self,
        principal: &Principal,
        key: &str,
        action: &str,
        call: &CallContext<'_>,
        audit: &mut KmsAudit,
    ) -> Result<KeyUse, KmsApiError> {
        match self.kms.authorize(principal, key, action, call).await {
            Ok(proof) => {
                audit.key_id = Some(proof.key_id().to_owned());
                Ok(proof)
            }
            Err(e) => {
                if matches!(e, KmsError::AccessDenied(_)) {
                    audit.key_id = self.kms.describe_key(key).await.ok().map(|m| m.key_id);
                }
                Err(e.into())
            }
        }
    }

    fn call<'a>(&self, context: Option<&'a BTreeMap<String, String>>) -> CallContext<'a> {
        CallContext {
            encryption_context: context,
            via_service: None,
            secure: self.secure,
            grant_operations: &[],
        }
    }

    /// [`KmsApi::authorize`] for a change to a customer managed key (no encryption context):
    /// an AWS managed key (`aws/s3`) is refused with `UnsupportedOperationException`,
    /// `refusal` saying why.
    async fn authorize_change(
        &self,
        principal: &Principal,
        key: &str,
        action: &str,
        audit: &mut KmsAudit,
        refusal: &str,
    ) -> Result<KeyUse, KmsApiError> {
        let proof = self
            .authorize(principal, key, action, &self.call(None), audit)
            .await?;
        if Self::is_managed(proof.metadata()) {
            return Err(KmsApiError::unsupported(refusal));
        }
        Ok(proof)
    }

    fn is_managed(meta: &KeyMetadata) -> bool {
        meta.owner == MANAGED_OWNER
    }

    // ---- handlers ----

    async fn handle_create_key(
        &self,
        principal: &Principal,
        req: CreateKeyRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        self.authorize_unbound(principal, "kms:CreateKey")?;
        match req.key_usage.as_deref() {
            None | Some("ENCRYPT_DECRYPT") => {}
            Some(u) => {
                return Err(KmsApiError::unsupported(format!(
                    "KeyUsage {u} is not supported: only ENCRYPT_DECRYPT"
                )))
            }
        }
        for spec in [&req.key_spec, &req.customer_master_key_spec]
            .into_iter()
            .flatten()
        {
            if spec != "SYMMETRIC_DEFAULT" {
                return Err(KmsApiError::unsupported(format!(
                    "KeySpec {spec} is not supported: only SYMMETRIC_DEFAULT"
                )));
            }
        }
        let origin = match req.origin.as_deref() {
            None | Some("AWS_KMS") => Origin::Generated,
            Some("EXTERNAL") => Origin::External,
            Some(o) => {
                return Err(KmsApiError::unsupported(format!(
                    "Origin {o} is not supported: AWS_KMS or EXTERNAL"
                )))
            }
        };
        if req.multi_region {
            return Err(KmsApiError::unsupported(
                "multi-Region keys are not supported",
            ));
        }
        if req.custom_key_store_id.is_some() {
            return Err(KmsApiError::unsupported(
                "custom key stores are not supported",
            ));
        }
        let policy = match &req.policy {
            Some(p) => {
                let parsed = parse_key_policy(p)?;
                if !req.bypass_policy_lockout_safety_check {
                    check_lockout(&parsed, principal, self.secure)?;
                }
                p.clone()
            }
            None => default_key_policy(principal.arn()),
        };
        let meta = self
            .kms
            .create_key_with_origin(
                principal.arn(),
                req.description.as_deref().unwrap_or_default(),
                tags_map(req.tags),
                origin,
            )
            .await?;
        audit.key_id = Some(meta.key_id.clone());
        self.kms.put_key_policy(&meta.key_id, &policy).await?;
        reply(json!({ "KeyMetadata": key_metadata_json(&meta, false) }))
    }

    async fn handle_describe_key(
        &self,
        principal: &Principal,
        req: DescribeKeyRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        self.check_grant_tokens(&req.grant_tokens).await?;
        let proof = self
            .authorize(
                principal,
                &req.key_id,
                "kms:DescribeKey",
                &self.call(None),
                audit,
            )
            .await?;
        let meta = proof.metadata();
        reply(json!({ "KeyMetadata": key_metadata_json(meta, Self::is_managed(meta)) }))
    }

    async fn handle_list_keys(&self, principal: &Principal, req: ListRequest) -> Reply {
        self.authorize_unbound(principal, "kms:ListKeys")?;
        let keys = self.kms.list_keys().await?;
        let (keys, next) = paginate(keys, req.limit, req.marker.as_deref(), 100, 1000)?;
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| json!({"KeyId": k.key_id, "KeyArn": k.arn}))
            .collect();
        let mut body = Map::new();
        body.insert("Keys".into(), Value::Array(keys));
        reply(page(body, next))
    }

    async fn handle_create_alias(
        &self,
        principal: &Principal,
        req: AliasRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        let target = req
            .target_key_id
            .ok_or_else(|| KmsApiError::validation("TargetKeyId is required"))?;
        let proof = self
            .authorize_change(
                principal,
                &target,
                "kms:CreateAlias",
                audit,
                "an alias cannot point at an AWS managed key",
            )
            .await?;
        let meta = proof.metadata();
        self.kms.create_alias(&req.alias_name, &meta.key_id).await?;
        reply(json!({}))
    }

    async fn handle_update_alias(
        &self,
        principal: &Principal,
        req: AliasRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        let target = req
            .target_key_id
            .ok_or_else(|| KmsApiError::validation("TargetKeyId is required"))?;
        // AWS: kms:UpdateAlias on both the key the alias points at and the new one.
        let current = self.kms.resolve(&req.alias_name).await?;
        self.authorize(
            principal,
            &current,
            "kms:UpdateAlias",
            &self.call(None),
            audit,
        )
        .await?;
        let proof = self
            .authorize_change(
                principal,
                &target,
                "kms:UpdateAlias",
                audit,
                "an alias cannot point at an AWS managed key",
            )
            .await?;
        let meta = proof.metadata();
        self.kms.update_alias(&req.alias_name, &meta.key_id).await?;
        reply(json!({}))
    }

    async fn handle_delete_alias(
        &self,
        principal: &Principal,
        req: AliasRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        if req.alias_name.starts_with("alias/aws/") {
            return Err(KmsApiError::new(
                "NotFoundException",
                "AWS managed aliases cannot be deleted",
            ));
        }
        let current = self.kms.resolve(&req.alias_name).await?;
        self.authorize(
            principal,
            &current,
            "kms:DeleteAlias",
            &self.call(None),
            audit,
        )
        .await?;
        self.kms.delete_alias(&req.alias_name).await?;
        reply(json!({}))
    }

    async fn handle_list_aliases(&self, principal: &Principal, req: ListRequest) -> Reply {
        self.authorize_unbound(principal, "kms:ListAliases")?;
        let aliases = self.kms.list_aliases(req.key_id.as_deref()).await?;
        let (aliases, next) = paginate(aliases, req.limit, req.marker.as_deref(), 50, 100)?;
        let list: Vec<Value> = aliases
            .iter()
            .map(|(name, key)| {
                json!({
                    "AliasName": name,
                    "AliasArn": format!("arn:aws:kms:{}:{ACCOUNT}:{name}", sigv4::REGION),
                    "TargetKeyId": key,
                })
            })
            .collect();
        let mut body = Map::new();
        body.insert("Aliases".into(), Value::Array(list));
        reply(page(body, next))
    }

    /// Operations whose request is just a `KeyId`.
    async fn handle_key_admin(
        &self,
        principal: &Principal,
        operation: &str,
        req: KeyIdOnly,
        audit: &mut KmsAudit,
    ) -> Reply {
        let action = format!("kms:{operation}");
        let proof = self
            .authorize(principal, &req.key_id, &action, &self.call(None), audit)
            .await?;
        let meta = proof.metadata();
        let id = meta.key_id.as_str();
        match operation {
            "EnableKey" => self.kms.enable_key(id).await?,
            "DisableKey" => self.kms.disable_key(id).await?,
            "CancelKeyDeletion" => {
                self.kms.cancel_key_deletion(id).await?;
                return reply(json!({"KeyId": meta.arn}));
            }
            "DisableKeyRotation" => self.kms.disable_key_rotation(id).await?,
            "RotateKeyOnDemand" => {
                self.kms.rotate_key_on_demand(id).await?;
                return reply(json!({"KeyId": meta.key_id}));
            }
            "DeleteImportedKeyMaterial" => self.kms.delete_imported_key_material(id).await?,
            "GetKeyRotationStatus" => {
                let mut v = json!({
                    "KeyRotationEnabled": meta.rotation_enabled,
                    "KeyId": meta.arn,
                });
                if let Some(o) = v.as_object_mut() {
                    if let Some(days) = meta.rotation_period_days {
                        o.insert("RotationPeriodInDays".into(), json!(days));
                    }
                    if let Some(next) = meta.next_rotation_date {
                        o.insert("NextRotationDate".into(), json!(epoch(next)));
                    }
                }
                return reply(v);
            }
            _ => {
                return Err(KmsApiError::new(
                    "UnknownOperationException",
                    format!("Unknown operation {operation}"),
                ))
            }
        }
        reply(json!({}))
    }

    async fn handle_schedule_key_deletion(
        &self,
        principal: &Principal,
        req: ScheduleKeyDeletionRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        let proof = self
            .authorize(
                principal,
                &req.key_id,
                "kms:ScheduleKeyDeletion",
                &self.call(None),
                audit,
            )
            .await?;
        let meta = proof.metadata();
        let at = self
            .kms
            .schedule_key_deletion(&meta.key_id, req.pending_window_in_days)
            .await?;
        reply(json!({
            "KeyId": meta.arn,
            "DeletionDate": epoch(at),
            "KeyState": "PendingDeletion",
            "PendingWindowInDays": req.pending_window_in_days.unwrap_or(30),
        }))
    }

    async fn handle_enable_key_rotation(
        &self,
        principal: &Principal,
        req: EnableKeyRotationRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        let proof = self
            .authorize(
                principal,
                &req.key_id,
                "kms:EnableKeyRotation",
                &self.call(None),
                audit,
            )
            .await?;
        let meta = proof.metadata();
        self.kms
            .enable_key_rotation(&meta.key_id, req.rotation_period_in_days)
            .await?;
        reply(json!({}))
    }

    async fn handle_list_key_rotations(
        &self,
        principal: &Principal,
        req: ListRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        let key = req
            .key_id
            .ok_or_else(|| KmsApiError::validation("KeyId is required"))?;
        let proof = self
            .authorize(
                principal,
                &key,
                "kms:ListKeyRotations",
                &self.call(None),
                audit,
            )
            .await?;
        let meta = proof.metadata();
        let rotations = self.kms.list_key_rotations(&meta.key_id).await?;
        let (rotations, next) = paginate(rotations, req.limit, req.marker.as_deref(), 100, 1000)?;
        let list: Vec<Value> = rotations
            .iter()
            .map(|r| {
                json!({
                    "KeyId": meta.key_id,
                    "RotationDate": epoch(r.rotation_date),
                    "RotationType": match r.rotation_type {
                        coffer_kms::RotationType::Automatic => "AUTOMATIC",
                        coffer_kms::RotationType::OnDemand => "ON_DEMAND",
                    },
                })
            })
            .collect();
        let mut body = Map::new();
        body.insert("Rotations".into(), Value::Array(list));
        reply(page(body, next))
    }

    async fn handle_get_parameters_for_import(
        &self,
        principal: &Principal,
        req: GetParametersForImportRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        let proof = self
            .authorize(
                principal,
                &req.key_id,
                "kms:GetParametersForImport",
                &self.call(None),
                audit,
            )
            .await?;
        let meta = proof.metadata();
        if req.wrapping_algorithm != "RSAES_OAEP_SHA_256" {
            return Err(KmsApiError::unsupported(format!(
                "WrappingAlgorithm {} is not supported: only RSAES_OAEP_SHA_256",
                req.wrapping_algorithm
            )));
        }
        let spec = match req.wrapping_key_spec.as_str() {
            "RSA_3072" => WrappingKeySpec::Rsa3072,
            "RSA_4096" => WrappingKeySpec::Rsa4096,
            other => {
                return Err(KmsApiError::unsupported(format!(
                    "WrappingKeySpec {other} is not supported: RSA_3072 or RSA_4096"
                )))
            }
        };
        let params = self
            .kms
            .get_parameters_for_import(&meta.key_id, spec)
            .await?;
        reply(json!({
            "KeyId": meta.arn,
            "ImportToken": B64.encode(&params.import_token),
            "PublicKey": B64.encode(&params.public_key),
            "ParametersValidTo": epoch(params.parameters_valid_to),
        }))
    }

    async fn handle_import_key_material(
        &self,
        principal: &Principal,
        req: ImportKeyMaterialRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        let proof = self
            .authorize(
                principal,
                &req.key_id,
                "kms:ImportKeyMaterial",
                &self.call(None),
                audit,
            )
            .await?;
        let meta = proof.metadata();
        let valid_to = match (req.expiration_model.as_deref(), req.valid_to) {
            (None | Some("KEY_MATERIAL_EXPIRES"), Some(t)) if t.is_finite() && t > 0.0 => {
                Some(SystemTime::UNIX_EPOCH + Duration::from_secs(t as u64))
            }
            (Some("KEY_MATERIAL_EXPIRES"), _) => {
                return Err(KmsApiError::validation(
                    "ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES",
                ))
            }
            (None | Some("KEY_MATERIAL_DOES_NOT_EXPIRE"), None) => None,
            (Some("KEY_MATERIAL_DOES_NOT_EXPIRE"), Some(_)) => {
                return Err(KmsApiError::validation(
                    "ValidTo must not be set when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE",
                ))
            }
            _ => {
                return Err(KmsApiError::validation(
                    "invalid ExpirationModel or ValidTo",
                ))
            }
        };
        self.kms
            .import_key_material(
                &meta.key_id,
                &req.import_token.0,
                &req.encrypted_key_material.0,
                valid_to,
            )
            .await?;
        reply(json!({"KeyId": meta.arn}))
    }

    fn note_context(audit: &mut KmsAudit, context: &BTreeMap<String, String>) {
        audit.context_keys = context.keys().cloned().collect();
    }

    async fn handle_encrypt(
        &self,
        principal: &Principal,
        req: EncryptRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        Self::note_context(audit, &req.encryption_context);
        check_algorithm(req.encryption_algorithm.as_deref())?;
        self.check_grant_tokens(&req.grant_tokens).await?;
        let proof = self
            .authorize(
                principal,
                &req.key_id,
                "kms:Encrypt",
                &self.call(Some(&req.encryption_context)),
                audit,
            )
            .await?;
        if req.dry_run {
            return Err(dry_run());
        }
        let out = self
            .kms
            .encrypt(
                &proof,
                req.plaintext.0.expose(),
                &to_context(&req.encryption_context)?,
            )
            .await?;
        audit.key_version = Some(out.key_version);
        reply(json!({
            "CiphertextBlob": B64.encode(&out.ciphertext_blob),
            "KeyId": out.key_id,
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        }))
    }

    async fn handle_decrypt(
        &self,
        principal: &Principal,
        req: DecryptRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        Self::note_context(audit, &req.encryption_context);
        check_algorithm(req.encryption_algorithm.as_deref())?;
        if req.recipient.is_some() {
            return Err(KmsApiError::unsupported(
                "Recipient (Nitro Enclaves) is not supported",
            ));
        }
        self.check_grant_tokens(&req.grant_tokens).await?;
        let (key_id, version) = self
            .kms
            .ciphertext_key(&req.ciphertext_blob.0, req.key_id.as_deref())
            .await?;
        let proof = self
            .authorize(
                principal,
                &key_id,
                "kms:Decrypt",
                &self.call(Some(&req.encryption_context)),
                audit,
            )
            .await?;
        audit.key_version = Some(version);
        if req.dry_run {
            return Err(dry_run());
        }
        let out = self
            .kms
            .decrypt(
                &proof,
                &req.ciphertext_blob.0,
                &to_context(&req.encryption_context)?,
            )
            .await?;
        let plaintext = Zeroizing::new(B64.encode(out.plaintext.expose()));
        reply(json!({
            "KeyId": out.key_id,
            "Plaintext": plaintext.as_str(),
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        }))
    }

    async fn handle_re_encrypt(
        &self,
        principal: &Principal,
        req: ReEncryptRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        Self::note_context(audit, &req.source_encryption_context);
        check_algorithm(req.source_encryption_algorithm.as_deref())?;
        check_algorithm(req.destination_encryption_algorithm.as_deref())?;
        self.check_grant_tokens(&req.grant_tokens).await?;
        let (source_id, version) = self
            .kms
            .ciphertext_key(&req.ciphertext_blob.0, req.source_key_id.as_deref())
            .await?;
        let source = self
            .authorize(
                principal,
                &source_id,
                "kms:ReEncryptFrom",
                &self.call(Some(&req.source_encryption_context)),
                audit,
            )
            .await?;
        audit.key_version = Some(version);
        let destination = self
            .authorize(
                principal,
                &req.destination_key_id,
                "kms:ReEncryptTo",
                &self.call(Some(&req.destination_encryption_context)),
                &mut KmsAudit::default(),
            )
            .await?;
        if req.dry_run {
            return Err(dry_run());
        }
        let out = self
            .kms
            .re_encrypt(
                &source,
                &req.ciphertext_blob.0,
                &to_context(&req.source_encryption_context)?,
                &destination,
                &to_context(&req.destination_encryption_context)?,
            )
            .await?;
        reply(json!({
            "CiphertextBlob": B64.encode(&out.ciphertext_blob),
            "SourceKeyId": out.source_key_id,
            "KeyId": out.key_id,
            "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        }))
    }

    async fn handle_generate_data_key(
        &self,
        principal: &Principal,
        req: GenerateDataKeyRequest,
        with_plaintext: bool,
        audit: &mut KmsAudit,
    ) -> Reply {
        Self::note_context(audit, &req.encryption_context);
        if req.recipient.is_some() {
            return Err(KmsApiError::unsupported(
                "Recipient (Nitro Enclaves) is not supported",
            ));
        }
        let length = match (req.number_of_bytes, req.key_spec.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(KmsApiError::validation(
                    "specify either KeySpec or NumberOfBytes, not both",
                ))
            }
            (Some(n), None) if (1..=1024).contains(&n) => n as usize,
            (Some(_), None) => {
                return Err(KmsApiError::validation("NumberOfBytes must be 1..=1024"))
            }
            (None, Some("AES_256")) => 32,
            (None, Some("AES_128")) => 16,
            (None, Some(other)) => {
                return Err(KmsApiError::validation(format!(
                    "KeySpec {other} is not AES_256 or AES_128"
                )))
            }
            (None, None) => {
                return Err(KmsApiError::validation(
                    "specify either KeySpec or NumberOfBytes",
                ))
            }
        };
        self.check_grant_tokens(&req.grant_tokens).await?;
        let action = if with_plaintext {
            "kms:GenerateDataKey"
        } else {
            "kms:GenerateDataKeyWithoutPlaintext"
        };
        let proof = self
            .authorize(
                principal,
                &req.key_id,
                action,
                &self.call(Some(&req.encryption_context)),
                audit,
            )
            .await?;
        if req.dry_run {
            return Err(dry_run());
        }
        let context = to_context(&req.encryption_context)?;
        let (plaintext, ct) = if with_plaintext {
            let (bytes, ct) = self
                .kms
                .generate_data_key_bytes(&proof, length, &context)
                .await?;
            (Some(Zeroizing::new(B64.encode(bytes.expose()))), ct)
        } else {
            let ct = self
                .kms
                .generate_data_key_without_plaintext(&proof, length, &context)
                .await?;
            (None, ct)
        };
        audit.key_version = Some(ct.key_version);
        let mut v = json!({
            "CiphertextBlob": B64.encode(&ct.ciphertext_blob),
            "KeyId": ct.key_id,
        });
        if let (Some(plaintext), Some(o)) = (plaintext, v.as_object_mut()) {
            o.insert("Plaintext".into(), Value::String(plaintext.to_string()));
        }
        reply(v)
    }

    async fn handle_generate_random(
        &self,
        principal: &Principal,
        req: GenerateRandomRequest,
    ) -> Reply {
        self.authorize_unbound(principal, "kms:GenerateRandom")?;
        if req.custom_key_store_id.is_some() {
            return Err(KmsApiError::unsupported(
                "custom key stores are not supported",
            ));
        }
        if req.recipient.is_some() {
            return Err(KmsApiError::unsupported(
                "Recipient (Nitro Enclaves) is not supported",
            ));
        }
        let n = req
            .number_of_bytes
            .ok_or_else(|| KmsApiError::validation("NumberOfBytes is required"))?;
        if !(1..=1024).contains(&n) {
            return Err(KmsApiError::validation("NumberOfBytes must be 1..=1024"));
        }
        let bytes = self.kms.generate_random(n as usize)?;
        let plaintext = Zeroizing::new(B64.encode(bytes.expose()));
        reply(json!({"Plaintext": plaintext.as_str()}))
    }

    fn check_policy_name(name: Option<&str>) -> Result<(), KmsApiError> {
        match name {
            None | Some("default") => Ok(()),
            Some(other) => Err(KmsApiError::new(
                "NotFoundException",
                format!("No such policy: {other}; keys have one policy, 'default'"),
            )),
        }
    }

    async fn handle_get_key_policy(
        &self,
        principal: &Principal,
        req: KeyPolicyRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        Self::check_policy_name(req.policy_name.as_deref())?;
        let proof = self
            .authorize(
                principal,
                &req.key_id,
                "kms:GetKeyPolicy",
                &self.call(None),
                audit,
            )
            .await?;
        let policy = self.kms.effective_key_policy(proof.metadata()).await?;
        reply(json!({"Policy": policy.source(), "PolicyName": "default"}))
    }

    async fn handle_put_key_policy(
        &self,
        principal: &Principal,
        req: KeyPolicyRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        Self::check_policy_name(req.policy_name.as_deref())?;
        let policy = req
            .policy
            .ok_or_else(|| KmsApiError::validation("Policy is required"))?;
        let proof = self
            .authorize_change(
                principal,
                &req.key_id,
                "kms:PutKeyPolicy",
                audit,
                "the key policy of an AWS managed key cannot be changed",
            )
            .await?;
        let meta = proof.metadata();
        let parsed = parse_key_policy(&policy)?;
        if !req.bypass_policy_lockout_safety_check {
            check_lockout(&parsed, principal, self.secure)?;
        }
        self.kms.put_key_policy(&meta.key_id, &policy).await?;
        reply(json!({}))
    }

    async fn handle_create_grant(
        &self,
        principal: &Principal,
        req: CreateGrantRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        self.check_grant_tokens(&req.grant_tokens).await?;
        if req.operations.is_empty() {
            return Err(KmsApiError::validation("Operations must not be empty"));
        }
        for op in &req.operations {
            if !GRANT_OPERATIONS.contains(&op.as_str()) {
                return Err(KmsApiError::validation(format!(
                    "Operation {op} is not a grant operation for a symmetric encryption key"
                )));
            }
        }
        for p in std::iter::once(&req.grantee_principal).chain(req.retiring_principal.as_ref()) {
            if !p.starts_with("arn:aws:iam::") || p.len() > 256 {
                return Err(KmsApiError::validation(format!(
                    "{p} is not an IAM principal ARN"
                )));
            }
        }
        if req
            .name
            .as_ref()
            .is_some_and(|n| n.is_empty() || n.len() > 256)
        {
            return Err(KmsApiError::validation("Name must be 1..=256 characters"));
        }
        let call = CallContext {
            encryption_context: None,
            via_service: None,
            secure: self.secure,
            grant_operations: &req.operations,
        };
        let proof = self
            .authorize(principal, &req.key_id, "kms:CreateGrant", &call, audit)
            .await?;
        let meta = proof.metadata();
        if req.dry_run {
            return Err(dry_run());
        }
        let constraints = req.constraints.map(|c| GrantConstraints {
            encryption_context_equals: c.encryption_context_equals,
            encryption_context_subset: c.encryption_context_subset,
        });
        // A grant with the same name, grantee, operations and constraints is returned again
        // (AWS's idempotent CreateGrant by Name) — not supported: each call makes a grant.
        let mut raw = [0u8; 32];
        coffer_format::secret::random_fill(&mut raw)
            .map_err(|e| KmsApiError::from(KmsError::Internal(format!("random: {e}"))))?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        // 64 hex characters, as AWS's grant ids.
        let grant_id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let grant = GrantRecord {
            record_version: coffer_kms::store::GRANT_RECORD_VERSION,
            grant_id: grant_id.clone(),
            token_hash: token_hash(&token),
            key_id: meta.key_id.clone(),
            grantee_principal: req.grantee_principal,
            retiring_principal: req.retiring_principal,
            issuer: principal.arn().to_owned(),
            operations: req.operations,
            constraints,
            name: req.name,
            created_at: epoch(SystemTime::now()),
        };
        self.kms.put_grant(&grant).await?;
        reply(json!({"GrantToken": token, "GrantId": grant_id}))
    }

    async fn handle_list_grants(
        &self,
        principal: &Principal,
        req: ListGrantsRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        let proof = self
            .authorize(
                principal,
                &req.key_id,
                "kms:ListGrants",
                &self.call(None),
                audit,
            )
            .await?;
        let meta = proof.metadata();
        let grants: Vec<GrantRecord> = self
            .kms
            .grants(&meta.key_id)
            .await?
            .into_iter()
            .filter(|g| req.grant_id.as_ref().is_none_or(|id| &g.grant_id == id))
            .filter(|g| {
                req.grantee_principal
                    .as_ref()
                    .is_none_or(|p| &g.grantee_principal == p)
            })
            .collect();
        let (grants, next) = paginate(grants, req.limit, req.marker.as_deref(), 50, 100)?;
        let list: Vec<Value> = grants.iter().map(|g| grant_json(g, &meta.arn)).collect();
        let mut body = Map::new();
        body.insert("Grants".into(), Value::Array(list));
        reply(page(body, next))
    }

    async fn handle_retire_grant(
        &self,
        principal: &Principal,
        req: RetireGrantRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        let grant = match (&req.grant_token, &req.key_id, &req.grant_id) {
            (Some(token), _, _) => self
                .kms
                .grant_by_token_hash(&token_hash(token))
                .await?
                .ok_or_else(|| {
                    KmsApiError::new("InvalidGrantTokenException", "The grant token is not valid")
                })?,
            (None, Some(key), Some(id)) => {
                let key_id = self.kms.resolve(key).await?;
                self.kms
                    .grants(&key_id)
                    .await?
                    .into_iter()
                    .find(|g| &g.grant_id == id)
                    .ok_or_else(|| {
                        KmsApiError::new("InvalidGrantIdException", "The grant id is not valid")
                    })?
            }
            _ => {
                return Err(KmsApiError::validation(
                    "specify GrantToken, or KeyId and GrantId",
                ))
            }
        };
        audit.key_id = Some(grant.key_id.clone());
        // Who may retire (AWS): the retiring principal, or the grantee when the grant
        // includes RetireGrant. No one else, root included.
        let may = grant.retiring_principal.as_deref() == Some(principal.arn())
            || (grant.grantee_principal == principal.arn()
                && grant.operations.iter().any(|o| o == "RetireGrant"));
        if !may {
            return Err(access_denied(
                principal,
                "kms:RetireGrant",
                &self.kms.key_arn(&grant.key_id),
                false,
            )
            .into());
        }
        if req.dry_run {
            return Err(dry_run());
        }
        self.kms
            .delete_grant(&grant.key_id, &grant.grant_id)
            .await?;
        reply(json!({}))
    }

    async fn handle_revoke_grant(
        &self,
        principal: &Principal,
        req: RevokeGrantRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        let proof = self
            .authorize(
                principal,
                &req.key_id,
                "kms:RevokeGrant",
                &self.call(None),
                audit,
            )
            .await?;
        let meta = proof.metadata();
        if req.dry_run {
            return Err(dry_run());
        }
        self.kms
            .delete_grant(&meta.key_id, &req.grant_id)
            .await
            .map_err(|e| match e {
                KmsError::NotFound(_) => {
                    KmsApiError::new("InvalidGrantIdException", "The grant id is not valid")
                }
                e => e.into(),
            })?;
        reply(json!({}))
    }

    async fn handle_tag_resource(
        &self,
        principal: &Principal,
        req: TagResourceRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        let proof = self
            .authorize_change(
                principal,
                &req.key_id,
                "kms:TagResource",
                audit,
                "AWS managed keys cannot be tagged",
            )
            .await?;
        let meta = proof.metadata();
        self.kms.tag_key(&meta.key_id, &tags_map(req.tags)).await?;
        reply(json!({}))
    }

    async fn handle_untag_resource(
        &self,
        principal: &Principal,
        req: UntagResourceRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        let proof = self
            .authorize_change(
                principal,
                &req.key_id,
                "kms:UntagResource",
                audit,
                "AWS managed keys cannot be tagged",
            )
            .await?;
        let meta = proof.metadata();
        self.kms.untag_key(&meta.key_id, &req.tag_keys).await?;
        reply(json!({}))
    }

    async fn handle_list_resource_tags(
        &self,
        principal: &Principal,
        req: ListRequest,
        audit: &mut KmsAudit,
    ) -> Reply {
        let key = req
            .key_id
            .ok_or_else(|| KmsApiError::validation("KeyId is required"))?;
        let proof = self
            .authorize(
                principal,
                &key,
                "kms:ListResourceTags",
                &self.call(None),
                audit,
            )
            .await?;
        let meta = proof.metadata();
        let tags: Vec<(String, String)> = meta.tags.clone().into_iter().collect();
        let (tags, next) = paginate(tags, req.limit, req.marker.as_deref(), 50, 50)?;
        let list: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
            .collect();
        let mut body = Map::new();
        body.insert("Tags".into(), Value::Array(list));
        reply(page(body, next))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn user(name: &str) -> Principal {
        Principal::authenticated(name, &format!("AK{name}"), name == "root")
    }

    /// No access keys; every caller may run the operations on no particular key
    /// (CreateKey, ListKeys…), so these tests exercise key policies and grants alone.
    struct NoIdentities;
    impl IdentityLookup for NoIdentities {
        fn lookup(&self, _: &str) -> Option<(Zeroizing<String>, Principal)> {
            None
        }
        fn allows_unbound(&self, _: &Principal, _: &str, _: bool) -> bool {
            true
        }
    }

    async fn api(dir: &std::path::Path) -> KmsApi {
        let sealer = coffer_kms::KeyFileSealer::new(dir.join("root.key"));
        let kms = Kms::builder(coffer_kms::KmsConfig::new(dir.join("kms")), &sealer)
            .open()
            .await
            .unwrap();
        KmsApi::new(
            Arc::new(kms),
            Arc::new(NoIdentities),
            true,
            Duration::from_secs(5),
        )
    }

    async fn call(
        api: &KmsApi,
        who: &Principal,
        op: &str,
        body: Value,
    ) -> Result<Value, KmsApiError> {
        let mut audit = KmsAudit::default();
        api.handle(who, op, body.to_string().as_bytes(), &mut audit)
            .await
            .map(|s| serde_json::from_str(&s).unwrap())
    }

    async fn create_key(api: &KmsApi, who: &Principal) -> String {
        let v = call(api, who, "CreateKey", json!({})).await.unwrap();
        v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
    }

    async fn encrypt(
        api: &KmsApi,
        who: &Principal,
        key: &str,
        ctx: Value,
    ) -> Result<Value, KmsApiError> {
        call(
            api,
            who,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": "aGVsbG8=", "EncryptionContext": ctx}),
        )
        .await
    }

    fn denied(r: Result<Value, KmsApiError>) -> KmsApiError {
        let e = r.unwrap_err();
        assert_eq!(e.code, "AccessDeniedException", "{e:?}");
        e
    }

    #[tokio::test]
    async fn the_owner_is_allowed_and_others_are_not_root_included() {
        let dir = tempfile::tempdir().unwrap();
        let api = api(dir.path()).await;
        let (alice, bob, root) = (user("alice"), user("bob"), user("root"));
        let key = create_key(&api, &alice).await;
        let ct = encrypt(&api, &alice, &key, json!({"a": "1"}))
            .await
            .unwrap();
        let e = denied(encrypt(&api, &bob, &key, json!({})).await);
        assert_eq!(
            e.message,
            format!(
                "User: arn:aws:iam::000000000000:user/bob is not authorized to perform: kms:Encrypt on resource: {} because no resource-based policy allows the kms:Encrypt action",
                api.kms.key_arn(&key)
            )
        );
        denied(encrypt(&api, &root, &key, json!({})).await);
        let decrypt =
            json!({"CiphertextBlob": ct["CiphertextBlob"], "EncryptionContext": {"a": "1"}});
        denied(call(&api, &root, "Decrypt", decrypt.clone()).await);
        denied(call(&api, &root, "DescribeKey", json!({"KeyId": key})).await);
        denied(call(&api, &root, "ScheduleKeyDeletion", json!({"KeyId": key})).await);
        let plain = call(&api, &alice, "Decrypt", decrypt).await.unwrap();
        assert_eq!(plain["Plaintext"], "aGVsbG8=");
    }

    #[tokio::test]
    async fn a_key_policy_can_allow_another_arn_and_deny_explicitly() {
        let dir = tempfile::tempdir().unwrap();
        let api = api(dir.path()).await;
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        let key = create_key(&api, &alice).await;
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": alice.arn()}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": [bob.arn(), carol.arn()]}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": carol.arn()}, "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:team": "red"}}}
        ]});
        call(
            &api,
            &alice,
            "PutKeyPolicy",
            json!({"KeyId": key, "Policy": policy.to_string()}),
        )
        .await
        .unwrap();
        encrypt(&api, &bob, &key, json!({"team": "red"}))
            .await
            .unwrap();
        encrypt(&api, &carol, &key, json!({"team": "blue"}))
            .await
            .unwrap();
        let e = denied(encrypt(&api, &carol, &key, json!({"team": "red"})).await);
        assert!(
            e.message
                .ends_with("with an explicit deny in a resource-based policy"),
            "{}",
            e.message
        );
        denied(call(&api, &bob, "DisableKey", json!({"KeyId": key})).await);
    }

    #[tokio::test]
    async fn the_lockout_check_refuses_a_policy_that_locks_the_caller_out() {
        let dir = tempfile::tempdir().unwrap();
        let api = api(dir.path()).await;
        let alice = user("alice");
        let key = create_key(&api, &alice).await;
        let lockout = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": alice.arn()}, "Action": "kms:Encrypt", "Resource": "*"}
        ]})
        .to_string();
        let e = call(
            &api,
            &alice,
            "PutKeyPolicy",
            json!({"KeyId": key, "Policy": lockout}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, "MalformedPolicyDocumentException");
        let e = call(&api, &alice, "CreateKey", json!({"Policy": lockout}))
            .await
            .unwrap_err();
        assert_eq!(e.code, "MalformedPolicyDocumentException");
        call(
            &api,
            &alice,
            "CreateKey",
            json!({"Policy": lockout, "BypassPolicyLockoutSafetyCheck": true}),
        )
        .await
        .unwrap();
        let e = call(
            &api,
            &alice,
            "PutKeyPolicy",
            json!({"KeyId": key, "Policy": "{\"Statement\": 3}"}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, "MalformedPolicyDocumentException");
    }

    #[tokio::test]
    async fn grants_allow_their_operations_under_their_constraints_until_retired_or_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let api = api(dir.path()).await;
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        let key = create_key(&api, &alice).await;
        let grant = call(
            &api,
            &alice,
            "CreateGrant",
            json!({
                "KeyId": key, "GranteePrincipal": bob.arn(), "RetiringPrincipal": carol.arn(),
                "Operations": ["Encrypt", "Decrypt"],
                "Constraints": {"EncryptionContextEquals": {"app": "x"}}
            }),
        )
        .await
        .unwrap();
        encrypt(&api, &bob, &key, json!({"app": "x"}))
            .await
            .unwrap();
        denied(encrypt(&api, &bob, &key, json!({"app": "y"})).await);
        denied(encrypt(&api, &bob, &key, json!({"app": "x", "more": "1"})).await);
        denied(
            call(
                &api,
                &bob,
                "GenerateDataKey",
                json!({"KeyId": key, "KeySpec": "AES_256", "EncryptionContext": {"app": "x"}}),
            )
            .await,
        );
        denied(encrypt(&api, &carol, &key, json!({"app": "x"})).await);
        // Subset constraint: the grant's pairs must all be in the request's context.
        call(
            &api,
            &alice,
            "CreateGrant",
            json!({
                "KeyId": key, "GranteePrincipal": carol.arn(), "Operations": ["Encrypt"],
                "Constraints": {"EncryptionContextSubset": {"app": "x"}}
            }),
        )
        .await
        .unwrap();
        encrypt(&api, &carol, &key, json!({"app": "x", "more": "1"}))
            .await
            .unwrap();
        denied(encrypt(&api, &carol, &key, json!({"more": "1"})).await);
        // Bob cannot retire (not the retiring principal, RetireGrant not granted); Carol can.
        let token = grant["GrantToken"].as_str().unwrap();
        denied(call(&api, &bob, "RetireGrant", json!({"GrantToken": token})).await);
        call(&api, &carol, "RetireGrant", json!({"GrantToken": token}))
            .await
            .unwrap();
        denied(encrypt(&api, &bob, &key, json!({"app": "x"})).await);
        let e = call(
            &api,
            &bob,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": "aGk=", "GrantTokens": [token]}),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code, "InvalidGrantTokenException");
        // Revoked by the owner.
        let g2 = call(
            &api,
            &alice,
            "CreateGrant",
            json!({"KeyId": key, "GranteePrincipal": bob.arn(), "Operations": ["Encrypt"]}),
        )
        .await
        .unwrap();
        encrypt(&api, &bob, &key, json!({})).await.unwrap();
        let listed = call(&api, &alice, "ListGrants", json!({"KeyId": key}))
            .await
            .unwrap();
        assert_eq!(listed["Grants"].as_array().unwrap().len(), 2);
        denied(
            call(
                &api,
                &bob,
                "RevokeGrant",
                json!({"KeyId": key, "GrantId": g2["GrantId"]}),
            )
            .await,
        );
        call(
            &api,
            &alice,
            "RevokeGrant",
            json!({"KeyId": key, "GrantId": g2["GrantId"]}),
        )
        .await
        .unwrap();
        denied(encrypt(&api, &bob, &key, json!({})).await);
    }

    #[tokio::test]
    async fn the_managed_key_is_usable_only_through_s3() {
        let dir = tempfile::tempdir().unwrap();
        let api = api(dir.path()).await;
        let id = api
            .kms
            .ensure_managed_key("alias/aws/s3", MANAGED_OWNER, "Default key for S3")
            .await
            .unwrap();
        let bob = user("bob");
        let ctx = BTreeMap::from([("aws:s3:arn".to_owned(), "arn:aws:s3:::b/k".to_owned())]);
        let via_s3 = CallContext {
            encryption_context: Some(&ctx),
            via_service: Some(coffer_kms::S3_VIA_SERVICE),
            secure: true,
            grant_operations: &[],
        };
        let proof = api
            .kms
            .authorize(&bob, "alias/aws/s3", "kms:GenerateDataKey", &via_s3)
            .await
            .unwrap();
        assert_eq!(proof.key_id(), id);
        let direct = CallContext {
            via_service: None,
            ..via_s3
        };
        let e = api
            .kms
            .authorize(&bob, "alias/aws/s3", "kms:Decrypt", &direct)
            .await
            .unwrap_err();
        assert_eq!(KmsApiError::from(e).code, "AccessDeniedException");
        denied(encrypt(&api, &bob, "alias/aws/s3", json!({})).await);
        let d = call(&api, &bob, "DescribeKey", json!({"KeyId": "alias/aws/s3"}))
            .await
            .unwrap();
        assert_eq!(d["KeyMetadata"]["KeyManager"], "AWS");
        denied(call(&api, &user("root"), "DisableKey", json!({"KeyId": id})).await);
        denied(
            call(
                &api,
                &bob,
                "PutKeyPolicy",
                json!({"KeyId": id, "Policy": "{}"}),
            )
            .await,
        );
    }

    #[tokio::test]
    async fn keys_from_before_ownership_belong_to_root() {
        let dir = tempfile::tempdir().unwrap();
        let api = api(dir.path()).await;
        let meta = api
            .kms
            .create_key("legacy", "", BTreeMap::new())
            .await
            .unwrap();
        encrypt(&api, &user("root"), &meta.key_id, json!({}))
            .await
            .unwrap();
        denied(encrypt(&api, &user("alice"), &meta.key_id, json!({})).await);
    }

    #[tokio::test]
    async fn protocol_errors_have_aws_names() {
        let dir = tempfile::tempdir().unwrap();
        let api = api(dir.path()).await;
        let alice = user("alice");
        let mut audit = KmsAudit::default();
        let e = api
            .handle(&alice, "Encrypt", b"{not json", &mut audit)
            .await
            .unwrap_err();
        assert_eq!(e.code, "SerializationException");
        assert_eq!(audit.error_code.as_deref(), Some("SerializationException"));
        // Invalid UTF-8, even in a member the operation ignores.
        let e = api
            .handle(
                &alice,
                "CreateKey",
                b"{\"Unknown\": \"\xff\xfe\"}",
                &mut audit,
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, "SerializationException");
        let e = api
            .handle(&alice, "Encrypt", br#"{"Plaintext": "aGk="}"#, &mut audit)
            .await
            .unwrap_err();
        assert_eq!(e.code, "ValidationException");
        assert!(
            e.message.contains("'key_id'") || e.message.contains("KeyId"),
            "{}",
            e.message
        );
        let e = api
            .handle(&alice, "Frobnicate", b"{}", &mut audit)
            .await
            .unwrap_err();
        assert_eq!(e.code, "UnknownOperationException");
        let key = create_key(&api, &alice).await;
        let mut audit = KmsAudit::default();
        let body = json!({"KeyId": key, "Plaintext": "aGk=", "EncryptionContext": {"k": "v"}});
        api.handle(&alice, "Encrypt", body.to_string().as_bytes(), &mut audit)
            .await
            .unwrap();
        assert_eq!(audit.key_id.as_deref(), Some(key.as_str()));
        assert_eq!(audit.key_version, Some(1));
        assert_eq!(audit.context_keys, ["k"]);
    }
}
