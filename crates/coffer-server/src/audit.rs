//! The server side of the audit trail (spec/audit-log.md): every request — S3, KMS API,
//! admin API, refused or not — gets a `request` record before it runs and a `response`
//! record with its outcome before the response goes out.
//!
//! **Fail-closed**: if the request record cannot be written durably, the request is refused
//! with `503 ServiceUnavailable` and nothing runs; if the response record cannot be written,
//! the client gets `500 InternalError` instead of the result (the request record is already
//! on disk, so the operation is never unrecorded). A response body that fails while
//! streaming (a stored object that fails authentication after the first window) gets a
//! further `response` record with outcome `failure`.
//!
//! What is recorded: time, request id, identity (the ARN behind the access key the request
//! names), access key id, source address, action (`s3:<Operation>`, `kms:<Operation>`,
//! `admin:<Operation>`), resource, KMS key id and version, the encryption context's keys,
//! outcome and error code. Never secrets, signatures, key material or object data.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use coffer_audit::{AuditSink, Event, Outcome, Phase};
use http::{HeaderMap, HeaderValue, Method, Request, Response};

use coffer_admin_api::AdminAudit;
use coffer_iam::iam::Iam;
use coffer_iam::principal::IdentityLookup;
use coffer_iam::request::Query;
use coffer_kms_api::KmsAudit;
use coffer_outcome::{error_response, BodyFailure, KeyUsed, Recorded};

/// The audit trail and what it needs to name callers.
pub struct Auditor {
    /// The server opens a `coffer_audit::AuditLog` (the files under `data/audit`); any
    /// sink that keeps the `AuditSink` contract will do.
    pub log: Arc<dyn AuditSink>,
    pub iam: Arc<Iam>,
    /// Counted here: key uses and integrity failures, read off the responses.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// What is known about a request before it runs.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    pub request_id: String,
    pub identity: Option<String>,
    pub access_key: Option<String>,
    pub source: Option<String>,
    pub action: String,
    pub resource: Option<String>,
    pub context: Vec<(String, String)>,
}

/// The S3 operation a request asks for, from its method, path and query (path-style
/// addressing; virtual-host requests are named by their path).
pub fn s3_operation(
    method: &Method,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
) -> &'static str {
    let trimmed = path.trim_start_matches('/');
    let (bucket, key) = match trimmed.split_once('/') {
        Some((b, k)) if !k.is_empty() => (b, Some(k)),
        Some((b, _)) => (b, None),
        None => (trimmed, None),
    };
    let q = |n| query.has(n);
    let copy = headers.contains_key("x-amz-copy-source");
    match (bucket.is_empty(), key.is_some(), method.as_str()) {
        (true, _, "GET") => "ListBuckets",
        (true, _, _) => "Unknown",
        (false, false, "GET") if q("list-type") => "ListObjectsV2",
        (false, false, "GET") if q("versions") => "ListObjectVersions",
        (false, false, "GET") if q("uploads") => "ListMultipartUploads",
        (false, false, "GET") if q("encryption") => "GetBucketEncryption",
        (false, false, "GET") if q("policy") => "GetBucketPolicy",
        (false, false, "GET") if q("location") => "GetBucketLocation",
        (false, false, "GET") if q("versioning") => "GetBucketVersioning",
        (false, false, "GET") => "ListObjects",
        (false, false, "HEAD") => "HeadBucket",
        (false, false, "PUT") if q("encryption") => "PutBucketEncryption",
        (false, false, "PUT") if q("policy") => "PutBucketPolicy",
        (false, false, "PUT") => "CreateBucket",
        (false, false, "DELETE") if q("encryption") => "DeleteBucketEncryption",
        (false, false, "DELETE") if q("policy") => "DeleteBucketPolicy",
        (false, false, "DELETE") => "DeleteBucket",
        (false, false, "POST") if q("delete") => "DeleteObjects",
        (false, true, "GET") if q("attributes") => "GetObjectAttributes",
        (false, true, "GET") if q("uploadId") => "ListParts",
        (false, true, "GET") => "GetObject",
        (false, true, "HEAD") => "HeadObject",
        (false, true, "PUT") if q("uploadId") && copy => "UploadPartCopy",
        (false, true, "PUT") if q("uploadId") => "UploadPart",
        (false, true, "PUT") if copy => "CopyObject",
        (false, true, "PUT") => "PutObject",
        (false, true, "DELETE") if q("uploadId") => "AbortMultipartUpload",
        (false, true, "DELETE") => "DeleteObject",
        (false, true, "POST") if q("uploads") => "CreateMultipartUpload",
        (false, true, "POST") if q("uploadId") => "CompleteMultipartUpload",
        _ => "Unknown",
    }
}

/// The keys of an `x-amz-server-side-encryption-context` header (base64 JSON object).
fn sse_context_keys(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get("x-amz-server-side-encryption-context")
        .and_then(|v| v.to_str().ok())
        .and_then(|b64| coffer_store::sse::parse_kms_context(b64).ok())
        .map(|m| m.into_iter().collect())
        .unwrap_or_default()
}

impl RequestInfo {
    /// `query` is `req`'s, parsed once by the front.
    pub fn of<B>(
        req: &Request<B>,
        query: &Query,
        peer: Option<SocketAddr>,
        iam: &Iam,
    ) -> RequestInfo {
        let access_key = coffer_iam::request::access_key(req, query);
        let identity = access_key
            .as_deref()
            .and_then(|ak| iam.lookup(ak))
            .map(|(_, p)| p.arn().to_owned());
        let target = req
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let path = req.uri().path();
        let (action, resource) = if let Some(op) = target.strip_prefix("TrentService.") {
            (format!("kms:{op}"), None)
        } else if let Some(op) = target.strip_prefix(coffer_admin_api::TARGET_PREFIX) {
            (format!("admin:{op}"), None)
        } else {
            let op = s3_operation(req.method(), path, query, req.headers());
            let p = coffer_iam::request::decode_or_keep(path.trim_start_matches('/'));
            let resource = (!p.is_empty()).then(|| format!("arn:aws:s3:::{p}"));
            (format!("s3:{op}"), resource)
        };
        RequestInfo {
            request_id: uuid::Uuid::new_v4().simple().to_string(),
            identity,
            access_key,
            source: peer.map(|p| p.to_string()),
            action,
            resource,
            context: sse_context_keys(req.headers()),
        }
    }

    fn event(&self, phase: Phase, outcome: Outcome) -> Event {
        clamp(Event {
            time: None,
            request_id: self.request_id.clone(),
            phase,
            identity: self.identity.clone(),
            access_key: self.access_key.clone(),
            source: self.source.clone(),
            action: self.action.clone(),
            resource: self.resource.clone(),
            key_id: None,
            key_version: None,
            context: self.context.clone(),
            outcome,
            error_code: None,
        })
    }
}

/// The log refuses over-long fields (spec/audit-log.md §2); a hostile request (a 16 KiB path,
/// 100 context entries) must still be recorded, so long values are cut, marked `…`.
fn clamp(mut ev: Event) -> Event {
    const MAX: usize = 1024;
    let cut = |s: &mut String| {
        if s.len() > MAX {
            let mut end = MAX;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.push('…');
        }
    };
    for f in [
        &mut ev.identity,
        &mut ev.access_key,
        &mut ev.source,
        &mut ev.resource,
        &mut ev.key_id,
        &mut ev.error_code,
    ]
    .into_iter()
    .flatten()
    {
        cut(f);
    }
    cut(&mut ev.action);
    ev.context.truncate(32);
    for (k, v) in &mut ev.context {
        cut(k);
        cut(v);
    }
    ev
}

/// The [`BodyFailure`] somewhere in `e`'s source chain.
fn body_failure<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyFailure> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(f) = err.downcast_ref::<BodyFailure>() {
            return Some(f);
        }
        cur = err.source();
    }
    None
}

/// The `<Code>` of an error body **s3s itself** wrote: the one outcome not recorded by
/// Coffer's code. s3s 0.14 answers its own checks (signature mismatch, malformed requests,
/// operations Coffer does not implement) by serializing the `S3Error` and dropping it; it
/// has no hook to observe that error. Only used when nothing was [`Recorded`], and never
/// for integrity, which only Coffer's code can detect.
fn s3s_error_code(body: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    let start = s.find("<Code>")? + 6;
    let end = s[start..].find("</Code>")? + start;
    Some(s[start..end].to_owned())
}

impl Auditor {
    /// The `request` record; `Err` means the request must not run.
    pub async fn request(&self, info: &RequestInfo) -> Result<(), Response<s3s::Body>> {
        record_request(&*self.log, info).await
    }

    /// The `response` record; returns the response to send (a 500 if it cannot be written).
    pub async fn response(
        self: &Arc<Self>,
        info: RequestInfo,
        mut resp: Response<s3s::Body>,
        recorded: Recorded,
    ) -> Response<s3s::Body> {
        let status = resp.status();
        let mut ev = info.event(
            Phase::Response,
            if status.is_client_error() || status.is_server_error() {
                Outcome::Failure
            } else {
                Outcome::Success
            },
        );
        let success = ev.outcome == Outcome::Success;
        if let Some(k) = resp.extensions_mut().remove::<KmsAudit>() {
            self.metrics
                .key_use(&k.action, k.key_id.as_deref(), success);
            ev.action = k.action;
            ev.key_id = k.key_id;
            ev.key_version = k.key_version;
            // The KMS API reports only the keys (values never leave it).
            ev.context = k
                .context_keys
                .into_iter()
                .map(|k| (k, String::new()))
                .collect();
            ev.error_code = k.error_code;
        } else if let Some(a) = resp.extensions_mut().remove::<AdminAudit>() {
            ev.action = a.action;
            ev.resource = a.resource;
            ev.error_code = a.error_code;
        } else {
            if let Some(k) = resp.extensions_mut().remove::<KeyUsed>() {
                self.metrics.key_use(&ev.action, Some(&k.key_arn), success);
                ev.key_id = Some(k.key_arn);
                ev.key_version = Some(k.key_version);
            }
            if ev.outcome == Outcome::Failure {
                // A stored object that failed authentication is an InternalError to the
                // client; the trail names it.
                ev.error_code = Some(if recorded.integrity {
                    self.metrics.integrity_failure();
                    "IntegrityError".to_owned()
                } else if let Some(code) = recorded.error_code {
                    code
                } else {
                    resp.body()
                        .bytes()
                        .as_deref()
                        .and_then(s3s_error_code)
                        .unwrap_or_else(|| format!("HTTP{}", status.as_u16()))
                });
            }
        }
        if let Err(refused) = record_response(&*self.log, ev, &info.request_id).await {
            return refused;
        }
        if let Ok(v) = HeaderValue::from_str(&info.request_id) {
            resp.headers_mut().insert("x-amz-request-id", v);
        }
        if status.is_success() && !resp.body().is_end_stream_hint() {
            let auditor = Arc::clone(self);
            let (parts, body) = resp.into_parts();
            let body = AuditedBody {
                inner: body,
                on_error: Some(Box::new(move |integrity: bool| {
                    if integrity {
                        auditor.metrics.integrity_failure();
                    }
                    let mut ev = info.event(Phase::Response, Outcome::Failure);
                    ev.error_code = Some(
                        if integrity {
                            "IntegrityError"
                        } else {
                            "ResponseBodyFailed"
                        }
                        .to_owned(),
                    );
                    // The status line is gone: record the failure; nothing else can be done.
                    // A task, not a blocking thread: poll_frame cannot wait for the disk.
                    tokio::spawn(async move {
                        if let Err(e) = auditor.log.append(ev).await {
                            tracing::error!("audit log: {e}");
                        }
                    });
                })),
            };
            return Response::from_parts(parts, s3s::Body::http_body(body));
        }
        resp
    }
}

/// Appends the `request` record: `Err` is the 503 to answer instead of running the request
/// (fail-closed: the sink did not acknowledge the record).
async fn record_request(
    log: &dyn AuditSink,
    info: &RequestInfo,
) -> Result<(), Response<s3s::Body>> {
    match log
        .append(info.event(Phase::Request, Outcome::Pending))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::error!("audit log: {e}; refusing request {}", info.request_id);
            Err(error_response(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The audit log cannot be written; the request was not performed.",
            ))
        }
    }
}

/// Appends a `response` record: `Err` is the 500 to send instead of the result (the
/// operation ran, its request record is on disk, its outcome is not).
async fn record_response(
    log: &dyn AuditSink,
    ev: Event,
    request_id: &str,
) -> Result<(), Response<s3s::Body>> {
    log.append(clamp(ev)).await.map(drop).map_err(|e| {
        tracing::error!("audit log: {e}; failing request {request_id}");
        error_response(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "The audit log cannot be written; the outcome of the request is unknown.",
        )
    })
}

/// Helper to tell a body that is known to be empty.
trait EndHint {
    fn is_end_stream_hint(&self) -> bool;
}

impl EndHint for s3s::Body {
    fn is_end_stream_hint(&self) -> bool {
        http_body::Body::is_end_stream(self) || self.bytes().is_some()
    }
}

type OnError = Box<dyn FnOnce(bool) + Send + Sync>;

/// A streamed response body that records a failure in the audit log if it breaks.
struct AuditedBody {
    inner: s3s::Body,
    on_error: Option<OnError>,
}

impl http_body::Body for AuditedBody {
    type Data = bytes::Bytes;
    type Error = s3s::StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &r {
            if let Some(f) = self.on_error.take() {
                f(body_failure(&**e).is_some_and(|b| b.integrity));
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_outcome::Recorder;

    #[test]
    fn operations() {
        let h = HeaderMap::new();
        let mut copy = HeaderMap::new();
        copy.insert("x-amz-copy-source", HeaderValue::from_static("/b/k"));
        let cases: &[(&str, &str, &str, &HeaderMap, &str)] = &[
            ("GET", "/", "", &h, "ListBuckets"),
            ("GET", "/b", "list-type=2&prefix=a", &h, "ListObjectsV2"),
            ("GET", "/b/", "", &h, "ListObjects"),
            ("PUT", "/b", "", &h, "CreateBucket"),
            ("PUT", "/b", "policy", &h, "PutBucketPolicy"),
            ("POST", "/b", "delete", &h, "DeleteObjects"),
            ("GET", "/b/k/x", "", &h, "GetObject"),
            ("HEAD", "/b/k", "", &h, "HeadObject"),
            ("PUT", "/b/k", "", &h, "PutObject"),
            ("PUT", "/b/k", "", &copy, "CopyObject"),
            ("PUT", "/b/k", "partNumber=1&uploadId=u", &h, "UploadPart"),
            (
                "PUT",
                "/b/k",
                "partNumber=1&uploadId=u",
                &copy,
                "UploadPartCopy",
            ),
            ("POST", "/b/k", "uploads", &h, "CreateMultipartUpload"),
            ("POST", "/b/k", "uploadId=u", &h, "CompleteMultipartUpload"),
            ("DELETE", "/b/k", "uploadId=u", &h, "AbortMultipartUpload"),
            ("DELETE", "/b/k", "", &h, "DeleteObject"),
            ("GET", "/b/k", "attributes", &h, "GetObjectAttributes"),
        ];
        for (m, p, q, hs, want) in cases {
            let m: Method = m.parse().unwrap();
            let query = Query::parse(Some(q));
            assert_eq!(s3_operation(&m, p, &query, hs), *want, "{m} {p}?{q}");
        }
    }

    fn info() -> RequestInfo {
        RequestInfo {
            request_id: "req-1".into(),
            identity: Some("arn:aws:iam::000000000000:user/alice".into()),
            access_key: Some("CFACCESSKEY".into()),
            source: Some("127.0.0.1:50000".into()),
            action: "s3:GetObject".into(),
            resource: Some("arn:aws:s3:::b/k".into()),
            context: Vec::new(),
        }
    }

    /// The server's side of the fail-closed rule, through the trait: an unacknowledged
    /// request record refuses the request (503), an unacknowledged response record replaces
    /// the result (500), and nothing is written once the sink has failed.
    #[tokio::test]
    async fn a_sink_that_cannot_write_refuses_the_request() {
        let sink = coffer_audit::MemorySink::new(
            coffer_audit::SecretKey::from_slice(&[7; 32]).unwrap(),
            &coffer_audit::AuditOptions::default(),
        );
        let response = || info().event(Phase::Response, Outcome::Success);
        record_request(&sink, &info()).await.unwrap();
        record_response(&sink, response(), "req-1").await.unwrap();
        assert_eq!(sink.lines().len(), 2);

        sink.set_storage_failing(true);
        let refused = record_request(&sink, &info()).await.unwrap_err();
        assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            s3s_error_code(&refused.body().bytes().unwrap()).as_deref(),
            Some("ServiceUnavailable")
        );
        sink.set_storage_failing(false);
        let failed = record_response(&sink, response(), "req-1")
            .await
            .unwrap_err();
        assert_eq!(failed.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            s3s_error_code(&failed.body().bytes().unwrap()).as_deref(),
            Some("InternalError")
        );
        assert_eq!(sink.lines().len(), 2);
        let report = coffer_audit::AuditSink::verify(&sink).unwrap();
        assert!(report.is_intact(), "{:?}", report.first_bad);
    }

    async fn auditor() -> (Arc<Auditor>, Arc<coffer_audit::MemorySink>) {
        let sink = Arc::new(coffer_audit::MemorySink::new(
            coffer_audit::SecretKey::from_slice(&[7; 32]).unwrap(),
            &coffer_audit::AuditOptions::default(),
        ));
        let store = Arc::new(coffer_meta::MemoryStore::new());
        let iam = Arc::new(Iam::open(store).await.unwrap());
        let log: Arc<dyn AuditSink> = Arc::clone(&sink) as _;
        let metrics = Arc::default();
        (Arc::new(Auditor { log, iam, metrics }), sink)
    }

    fn error_codes(sink: &coffer_audit::MemorySink) -> Vec<Option<String>> {
        sink.lines()
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_slice(l).unwrap();
                v["error_code"].as_str().map(str::to_owned)
            })
            .collect()
    }

    /// The outcome recorded by the code that failed is what the trail says, whatever the
    /// answer's text: an integrity failure whose message does not say so is an
    /// `IntegrityError`; an ordinary error whose message mentions an integrity check is not.
    #[tokio::test]
    async fn the_trail_records_what_the_handler_recorded_not_the_message() {
        use coffer_outcome::ServerError;
        let (auditor, sink) = auditor().await;

        let ((), recorded) = Recorder::scope("req-1", async {
            let _ = s3s::S3Error::from(ServerError::Integrity("tag mismatch".into()));
        })
        .await;
        assert!(recorded.integrity);
        assert_eq!(recorded.error_code.as_deref(), Some("InternalError"));
        let resp = error_response(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "x",
        );
        auditor.response(info(), resp, recorded).await;

        let ((), recorded) = Recorder::scope("req-1", async {
            let _ = s3s::S3Error::from(ServerError::s3(
                s3s::S3ErrorCode::NoSuchKey,
                "no integrity check could help",
            ));
        })
        .await;
        assert!(!recorded.integrity);
        let resp = error_response(
            http::StatusCode::NOT_FOUND,
            "NoSuchKey",
            "the stored object failed its integrity check",
        );
        auditor.response(info(), resp, recorded).await;

        // Each request has its own slot: nothing leaks from one scope into the next.
        let ((), recorded) = Recorder::scope("req-1", async {}).await;
        assert_eq!(recorded, Recorded::default());
        // Outside any request scope, recording is a no-op (and does not panic).
        Recorder::error("AccessDenied", true);

        assert_eq!(
            error_codes(&sink),
            [
                Some("IntegrityError".to_owned()),
                Some("NoSuchKey".to_owned())
            ]
        );
    }

    /// A wrapper like the one the GET path puts around its channel's errors.
    #[derive(Debug)]
    struct Wrapped(BodyFailure);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "wrapped: {}", self.0)
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// A body that breaks after its first chunk: the record's code comes from the
    /// [`BodyFailure`] flag found in the error's chain, not from its text.
    #[tokio::test]
    async fn a_broken_body_is_recorded_from_its_typed_failure() {
        for (integrity, detail, want) in [
            (true, "read aborted", "IntegrityError"),
            (
                false,
                "integrity check: disk went away",
                "ResponseBodyFailed",
            ),
        ] {
            let (auditor, sink) = auditor().await;
            let chunks: Vec<Result<bytes::Bytes, Wrapped>> = vec![
                Ok(bytes::Bytes::from_static(b"first window")),
                Err(Wrapped(BodyFailure {
                    integrity,
                    detail: detail.to_owned(),
                })),
            ];
            let body =
                s3s::Body::from(s3s::dto::StreamingBlob::wrap(futures::stream::iter(chunks)));
            let resp = Response::new(body);
            let resp = auditor.response(info(), resp, Recorded::default()).await;
            let mut body = resp.into_body();
            let first = http_body_util::BodyExt::frame(&mut body).await.unwrap();
            assert!(first.is_ok());
            let broken = http_body_util::BodyExt::frame(&mut body).await.unwrap();
            assert!(broken.is_err());
            // The failure record is appended by a task.
            for _ in 0..100 {
                if sink.lines().len() == 2 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert_eq!(
                error_codes(&sink),
                [None, Some(want.to_owned())],
                "{detail}"
            );
        }
    }

    #[test]
    fn xml_codes() {
        assert_eq!(
            s3s_error_code(b"<Error><Code>NoSuchKey</Code><Message>m</Message></Error>").as_deref(),
            Some("NoSuchKey")
        );
        assert_eq!(s3s_error_code(b"garbage"), None);
    }
}
