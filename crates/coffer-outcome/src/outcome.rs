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

tokio::task_local! {
    static RECORDED: Arc<std::sync::Mutex<Recorded>>;
}

/// Records into the current request's [`Recorded`] slot.
pub struct Recorder;

impl Recorder {
    /// Runs `fut` with a fresh slot; returns its output and what was recorded.
    pub async fn scope<F: std::future::Future>(fut: F) -> (F::Output, Recorded) {
        let slot = Arc::new(std::sync::Mutex::new(Recorded::default()));
        let out = RECORDED.scope(Arc::clone(&slot), fut).await;
        let recorded = std::mem::take(&mut *slot.lock().unwrap_or_else(|p| p.into_inner()));
        (out, recorded)
    }

    /// The request is answered with error `code`; `integrity` if a stored object failed
    /// authentication. Outside a request scope (a unit test, a background task) this does
    /// nothing.
    pub fn error(code: &str, integrity: bool) {
        let _ = RECORDED.try_with(|slot| {
            let mut r = slot.lock().unwrap_or_else(|p| p.into_inner());
            r.error_code = Some(code.to_owned());
            r.integrity |= integrity;
        });
    }

    /// Records `err` (an S3 error about to be returned) and passes it on.
    pub fn s3_error(err: s3s::S3Error, integrity: bool) -> s3s::S3Error {
        Recorder::error(err.code().as_str(), integrity);
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
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>",
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
