//! `coffer server`: S3-compatible object storage where every object is encrypted at rest
//! (SSE-S3, SSE-KMS, SSE-C), served over HTTPS by default.
//!
//! This crate is the HTTPS front and the wiring (docs/architecture.md, "Crates"): it opens a
//! data directory ([`open`]: root key, KMS, metadata, audit log, blobs), and serves every
//! connection through one `Front` service that writes the audit records ([`audit`]), checks
//! headers, XML bodies ([`xmlbody`]) and aws-chunked framing ([`aws_chunked`]), and routes
//! to the S3 operations (`coffer-s3`, through `s3s`), the KMS API (`coffer-kms-api`) or the
//! admin API (`coffer-admin-api`). TLS: [`tls`]; the root key: [`rootkey`].
//!
//! docs/server.md describes the whole.

pub mod audit;
pub mod aws_chunked;
pub mod form_body;
pub mod metrics;
pub mod ops;
pub mod rootkey;
pub mod tls;
pub mod xmlbody;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use coffer_admin_api as admin;
use coffer_iam::{iam, principal, request, sigv4};
use coffer_kms_api as kms_api;
pub use coffer_outcome::{ServerError, ServerResult};
use coffer_s3 as s3;
use coffer_store::{blob, reserve, sse};

/// The default listen address (HTTPS).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9443";

/// How the server is started.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Use this certificate chain and key instead of generating a local CA.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP (no TLS). SSE-C is refused in this mode.
    pub insecure_http: bool,
    /// Where the root sealing key file lives (key-file sealer), default `<data>/root.key`.
    pub root_key_file: Option<PathBuf>,
    /// Seal the root key with this passphrase (Argon2id) instead of a key file.
    pub root_passphrase: Option<Zeroizing<String>>,
    /// Base domains for virtual-host-style requests (`bucket.<domain>`).
    pub domains: Vec<String>,
    pub limits: Limits,
    /// How often the lifecycle pass runs (bucket lifecycle rules, docs/server.md).
    pub lifecycle_interval: Duration,
    /// Where to serve `/metrics` and the health checks (ops.rs), if anywhere.
    pub ops_listen: Option<SocketAddr>,
}

/// Connection and request limits (docs/server.md, "Limits").
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections served at once; further connections wait in the listen backlog.
    pub max_connections: usize,
    /// Time allowed for a TLS handshake and for each request's header section.
    pub header_timeout: Duration,
    /// A request body that sends nothing for this long fails with `RequestTimeout`.
    pub body_idle_timeout: Duration,
    /// Largest object (single PUT, copy or part) accepted.
    pub max_object_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            max_object_size: 5 << 30,
        }
    }
}

impl ServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            data_dir: data_dir.into(),
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| ([127, 0, 0, 1], 9443).into()),
            tls_cert: None,
            tls_key: None,
            insecure_http: false,
            root_key_file: None,
            root_passphrase: None,
            domains: vec!["localhost".to_owned()],
            limits: Limits::default(),
            lifecycle_interval: Duration::from_secs(3600),
            ops_listen: None,
        }
    }
}

/// Root credentials: from the environment on first start, else generated (and printed once).
async fn ensure_root_credentials(
    store: &dyn coffer_meta::IdentityStore,
) -> ServerResult<Option<(String, String)>> {
    if !store.snapshot().await?.access_keys.is_empty() {
        return Ok(None);
    }
    let access = std::env::var("COFFER_ROOT_ACCESS_KEY").ok();
    let secret = std::env::var("COFFER_ROOT_SECRET_KEY").ok();
    let (access, secret, generated) = match (access, secret) {
        (Some(a), Some(s)) => {
            if a.len() < 3 || s.len() < 8 {
                return Err(ServerError::Internal(
                    "COFFER_ROOT_ACCESS_KEY must be ≥ 3 characters and COFFER_ROOT_SECRET_KEY ≥ 8"
                        .into(),
                ));
            }
            (a, s, false)
        }
        (None, None) => {
            let mut raw = [0u8; 30];
            coffer_format::secret::random_fill(&mut raw)?;
            let access = format!("CF{}", &hex::encode_upper(&raw[..9]));
            let secret = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                &raw[9..],
            );
            (access, secret, true)
        }
        _ => {
            return Err(ServerError::Internal(
                "set both COFFER_ROOT_ACCESS_KEY and COFFER_ROOT_SECRET_KEY, or neither".into(),
            ))
        }
    };
    let root = coffer_meta::IdentityRecord {
        name: "root".to_owned(),
        kind: "root".to_owned(),
        enabled: true,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    };
    match store.create_identity(&root).await {
        Err(coffer_meta::MetaError::AlreadyExists(_)) => {}
        r => r?,
    }
    store
        .put_access_key(&coffer_meta::AccessKey {
            access_key: access.clone(),
            identity: "root".to_owned(),
            secret: coffer_meta::SecretAccessKey::new(zeroize::Zeroizing::new(secret.clone())),
        })
        .await?;
    Ok(generated.then_some((access, secret)))
}

/// Opens everything under the data directory. Returns the S3 implementation and what to
/// print at start.
/// What [`open`] assembles from a data directory: the S3 service, the KMS API beside it,
/// and notes for the operator (recovery done at startup).
pub struct Opened {
    pub s3: s3::S3Handlers,
    /// The audit trail, written by the front service for every request.
    pub audit: Arc<audit::Auditor>,
    pub kms_api: Arc<kms_api::KmsApi>,
    pub kms: Arc<coffer_kms::Kms>,
    pub notes: Vec<String>,
}

pub async fn open(config: &ServerConfig) -> ServerResult<Opened> {
    let data = &config.data_dir;
    std::fs::create_dir_all(data)
        .map_err(|e| ServerError::Internal(format!("create {}: {e}", data.display())))?;
    // Only the server's user may enter the data directory.
    std::fs::set_permissions(data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| ServerError::Internal(format!("chmod {}: {e}", data.display())))?;
    let mut notes = Vec::new();
    let kms = rootkey::open_kms(
        data,
        config.root_key_file.as_deref(),
        config.root_passphrase.as_ref().map(|p| p.as_str()),
    )
    .await?;
    notes.extend(kms.warnings().iter().map(|w| format!("warning: {w}")));
    let kms = Arc::new(kms);
    let store = Arc::new(coffer_meta::SqlCipherStore::open(
        &data.join("server.db"),
        &kms.derive_subsystem_key("server/metadata-db/v1")?,
    )?);
    if let Some((a, s)) = ensure_root_credentials(&*store).await? {
        notes.push("root credentials (shown once; stored encrypted):".to_owned());
        notes.push(format!("  AWS_ACCESS_KEY_ID={a}"));
        notes.push(format!("  AWS_SECRET_ACCESS_KEY={s}"));
    }
    // The audit log's directory lock (flock) is the data directory's: taken before anything
    // is swept, so a second server started on the same directory stops here instead of
    // deleting the running one's in-flight blobs.
    let audit_dir = data.join("audit");
    let audit_log = coffer_audit::AuditLog::open(
        &audit_dir,
        kms.derive_subsystem_key("audit/mac/v1")?,
        coffer_audit::AuditOptions::default(),
    )
    .map_err(|e| ServerError::Internal(format!("audit log {}: {e}", audit_dir.display())))?;
    let blob_dir = data.join("blobs");
    let blobs = blob::BlobStore::open_local(&blob_dir)?;
    let staging = blob::sweep_local_staging(&blob_dir)?;
    // With the lock held this process is the local directory's only writer and has not
    // started serving, so every unreferenced blob is an orphan of a dead writer: no grace
    // is needed here. Backends shared by several writers pass one.
    let orphans = blobs
        .collect_garbage(
            || async { Ok(coffer_meta::MetaStore::referenced_blobs(&*store).await?) },
            Duration::ZERO,
        )
        .await?;
    if staging + orphans > 0 {
        notes.push(format!(
            "removed {staging} interrupted write(s) and {orphans} uncommitted blob(s)"
        ));
    }
    let keys = sse::Keys::new(Arc::clone(&kms))?;
    let reserve = Arc::new(reserve::Reserve::new(data.join("reserve")));
    let meta = Arc::new(reserve::Reserved::new(store.clone(), Arc::clone(&reserve)));
    kms.set_deletion_guard(Arc::new(s3::LockedKeysGuard {
        meta: meta.clone() as Arc<dyn coffer_meta::MetaStore>,
    }));
    let iam = Arc::new(iam::Iam::open(store).await?);
    let kms_api = Arc::new(kms_api::KmsApi::new(
        Arc::clone(&kms),
        Arc::clone(&iam) as Arc<dyn principal::IdentityLookup>,
        !config.insecure_http,
        config.limits.body_idle_timeout,
    ));
    let metrics = Arc::new(metrics::Metrics::new());
    let audit = Arc::new(audit::Auditor {
        log: Arc::new(metrics::MeteredSink {
            inner: Arc::new(audit_log),
            metrics: Arc::clone(&metrics),
        }),
        iam: Arc::clone(&iam),
        metrics,
    });
    let handlers = s3::S3Handlers {
        iam,
        meta,
        blobs: Arc::new(blobs),
        keys: Arc::new(keys),
        secure: !config.insecure_http,
        limits: s3::BodyLimits {
            max_object_size: config.limits.max_object_size,
            body_idle_timeout: config.limits.body_idle_timeout,
        },
        reserve,
    };
    Ok(Opened {
        s3: handlers,
        audit,
        kms_api,
        kms,
        notes,
    })
}

fn build_service(
    handlers: s3::S3Handlers,
    config: &ServerConfig,
    port: u16,
) -> ServerResult<s3s::service::S3Service> {
    let iam = Arc::clone(&handlers.iam);
    let secure = handlers.secure;
    let meta = Arc::clone(&handlers.meta);
    let mut builder = s3s::service::S3ServiceBuilder::new(handlers);
    builder.set_auth(Credentials(Arc::clone(&iam)));
    builder.set_access(iam::S3Authz {
        iam: Arc::clone(&iam),
        secure,
        meta: Some(meta),
    });
    builder.set_route(admin::AdminRoute { iam, secure });
    if !config.domains.is_empty() {
        // Host headers carry the port unless it is the scheme's default: match both forms,
        // or `localhost:9443` would be taken for a bucket name.
        let domains: Vec<String> = config
            .domains
            .iter()
            .flat_map(|d| [d.clone(), format!("{d}:{port}")])
            .collect();
        let host = s3s::host::MultiDomain::new(&domains)
            .map_err(|e| ServerError::Internal(format!("--domain: {e}")))?;
        builder.set_host(host);
    }
    Ok(builder.build())
}

/// Access keys and their secrets: the identity store (disabled identities' keys are unknown).
struct Credentials(Arc<iam::Iam>);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Credentials {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        use principal::IdentityLookup;
        self.0
            .lookup(access_key)
            .map(|(secret, _)| s3s::auth::SecretKey::from(secret.as_str()))
            .ok_or_else(|| {
                coffer_outcome::Recorder::s3_error(
                    s3s::S3Error::with_message(
                        s3s::S3ErrorCode::InvalidAccessKeyId,
                        "The AWS Access Key Id you provided does not exist in our records.",
                    ),
                    false,
                )
            })
    }
}

/// S3 refuses request header sections over 8 KB (`400 RequestHeaderSectionTooLarge`).
pub const MAX_HEADER_BYTES: usize = 8192;

/// The front of the server: every request is audited (a record before it runs, one with its
/// outcome before the response leaves), checked (header size, SigV4 scope), and routed to the
/// KMS API (`X-Amz-Target: TrentService.*`) or to s3s (S3 and the admin API).
#[derive(Clone)]
struct Front {
    s3: s3s::service::S3Service,
    kms: Arc<kms_api::KmsApi>,
    audit: Arc<audit::Auditor>,
    /// The connection's client address (set per connection).
    peer: Option<std::net::SocketAddr>,
    /// `--body-idle-timeout`, for the XML bodies read here.
    idle: Duration,
    /// Bucket metadata, for CORS (preflights and the headers of cross-origin requests).
    meta: Arc<dyn coffer_meta::MetaStore>,
    /// Virtual-host base domains (with and without the port), to find a request's bucket.
    domains: Vec<String>,
}

/// The bucket a request names: `bucket.<domain>` in `Host`, else the first path segment.
fn request_bucket<B>(req: &hyper::Request<B>, domains: &[String]) -> Option<String> {
    if let Some(host) = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        for d in domains {
            if let Some(b) = host
                .strip_suffix(d.as_str())
                .and_then(|b| b.strip_suffix('.'))
            {
                if !b.is_empty() {
                    return Some(b.to_owned());
                }
            }
        }
    }
    let first = req.uri().path().trim_start_matches('/').split('/').next()?;
    (!first.is_empty()).then(|| request::decode_or_keep(first))
}

type RespFuture =
    futures::future::BoxFuture<'static, Result<hyper::Response<s3s::Body>, s3s::HttpError>>;

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Front {
    type Response = hyper::Response<s3s::Body>;
    type Error = s3s::HttpError;
    type Future = RespFuture;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        // Parsed once: the audit record, the scope checks and the routing read the same query.
        let query = request::Query::parse(req.uri().query());
        let info = audit::RequestInfo::of(&req, &query, self.peer, &self.audit.iam);
        let head = req.method() == hyper::Method::HEAD;
        // A cross-origin request (not a preflight) gets the CORS headers of the bucket's
        // matching rule, if any.
        let cors = (req.method() != hyper::Method::OPTIONS)
            .then(|| req.headers().get(hyper::header::ORIGIN))
            .flatten()
            .and_then(|o| o.to_str().ok())
            .map(str::to_owned)
            .zip(request_bucket(&req, &self.domains))
            .map(|(origin, bucket)| (origin, bucket, req.method().as_str().to_owned()));
        let this = self.clone();
        let started = std::time::Instant::now();
        let action = info.action.clone();
        Box::pin(async move {
            let mut resp = match this.audit.request(&info).await {
                Err(refused) => refused,
                Ok(()) => {
                    let (resp, recorded) =
                        coffer_outcome::Recorder::scope(&info.request_id, this.route(req, &query))
                            .await;
                    this.audit.response(info, resp?, recorded).await
                }
            };
            if let Some((origin, bucket, method)) = cors {
                if let Ok(Some(rules)) = s3::cors::cors_rules(&*this.meta, &bucket).await {
                    if let Some(rule) = s3::cors::find_rule(&rules, &origin, &method, &[]) {
                        s3::cors::allow_headers(rule, &origin, &[], false, resp.headers_mut());
                    }
                }
            }
            this.audit
                .metrics
                .request(&action, resp.status().as_u16(), started.elapsed());
            Ok(if head { without_body(resp) } else { resp })
        })
    }
}

impl Front {
    /// `query` is `req`'s (the front changes headers before s3s sees them, never the URI).
    fn route(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
        query: &request::Query,
    ) -> RespFuture {
        let size: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if size > MAX_HEADER_BYTES {
            return refuse(
                hyper::StatusCode::BAD_REQUEST,
                "RequestHeaderSectionTooLarge",
                "Your request header section exceeds the maximum allowed size.",
            );
        }
        if req.method() == hyper::Method::OPTIONS {
            // A CORS preflight: unsigned by design (browsers send no credentials with it).
            let Some(bucket) = request_bucket(&req, &self.domains) else {
                return refuse(
                    hyper::StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Insufficient information. Origin request header needed.",
                );
            };
            let meta = Arc::clone(&self.meta);
            let headers = req.headers().clone();
            return Box::pin(
                async move { Ok(s3::cors::preflight(&*meta, &bucket, &headers).await) },
            );
        }
        if kms_api::KmsApi::is_kms_request(&req) {
            let api = Arc::clone(&self.kms);
            return Box::pin(async move { Ok(api.serve(req).await) });
        }
        let signing = match check_sigv4_scope(&req, query) {
            Ok(signing) => signing,
            Err((status, code, msg)) => return refuse(status, code, &msg),
        };
        let (mut parts, body) = req.into_parts();
        normalize_range_unit(&mut parts, signing.as_ref(), &*self.audit.iam);
        let req = hyper::Request::from_parts(parts, body);
        if let Some(alg) = req.headers().get("x-amz-sdk-checksum-algorithm") {
            let known = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"];
            if !alg
                .to_str()
                .is_ok_and(|a| known.iter().any(|k| k.eq_ignore_ascii_case(a.trim())))
            {
                return refuse(
                    hyper::StatusCode::BAD_REQUEST,
                    "InvalidRequest",
                    "Value for x-amz-sdk-checksum-algorithm header is invalid.",
                );
            }
        }
        let op = audit::s3_operation(req.method(), req.uri().path(), query, req.headers());
        let streaming = req
            .headers()
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("STREAMING-"));
        // Anonymous requests are refused by s3s's auth first (AccessDenied), as on S3.
        let signed = req.headers().contains_key(hyper::header::AUTHORIZATION)
            || query.get_ignore_case("X-Amz-Signature").is_some();
        if xmlbody::has_xml_body(op) && !streaming && signed {
            let s3 = self.s3.clone();
            let idle = self.idle;
            return Box::pin(async move {
                let (parts, body) = req.into_parts();
                let bytes = match xmlbody::read(body, idle).await {
                    Ok(b) => b,
                    Err((status, code, msg)) => {
                        return Ok(coffer_outcome::error_response(status, code, &msg));
                    }
                };
                if let Err((status, code, msg)) = xmlbody::check(&parts.headers, &bytes, op) {
                    return Ok(coffer_outcome::error_response(status, code, &msg));
                }
                s3.call(hyper::Request::from_parts(parts, s3s::Body::from(bytes)))
                    .await
            });
        }
        if streaming && signed {
            // aws-chunked framing checks s3s's decoder leaves out (aws_chunked.rs).
            let s3 = self.s3.clone();
            let (parts, body) = req.into_parts();
            let body = s3s::Body::http_body_unsync(aws_chunked::Checked::new(body));
            return Box::pin(async move { s3.call(hyper::Request::from_parts(parts, body)).await });
        }
        let form = (req.method() == hyper::Method::POST)
            .then(|| req.headers().get(hyper::header::CONTENT_TYPE))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .filter(|ct| coffer_iam::post_form::PostForm::is_form(ct))
            .map(coffer_iam::post_form::PostForm::new);
        if let Some(form) = form {
            // A browser form upload: its start is kept for `${filename}` (form_body.rs).
            let s3 = self.s3.clone();
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(form.clone());
            let body = s3s::Body::http_body_unsync(form_body::Recorded::new(body, form.clone()));
            return Box::pin(async move {
                let resp = s3.call(hyper::Request::from_parts(parts, body)).await?;
                Ok(form_body::with_final_key(resp, &form).await)
            });
        }
        hyper::service::Service::call(&self.s3, req)
    }
}

/// A response to HEAD carries no content (RFC 9110 §9.3.2). s3s answers a failed HEAD with
/// its XML error body; HTTP/1.1 drops it on the way out, but over HTTP/2 hyper sent it as
/// DATA and clients reset the stream (curl: `PROTOCOL_ERROR`, the AWS Rust SDK: a dispatch
/// failure instead of the 404 or 400). An error's body and its `Content-Length` go; a success
/// keeps its headers (`Content-Length` is the object's size there, as S3 sends it).
fn without_body(resp: hyper::Response<s3s::Body>) -> hyper::Response<s3s::Body> {
    let (mut parts, _body) = resp.into_parts();
    if !parts.status.is_success() {
        parts.headers.remove(hyper::header::CONTENT_LENGTH);
    }
    hyper::Response::from_parts(parts, s3s::Body::empty())
}

/// RFC 9110 §14.2 for the `Range` of a GET or HEAD: a range unit the server does not know is
/// ignored (the whole object, `200`, as S3 answers), and units are case-insensitive
/// (`Bytes=0-1` is a byte range). s3s's parser knows only a lower-case `bytes=` and refuses
/// the rest with `400`, so the header is normalised before s3s sees it. A `Range` the client
/// signed is changed only through [`sigv4::resign_s3`], which first verifies the client's
/// signature; if that fails, or the range is signed in a presigned URL, the request goes on
/// unchanged (and gets s3s's answer).
fn normalize_range_unit(
    req: &mut hyper::http::request::Parts,
    signing: Option<&Signing>,
    identities: &dyn principal::IdentityLookup,
) {
    let Some(value) = range_for_s3s(&req.method, &req.headers) else {
        return;
    };
    let name = hyper::header::RANGE;
    let range_signed = signing.filter(|s| s.headers.iter().any(|h| h == name.as_str()));
    match range_signed {
        Some(Signing {
            presigned: false, ..
        }) => {
            if let Err(e) = sigv4::resign_s3(
                req.method.as_str(),
                &req.uri,
                &mut req.headers,
                &name,
                value,
                identities,
                std::time::SystemTime::now(),
            ) {
                tracing::debug!(
                    error = e.aws_code(),
                    "Range left as sent: signature not verified"
                );
            }
        }
        Some(Signing {
            presigned: true, ..
        }) => {}
        None => match value {
            Some(v) => {
                req.headers.insert(name, v);
            }
            None => {
                req.headers.remove(name);
            }
        },
    }
}

/// The `Range` header s3s should see, when it differs from the one sent: `Some(None)` to drop
/// it (a unit other than bytes), `Some(Some(v))` for a bytes unit in another case. `None`:
/// leave it (already `bytes=`, not one single header, not GET/HEAD, or no `unit=` at all —
/// malformed, which s3s refuses with `400 InvalidArgument`).
fn range_for_s3s(
    method: &hyper::Method,
    headers: &hyper::HeaderMap,
) -> Option<Option<hyper::header::HeaderValue>> {
    if method != hyper::Method::GET && method != hyper::Method::HEAD {
        return None;
    }
    let mut values = headers.get_all(hyper::header::RANGE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let (unit, set) = value.to_str().ok()?.split_once('=')?;
    // range-unit = token (RFC 9110 §14.1, §5.6.2).
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if unit == "bytes" || unit.is_empty() || !unit.bytes().all(tchar) {
        return None;
    }
    if unit.eq_ignore_ascii_case("bytes") {
        hyper::header::HeaderValue::from_str(&format!("bytes={set}"))
            .ok()
            .map(Some)
    } else {
        Some(None)
    }
}

fn refuse(
    status: hyper::StatusCode,
    code: &str,
    msg: &str,
) -> futures::future::BoxFuture<'static, Result<hyper::Response<s3s::Body>, s3s::HttpError>> {
    let resp = coffer_outcome::error_response(status, code, msg);
    Box::pin(async move { Ok(resp) })
}

pub(crate) type Refusal = (hyper::StatusCode, &'static str, String);

/// How a SigV4 request is signed, as [`check_sigv4_scope`] read it.
struct Signing {
    /// In the query string (a presigned URL), not the `Authorization` header.
    presigned: bool,
    /// The signed header names, lower-case.
    headers: Vec<String>,
}

/// SigV4 rules s3s leaves to the service: one auth mechanism, the algorithm, the credential
/// scope (this region, service `s3`), `host` and every `x-amz-*` header signed (so nothing
/// can be added to a signed or presigned request), presigned URLs valid at most 7 days.
/// Returns the signed header list of a SigV4 request (`None`: unsigned, SigV2, or a header
/// s3s refuses as malformed).
fn check_sigv4_scope<B>(
    req: &hyper::Request<B>,
    query: &request::Query,
) -> Result<Option<Signing>, Refusal> {
    const REGION: &str = "us-east-1";
    let bad = hyper::StatusCode::BAD_REQUEST;
    let q = |name: &str| query.get_ignore_case(name);
    let header_auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let query_alg = q("X-Amz-Algorithm");
    let (algorithm, credential, signed, presigned) = match (header_auth, query_alg) {
        (Some(_), Some(_)) => {
            return Err((
                bad,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified".into(),
            ))
        }
        (Some(h), None) => {
            let Some(auth) = request::Authorization::parse(h) else {
                return Ok(None); // s3s answers malformed headers itself
            };
            if auth.algorithm == "AWS" {
                return Ok(None); // SigV2 signs every x-amz-* header by construction
            }
            (
                auth.algorithm.to_owned(),
                auth.credential.map(str::to_owned),
                auth.signed_headers.map(str::to_owned),
                false,
            )
        }
        (None, Some(alg)) => (
            alg.to_owned(),
            q("X-Amz-Credential").map(str::to_owned),
            q("X-Amz-SignedHeaders").map(str::to_owned),
            true,
        ),
        (None, None) => return Ok(None),
    };
    let malformed = if presigned {
        "AuthorizationQueryParametersError"
    } else {
        "AuthorizationHeaderMalformed"
    };
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err((
            bad,
            malformed,
            format!("Unsupported signing algorithm {algorithm}: only AWS4-HMAC-SHA256"),
        ));
    }
    if let Some(scope) = credential
        .as_deref()
        .and_then(request::CredentialScope::parse)
    {
        if scope.region != REGION {
            return Err((
                bad,
                malformed,
                format!(
                    "The authorization header is malformed; the region '{}' is wrong; expecting '{REGION}'",
                    scope.region
                ),
            ));
        }
        if scope.service != "s3" || scope.terminator != "aws4_request" {
            return Err((
                bad,
                malformed,
                "The authorization header is malformed; the credential scope must end in s3/aws4_request".into(),
            ));
        }
    }
    if presigned {
        if let Some(exp) = q("X-Amz-Expires") {
            match exp.parse::<u64>() {
                Ok(e) if e <= 604_800 => {}
                _ => {
                    return Err((
                        bad,
                        "AuthorizationQueryParametersError",
                        "X-Amz-Expires must be less than a week (in seconds) that is; 604800"
                            .into(),
                    ))
                }
            }
        }
    }
    let Some(signed) = signed else {
        return Ok(None);
    };
    let signed: Vec<String> = signed
        .split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if !signed.iter().any(|h| h == "host") {
        return Err((
            hyper::StatusCode::FORBIDDEN,
            "AccessDenied",
            "The host header must be signed".into(),
        ));
    }
    let unsigned: Vec<&str> = req
        .headers()
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("x-amz-") && !signed.iter().any(|s| s == k))
        .collect();
    if !unsigned.is_empty() {
        return Err((
            hyper::StatusCode::FORBIDDEN,
            "AccessDenied",
            format!(
                "There were headers present in the request which were not signed: {}",
                unsigned.join(", ")
            ),
        ));
    }
    Ok(Some(Signing {
        presigned,
        headers: signed,
    }))
}

/// A connection must send its first request byte within the header timeout: hyper's header
/// timer starts only once a request begins, so a client that connects (and finishes the TLS
/// handshake) but sends nothing would otherwise hold a connection slot forever.
struct FirstByteDeadline<S> {
    inner: S,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> FirstByteDeadline<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        FirstByteDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for FirstByteDeadline<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            std::task::Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                std::task::Poll::Ready(r)
            }
            std::task::Poll::Pending => {
                if let Some(d) = this.deadline.as_mut() {
                    if std::future::Future::poll(d.as_mut(), cx).is_ready() {
                        return std::task::Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no request within the header timeout",
                        )));
                    }
                }
                std::task::Poll::Pending
            }
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FirstByteDeadline<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Registers the SIGTERM and Ctrl-C handlers now and returns what resolves on either. Called
/// before `ready` is printed: a signal that arrives right after it must shut the server down
/// gracefully, not kill it (an `async fn` would register only when first polled, in the
/// accept loop, leaving the default action in place until then).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs the server until SIGTERM or Ctrl-C, then drains connections (up to 30 s).
/// Runs the lifecycle pass every `interval` (the first one `interval` after start).
fn spawn_lifecycle(handlers: s3::S3Handlers, interval: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            let r = handlers.lifecycle_pass(now).await;
            if r != s3::LifecycleReport::default() {
                tracing::info!(
                    expired = r.expired,
                    kept_by_lock = r.locked,
                    aborted_uploads = r.aborted,
                    errors = r.errors,
                    "lifecycle pass"
                );
            }
        }
    });
}

pub async fn run(config: ServerConfig) -> ServerResult<()> {
    let Opened {
        s3: handlers,
        audit,
        kms_api,
        kms,
        notes,
    } = open(&config).await?;
    let metrics = Arc::clone(&audit.metrics);
    let ops = ops::Ops {
        metrics: Arc::clone(&metrics),
        audit: Arc::clone(&audit.log),
        kms,
    };
    let tls = if config.insecure_http {
        None
    } else {
        let files = match (&config.tls_cert, &config.tls_key) {
            (Some(c), Some(k)) => tls::TlsFiles {
                cert: c.clone(),
                key: k.clone(),
                ca: None,
            },
            (None, None) => {
                let mut extra = Vec::new();
                if !config.listen.ip().is_unspecified() && !config.listen.ip().is_loopback() {
                    extra.push(config.listen.ip().to_string());
                }
                tls::ensure_generated(&config.data_dir.join("tls"), &extra)?
            }
            _ => {
                return Err(ServerError::Internal(
                    "--tls-cert and --tls-key go together".into(),
                ))
            }
        };
        Some((tls::server_config(&files.cert, &files.key)?, files))
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServerError::Internal(format!("listen on {}: {e}", config.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    spawn_lifecycle(handlers.clone(), config.lifecycle_interval);
    let meta = Arc::clone(&handlers.meta);
    let domains = config
        .domains
        .iter()
        .flat_map(|d| [format!("{d}:{}", local.port()), d.clone()])
        .collect();
    let service = Front {
        meta,
        domains,
        s3: build_service(handlers, &config, local.port())?,
        kms: kms_api,
        audit,
        peer: None,
        idle: config.limits.body_idle_timeout,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = endpoint_of(scheme, local);
    let acceptor = tls
        .as_ref()
        .map(|(cfg, _)| tokio_rustls::TlsAcceptor::from(Arc::clone(cfg)));
    let ops_endpoint = match config.ops_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| ServerError::Internal(format!("--ops-listen {addr}: {e}")))?;
            let a = l
                .local_addr()
                .map_err(|e| ServerError::Internal(e.to_string()))?;
            spawn_ops(l, ops, acceptor.clone(), config.limits.header_timeout);
            Some(endpoint_of(scheme, a))
        }
        None => None,
    };
    for n in &notes {
        println!("{n}");
    }
    println!("data-dir: {}", abs(&config.data_dir).display());
    println!("endpoint: {endpoint}");
    if let Some(e) = &ops_endpoint {
        println!("ops: {e} (/metrics, /health/live, /health/ready)");
    }
    match &tls {
        Some((_, files)) => {
            let ca = files.ca.as_ref().map(|p| abs(p));
            if let Some(ca) = &ca {
                println!("ca-bundle: {}", ca.display());
                println!(
                    "try: aws s3 ls --endpoint-url {endpoint} --ca-bundle {}",
                    ca.display()
                );
            } else {
                println!("try: aws s3 ls --endpoint-url {endpoint}");
            }
        }
        None => {
            println!(
                "warning: --insecure-http: plain HTTP, credentials and data cross the network unencrypted; SSE-C is refused"
            );
            println!("try: aws s3 ls --endpoint-url {endpoint}");
        }
    }
    let shutdown = shutdown_signal();
    println!("ready");

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let limits = config.limits;
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut conn_builder = ConnBuilder::new(TokioExecutor::new());
    conn_builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    conn_builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let conn_builder = Arc::new(conn_builder);
    tokio::pin!(shutdown);
    loop {
        // At most `max_connections` at once: wait for a slot before accepting.
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let stream = metrics::CountedIo::new(stream, Arc::clone(&metrics));
        let mut service = service.clone();
        service.peer = Some(peer);
        let builder = Arc::clone(&conn_builder);
        match &acceptor {
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _permit = permit;
                    let tls =
                        match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            _ => return,
                        };
                    let io = FirstByteDeadline::new(tls, limits.header_timeout);
                    let conn = builder.serve_connection(TokioIo::new(io), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                });
            }
            None => {
                let io = FirstByteDeadline::new(stream, limits.header_timeout);
                let conn = builder
                    .serve_connection(TokioIo::new(io), service)
                    .into_owned();
                let fut = graceful.watch(conn);
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = fut.await;
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(30)) => {
            tracing::warn!("connections still open after 30 s; exiting");
        }
    }
    Ok(())
}

fn endpoint_of(scheme: &str, local: SocketAddr) -> String {
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else if local.is_ipv6() {
        format!("[{}]", local.ip())
    } else {
        local.ip().to_string()
    };
    format!("{scheme}://{host}:{}", local.port())
}

/// Serves the ops endpoints (ops.rs) on their own listener until the process exits.
fn spawn_ops(
    listener: TcpListener,
    ops: ops::Ops,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: Duration,
) {
    tokio::spawn(async move {
        let mut builder = ConnBuilder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout);
        let builder = Arc::new(builder);
        // Few clients (a scraper, a load balancer's probes): a small bound is plenty.
        let permits = Arc::new(tokio::sync::Semaphore::new(64));
        loop {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("ops accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let ops = ops.clone();
            let acceptor = acceptor.clone();
            let builder = Arc::clone(&builder);
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |req| {
                    let ops = ops.clone();
                    async move { Ok::<_, std::convert::Infallible>(ops.serve(req).await) }
                });
                match acceptor {
                    Some(acceptor) => {
                        let Ok(Ok(tls)) =
                            tokio::time::timeout(header_timeout, acceptor.accept(stream)).await
                        else {
                            return;
                        };
                        let io = FirstByteDeadline::new(tls, header_timeout);
                        let _ = builder.serve_connection(TokioIo::new(io), service).await;
                    }
                    None => {
                        let io = FirstByteDeadline::new(stream, header_timeout);
                        let _ = builder.serve_connection(TokioIo::new(io), service).await;
                    }
                }
            });
        }
    });
}

fn abs(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn range(method: hyper::Method, values: &[&str]) -> Option<Option<String>> {
        let mut headers = hyper::HeaderMap::new();
        for v in values {
            headers.append(hyper::header::RANGE, v.parse().unwrap());
        }
        range_for_s3s(&method, &headers).map(|v| v.map(|v| v.to_str().unwrap().to_owned()))
    }

    #[test]
    fn range_units_follow_rfc_9110() {
        let get = || hyper::Method::GET;
        // Understood as sent: s3s parses it.
        assert_eq!(range(get(), &["bytes=0-1"]), None);
        // Case-insensitive unit: the byte range.
        assert_eq!(range(get(), &["BYTES=0-1"]), Some(Some("bytes=0-1".into())));
        assert_eq!(
            range(hyper::Method::HEAD, &["Bytes=-5"]),
            Some(Some("bytes=-5".into()))
        );
        // Unknown units: ignored.
        assert_eq!(range(get(), &["items=0-1"]), Some(None));
        assert_eq!(range(get(), &["pages=0-"]), Some(None));
        // Not a `unit=` form, not a token, or two headers: left for s3s to refuse.
        for bad in ["bytes 0-1", "=0-1", "by tes=0-1", "bytes", "b\"s=1"] {
            assert_eq!(range(get(), &[bad]), None, "{bad}");
        }
        assert_eq!(range(get(), &["items=0-1", "bytes=0-1"]), None);
        // Only reads have a Range.
        assert_eq!(range(hyper::Method::PUT, &["items=0-1"]), None);
    }
}
