//! What handling a request produced, recorded as it happens: the error code it answered with,
//! whether a stored object failed authentication, the KMS key and version it used. The audit
//! middleware (coffer-server's `audit.rs`) reads these typed outcomes; it never re-derives
//! one from the response.

use std::sync::Arc;

use http::{HeaderValue, Response};

/// The key an S3 operation used (SSE-KMS): put in the response's extensions by the
/// handler that used it, read here. The audit trail records what the handler did, not what
/// a response header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUsed {
    /// The key's ARN.
    pub key_arn: String,
    /// The key version that wrapped (PUT, copy, part) or unwrapped (GET) the data key.
    pub key_version: u32,
}

impl KeyUsed {
    /// The key `proof` allowed, at the version the blob's wrapped data key names.
    pub fn new(proof: &coffer_kms::KeyUse, key_version: u32) -> KeyUsed {
        KeyUsed {
            key_arn: proof.key_arn().to_owned(),
            key_version,
        }
    }
}

/// What the code that handled a request says went wrong, recorded as it happens: the
/// error code it answered with and whether a stored object failed authentication. The
/// audit middleware reads this — it never re-derives an outcome from the response.
///
/// The slot is per request: [`Recorder::scope`] runs the request's future with its own
/// slot (a task-local; s3s calls the handlers inside that future, on the same task), and
/// the places that turn a failure into an S3 error ([`Recorder::error`]: the conversion
/// from `ServerError`, the IAM access hook, the credential lookup, the front's own
/// refusals) fill it in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The error code of the answer (the last one recorded: the error the handler returned).
    pub error_code: Option<String>,
    /// A stored object (or its wrapped data key) failed authentication.
    pub integrity: bool,
}

/// One request's slot: its id (for the `<RequestId>` of its error bodies) and what it
/// recorded.
struct Slot {
    request_id: String,
    recorded: Recorded,
}

tokio::task_local! {
    static SLOT: Arc<std::sync::Mutex<Slot>>;
}

/// Records into the current request's [`Recorded`] slot.
pub struct Recorder;

impl Recorder {
    /// Runs `fut` as request `request_id`, with a fresh slot; returns its output and what
    /// was recorded.
    pub async fn scope<F: std::future::Future>(request_id: &str, fut: F) -> (F::Output, Recorded) {
        let slot = Arc::new(std::sync::Mutex::new(Slot {
            request_id: request_id.to_owned(),
            recorded: Recorded::default(),
        }));
        let out = SLOT.scope(Arc::clone(&slot), fut).await;
        let recorded = std::mem::take(&mut slot.lock().unwrap_or_else(|p| p.into_inner()).recorded);
        (out, recorded)
    }

    /// The request is answered with error `code`; `integrity` if a stored object failed
    /// authentication. Outside a request scope (a unit test, a background task) this does
    /// nothing.
    pub fn error(code: &str, integrity: bool) {
        let _ = SLOT.try_with(|slot| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            s.recorded.error_code = Some(code.to_owned());
            s.recorded.integrity |= integrity;
        });
    }

    /// The id of the request being handled (`None` outside a request scope).
    pub fn request_id() -> Option<String> {
        SLOT.try_with(|slot| {
            slot.lock()
                .unwrap_or_else(|p| p.into_inner())
                .request_id
                .clone()
        })
        .ok()
    }

    /// Records `err` (an S3 error about to be returned) and passes it on, carrying the
    /// request's id for its error body's `<RequestId>` (as S3's error bodies do).
    pub fn s3_error(mut err: s3s::S3Error, integrity: bool) -> s3s::S3Error {
        Recorder::error(err.code().as_str(), integrity);
        if err.request_id().is_none() {
            if let Some(id) = Recorder::request_id() {
                err.set_request_id(id);
            }
        }
        err
    }
}

/// Why a streamed response body broke after its status line was sent (a GET whose later
/// window failed): the audit layer finds this in the body error's chain and records
/// `IntegrityError` or `ResponseBodyFailed` from the flag, not from the message.
#[derive(Debug)]
pub struct BodyFailure {
    /// The stored object failed authentication.
    pub integrity: bool,
    /// For the connection's error (never sent to the client; hyper cuts the connection).
    pub detail: String,
}

impl std::fmt::Display for BodyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for BodyFailure {}

/// An S3 XML error answered by Coffer's front (before s3s runs), recorded as the outcome.
pub fn error_response(status: http::StatusCode, code: &str, msg: &str) -> Response<s3s::Body> {
    Recorder::error(code, false);
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let request_id = Recorder::request_id()
        .map(|id| format!("<RequestId>{}</RequestId>", esc(&id)))
        .unwrap_or_default();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>{request_id}</Error>",
        esc(code),
        esc(msg)
    );
    let mut resp = Response::new(s3s::Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerError;

    /// Error bodies carry the request's id, as S3's do (`<RequestId>`), whether the error
    /// comes from a handler or from the front; outside a request there is none.
    #[tokio::test]
    async fn errors_carry_the_request_id() {
        let (err, recorded) = Recorder::scope("4442587FB7D0A2F9", async {
            s3s::S3Error::from(ServerError::NoSuchKey)
        })
        .await;
        assert_eq!(err.request_id(), Some("4442587FB7D0A2F9"));
        assert_eq!(recorded.error_code.as_deref(), Some("NoSuchKey"));

        let (resp, _) = Recorder::scope("R&1", async {
            error_response(http::StatusCode::BAD_REQUEST, "InvalidArgument", "bad")
        })
        .await;
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(
            std::str::from_utf8(&body)
                .unwrap()
                .ends_with("<Code>InvalidArgument</Code><Message>bad</Message><RequestId>R&amp;1</RequestId></Error>"),
            "{body:?}"
        );

        assert_eq!(Recorder::request_id(), None);
        assert_eq!(
            s3s::S3Error::from(ServerError::NoSuchKey).request_id(),
            None
        );
    }
}
