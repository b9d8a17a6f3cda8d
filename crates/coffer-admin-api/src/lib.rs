//! The admin API: identities, access keys and identity policies.
//!
//! Same HTTPS port, same SigV4 (service `s3`, so s3s verifies the signature), JSON 1.1 like
//! AWS's JSON services: `POST /` with `X-Amz-Target: CofferAdmin.<Operation>` and
//! `Content-Type: application/x-amz-json-1.1`. Operations and fields follow IAM's names
//! (`CreateUser`, `CreateAccessKey`, `PutUserPolicy`, …); errors are
//! `{"__type": "<Code>", "message": "…"}` with IAM's codes.
//!
//! Who may call it: the root identity, and identities whose policies allow
//! `admin:<Operation>` on the target user's ARN. Administering identities does not give
//! access to anyone's keys or buckets beyond what policies say (see docs/security.md).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use s3s::route::S3Route;
use s3s::{Body, S3Request, S3Response, S3Result};
use serde_json::{json, Value};

use coffer_iam::iam::{base_context, Iam};
use coffer_iam::principal::{IdentityLookup, Principal};
use coffer_outcome::ServerError;

/// `X-Amz-Target` prefix of admin requests.
pub const TARGET_PREFIX: &str = "CofferAdmin.";

/// What an admin request did, for the audit trail (in the response's extensions).
#[derive(Clone, Debug)]
pub struct AdminAudit {
    pub action: String,
    pub resource: Option<String>,
    pub error_code: Option<String>,
}

pub struct AdminRoute {
    pub iam: Arc<Iam>,
    pub secure: bool,
}

fn target(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
}

struct AdminError(StatusCode, String, String);

impl AdminError {
    fn new(status: StatusCode, code: &str, msg: impl Into<String>) -> AdminError {
        AdminError(status, code.to_owned(), msg.into())
    }
    fn validation(msg: impl Into<String>) -> AdminError {
        AdminError::new(StatusCode::BAD_REQUEST, "ValidationError", msg)
    }
}

impl From<ServerError> for AdminError {
    fn from(e: ServerError) -> AdminError {
        match e {
            ServerError::S3(code, msg) => {
                let code = code.as_str().to_owned();
                let status = match code.as_str() {
                    "NoSuchEntity" => StatusCode::NOT_FOUND,
                    "EntityAlreadyExists" | "DeleteConflict" | "LimitExceeded" => {
                        StatusCode::CONFLICT
                    }
                    "InvalidArgument" => {
                        return AdminError::validation(msg);
                    }
                    _ => StatusCode::BAD_REQUEST,
                };
                AdminError(status, code, msg)
            }
            other => AdminError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceFailure",
                other.to_string(),
            ),
        }
    }
}

fn field<'a>(body: &'a Value, name: &str) -> Result<&'a str, AdminError> {
    body.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| AdminError::validation(format!("missing required string field {name}")))
}

fn key_json(user: &str, k: &coffer_iam::iam::NewAccessKey) -> Value {
    json!({"AccessKey": {
        "UserName": user,
        "AccessKeyId": k.access_key,
        "SecretAccessKey": k.secret.as_str(),
        "Status": "Active",
    }})
}

impl AdminRoute {
    /// Runs one operation; returns the response document and the resource it touched.
    async fn run(&self, p: &Principal, op: &str, body: &Value) -> Result<Value, AdminError> {
        let user = body.get("UserName").and_then(Value::as_str);
        let resource = user.map_or_else(|| "*".to_owned(), Principal::user_arn);
        let ctx = base_context(p, self.secure);
        let Some(proof) = self
            .iam
            .authorize(p, &format!("admin:{op}"), &resource, None, &ctx)
        else {
            return Err(AdminError::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                format!(
                    "User: {} is not authorized to perform: admin:{op} on resource: {resource}",
                    p.arn()
                ),
            ));
        };
        let iam = &self.iam;
        Ok(match op {
            "CreateUser" => {
                let kind = body.get("Kind").and_then(Value::as_str).unwrap_or("user");
                json!({"User": iam.create_identity(&proof, field(body, "UserName")?, kind).await?})
            }
            "GetUser" => json!({"User": iam.get_identity(field(body, "UserName")?)?}),
            "ListUsers" => json!({"Users": iam.list_identities()}),
            "DeleteUser" => {
                iam.delete_identity(&proof, field(body, "UserName")?)
                    .await?;
                json!({})
            }
            "EnableUser" | "DisableUser" => {
                iam.set_enabled(&proof, field(body, "UserName")?, op == "EnableUser")
                    .await?;
                json!({})
            }
            "CreateAccessKey" => {
                let u = field(body, "UserName")?;
                key_json(u, &iam.create_access_key(&proof, u).await?)
            }
            "RotateAccessKey" => {
                let u = field(body, "UserName")?;
                key_json(
                    u,
                    &iam.rotate_access_key(&proof, u, field(body, "AccessKeyId")?)
                        .await?,
                )
            }
            "DeleteAccessKey" => {
                iam.delete_access_key(
                    &proof,
                    field(body, "UserName")?,
                    field(body, "AccessKeyId")?,
                )
                .await?;
                json!({})
            }
            "ListAccessKeys" => {
                let u = field(body, "UserName")?;
                iam.get_identity(u)?;
                let keys: Vec<Value> = iam
                    .list_access_keys(u)
                    .into_iter()
                    .map(|k| json!({"UserName": u, "AccessKeyId": k, "Status": "Active"}))
                    .collect();
                json!({"AccessKeyMetadata": keys})
            }
            "PutUserPolicy" => {
                iam.put_identity_policy(
                    &proof,
                    field(body, "UserName")?,
                    field(body, "PolicyName")?,
                    field(body, "PolicyDocument")?,
                )
                .await?;
                json!({})
            }
            "GetUserPolicy" => {
                let (u, n) = (field(body, "UserName")?, field(body, "PolicyName")?);
                json!({"UserName": u, "PolicyName": n,
                       "PolicyDocument": iam.get_identity_policy(u, n)?})
            }
            "DeleteUserPolicy" => {
                iam.delete_identity_policy(
                    &proof,
                    field(body, "UserName")?,
                    field(body, "PolicyName")?,
                )
                .await?;
                json!({})
            }
            "ListUserPolicies" => {
                let u = field(body, "UserName")?;
                iam.get_identity(u)?;
                json!({"PolicyNames": iam.list_identity_policies(u)})
            }
            other => {
                return Err(AdminError::new(
                    StatusCode::BAD_REQUEST,
                    "UnknownOperationException",
                    format!("unknown operation CofferAdmin.{other}"),
                ))
            }
        })
    }
}

fn json_response(status: StatusCode, v: &Value) -> S3Response<Body> {
    let mut resp = S3Response::new(Body::from(Bytes::from(v.to_string())));
    resp.status = Some(status);
    resp.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    resp
}

/// The most an admin request body may hold (policy documents are ≤ 32 KiB).
const MAX_BODY: usize = 64 * 1024;

#[async_trait::async_trait]
impl S3Route for AdminRoute {
    fn is_match(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        _extensions: &mut http::Extensions,
    ) -> bool {
        method == Method::POST && uri.path() == "/" && target(headers).is_some()
    }

    async fn call(&self, mut req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let op = target(&req.headers).unwrap_or_default().to_owned();
        let mut audit = AdminAudit {
            action: format!("admin:{op}"),
            resource: None,
            error_code: None,
        };
        let principal = req
            .credentials
            .as_ref()
            .and_then(|c| self.iam.lookup(&c.access_key))
            .map(|(_, p)| p);
        let result = async {
            let p = principal.ok_or_else(|| {
                AdminError::new(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied")
            })?;
            let raw = req.input.store_all_limited(MAX_BODY).await.map_err(|e| {
                AdminError::validation(format!("request body: {e} (limit {MAX_BODY} bytes)"))
            })?;
            let body: Value = if raw.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&raw).map_err(|e| {
                    AdminError::new(
                        StatusCode::BAD_REQUEST,
                        "SerializationException",
                        format!("request body is not valid JSON: {e}"),
                    )
                })?
            };
            if !body.is_object() {
                return Err(AdminError::new(
                    StatusCode::BAD_REQUEST,
                    "SerializationException",
                    "request body must be a JSON object",
                ));
            }
            audit.resource = body
                .get("UserName")
                .and_then(Value::as_str)
                .map(Principal::user_arn);
            self.run(&p, &op, &body).await
        }
        .await;
        let mut resp = match result {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(AdminError(status, code, msg)) => {
                audit.error_code = Some(code.clone());
                json_response(status, &json!({"__type": code, "message": msg}))
            }
        };
        resp.extensions.insert(audit);
        Ok(resp)
    }
}
