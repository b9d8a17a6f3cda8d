//! The ops listener (`--ops-listen`): `/metrics`, `/health/live` and `/health/ready` on an
//! address of their own, so that a load balancer or Prometheus reaches them without S3
//! credentials and no bucket name is taken from S3's path space. TLS as the S3 listener
//! (same certificate); docs/operations.md.

use std::sync::Arc;

use coffer_audit::AuditSink;
use hyper::{header, Method, Request, Response, StatusCode};

use crate::metrics::{self, Metrics};

/// What the ops endpoints read.
#[derive(Clone)]
pub struct Ops {
    pub metrics: Arc<Metrics>,
    pub audit: Arc<dyn AuditSink>,
    pub kms: Arc<coffer_kms::Kms>,
}

impl Ops {
    /// Readiness: `Err` names each check that fails (`audit: …`, `kms: …`).
    pub async fn ready(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let audit = Arc::clone(&self.audit);
        // statvfs: a blocking call, however short.
        match tokio::task::spawn_blocking(move || audit.ready()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("audit: {e}")),
            Err(e) => problems.push(format!("audit: check failed: {e}")),
        }
        if let Err(e) = self.kms.ready().await {
            problems.push(format!("kms: {e}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    pub async fn serve<B>(&self, req: Request<B>) -> Response<s3s::Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        match req.uri().path() {
            "/metrics" => {
                let mut r = text(StatusCode::OK, &self.metrics.encode());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(metrics::CONTENT_TYPE),
                );
                r
            }
            "/health/live" => json(StatusCode::OK, &serde_json::json!({"status": "live"})),
            "/health/ready" => match self.ready().await {
                Ok(()) => json(
                    StatusCode::OK,
                    &serde_json::json!({"status": "ready", "problems": []}),
                ),
                Err(problems) => json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "not ready", "problems": problems}),
                ),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /metrics, /health/live, /health/ready\n",
            ),
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<s3s::Body> {
    let mut r = Response::new(s3s::Body::from(body.to_owned()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<s3s::Body> {
    let mut r = Response::new(s3s::Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}
