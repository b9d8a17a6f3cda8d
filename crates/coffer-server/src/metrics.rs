//! Prometheus metrics, served in the OpenMetrics text format on the ops listener's `/metrics`
//! (docs/operations.md lists every metric). Encoding and types are `prometheus-client`'s
//! (the Prometheus project's Rust client); Coffer only chooses what to count.
//!
//! Label values that come from requests (operation names, key ids) are bounded: past
//! [`MAX_LABEL_VALUES`] distinct values (or for a value longer than [`MAX_LABEL_LEN`]) new
//! ones are counted as `other`, so a client sending random `X-Amz-Target`s or key ids cannot
//! grow the registry without limit.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coffer_audit::{AuditSink, Event, VerifyReport};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Distinct values one label may take before new ones are counted as `other`.
pub const MAX_LABEL_VALUES: usize = 1000;
/// Longer label values are counted as `other`.
pub const MAX_LABEL_LEN: usize = 256;

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: String,
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    api: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    operation: String,
    key_id: String,
    outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The server's metrics; one per process, shared by the front, the audit trail and the
/// connections.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<OperationLabels>,
    received: Counter,
    sent: Counter,
    key_uses: Family<KeyLabels, Counter>,
    audit_write: Histogram,
    audit_failures: Counter,
    integrity_failures: Counter,
    operations: Mutex<HashSet<String>>,
    keys: Mutex<HashSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("coffer");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by API (s3, kms, admin), operation and HTTP status",
            requests.clone(),
        );
        let latency: HistogramFamily<OperationLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response headers, by API and operation",
            latency.clone(),
        );
        let received = Counter::default();
        registry.register(
            "network_received_bytes",
            "Bytes received on client connections (as on the wire, TLS included)",
            received.clone(),
        );
        let sent = Counter::default();
        registry.register(
            "network_sent_bytes",
            "Bytes sent on client connections (as on the wire, TLS included)",
            sent.clone(),
        );
        let key_uses = Family::<KeyLabels, Counter>::default();
        registry.register(
            "kms_key_operations",
            "Uses of KMS keys: KMS API operations and S3 operations that used a key's data key, \
             by operation, key id and outcome",
            key_uses.clone(),
        );
        // 0.1 ms to ~3.3 s.
        let audit_write = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "audit_write_duration_seconds",
            "Time to append one audit record durably",
            audit_write.clone(),
        );
        let audit_failures = Counter::default();
        registry.register(
            "audit_write_failures",
            "Audit records that could not be written (each fails its request closed)",
            audit_failures.clone(),
        );
        let integrity_failures = Counter::default();
        registry.register(
            "integrity_failures",
            "Stored objects that failed authentication when read",
            integrity_failures.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            received,
            sent,
            key_uses,
            audit_write,
            audit_failures,
            integrity_failures,
            operations: Mutex::default(),
            keys: Mutex::default(),
        }
    }

    /// The metrics in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One answered request: `action` is the audit trail's (`s3:GetObject`, `kms:Encrypt`,
    /// `admin:CreateUser`).
    pub fn request(&self, action: &str, status: u16, elapsed: Duration) {
        let (api, operation) = action.split_once(':').unwrap_or(("other", action));
        let api = match api {
            "s3" | "kms" | "admin" => api,
            _ => "other",
        };
        let operation = bounded(&self.operations, operation);
        self.requests
            .get_or_create(&RequestLabels {
                api: api.to_owned(),
                operation: operation.clone(),
                status: status.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&OperationLabels {
                api: api.to_owned(),
                operation,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A key used by `action` (a KMS API operation, or an S3 operation through a data key).
    pub fn key_use(&self, action: &str, key: Option<&str>, success: bool) {
        // One series per key whichever way it was named: the KMS API reports the key id,
        // the S3 side the key's ARN.
        let key_id = key.map_or_else(String::new, |k| {
            bounded(&self.keys, k.rsplit_once(":key/").map_or(k, |(_, id)| id))
        });
        self.key_uses
            .get_or_create(&KeyLabels {
                operation: bounded(&self.operations, action),
                key_id,
                outcome: if success { "success" } else { "failure" }.to_owned(),
            })
            .inc();
    }

    pub fn integrity_failure(&self) {
        self.integrity_failures.inc();
    }
}

/// `value` if it is short and already known or there is still room for it, else `other`.
fn bounded(seen: &Mutex<HashSet<String>>, value: &str) -> String {
    if value.len() > MAX_LABEL_LEN {
        return "other".to_owned();
    }
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    if seen.contains(value) {
        return value.to_owned();
    }
    if seen.len() >= MAX_LABEL_VALUES {
        return "other".to_owned();
    }
    seen.insert(value.to_owned());
    value.to_owned()
}

/// An audit sink whose appends are timed and whose failures are counted.
pub struct MeteredSink {
    pub inner: Arc<dyn AuditSink>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl AuditSink for MeteredSink {
    async fn append(&self, event: Event) -> coffer_audit::Result<u64> {
        let started = Instant::now();
        let r = self.inner.append(event).await;
        self.metrics
            .audit_write
            .observe(started.elapsed().as_secs_f64());
        if r.is_err() {
            self.metrics.audit_failures.inc();
        }
        r
    }

    fn verify(&self) -> coffer_audit::Result<VerifyReport> {
        self.inner.verify()
    }

    fn ready(&self) -> Result<(), String> {
        self.inner.ready()
    }
}

/// A connection whose bytes are counted (wraps the TCP stream, so TLS is included).
pub struct CountedIo<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> CountedIo<S> {
    pub fn new(inner: S, metrics: Arc<Metrics>) -> Self {
        CountedIo { inner, metrics }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.metrics.received.inc_by(n as u64);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.metrics.sent.inc_by(*n as u64);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            self.metrics.sent.inc_by(*n as u64);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_keys_are_counted_with_bounded_labels() {
        let m = Metrics::new();
        m.request("s3:GetObject", 200, Duration::from_millis(3));
        m.request("s3:GetObject", 200, Duration::from_millis(5));
        m.request("kms:Encrypt", 400, Duration::from_millis(1));
        m.key_use("kms:Encrypt", Some("arn:aws:kms:r:a:key/k1"), true);
        m.key_use("kms:Encrypt", Some("k1"), true);
        for i in 0..MAX_LABEL_VALUES + 10 {
            m.request(&format!("kms:Junk{i}"), 400, Duration::ZERO);
        }
        let text = m.encode();
        assert!(
            text.contains(
                r#"coffer_requests_total{api="s3",operation="GetObject",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"coffer_kms_key_operations_total{operation="kms:Encrypt",key_id="k1",outcome="success"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"coffer_request_duration_seconds_count{api="s3",operation="GetObject"} 2"#
            ),
            "{text}"
        );
        // GetObject, Encrypt and kms:Encrypt are three of the bounded values; the junk past
        // the bound is one `other` series.
        let junk = text
            .lines()
            .filter(|l| l.starts_with(r#"coffer_requests_total{api="kms",operation="Junk"#))
            .count();
        assert_eq!(junk, MAX_LABEL_VALUES - 3, "junk series");
        assert!(
            text.contains(r#"coffer_requests_total{api="kms",operation="other",status="400"} 13"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
