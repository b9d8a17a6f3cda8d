//! Errors of the client, by cause, each with a hint for the usual mistake behind it.

use std::fmt;

/// Why a client operation failed.
///
/// `Display` gives one line of cause and, where a common mistake explains it, a second line
/// starting with `hint:`. No variant carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Encrypting or decrypting the object failed. For a decryption this means the object
    /// is not authentic under the key and context used: altered, truncated, moved to another
    /// bucket or key, or a wrong key.
    #[error("{0}")]
    Format(#[from] coffer_format::Error),
    /// The KMS refused or failed a request.
    #[error("KMS {operation}: {code}: {message}{}", hint_line(hint))]
    Kms {
        operation: &'static str,
        code: String,
        message: String,
        hint: Option<String>,
    },
    /// The object store refused or failed a request.
    #[error("S3 {operation} {target}: {code}: {message}{}", hint_line(hint))]
    S3 {
        operation: &'static str,
        target: String,
        code: String,
        message: String,
        hint: Option<String>,
    },
    /// The object names a key-encryption key the caller did not supply.
    #[error("{0}")]
    MissingKek(String),
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A caller-supplied setting is unusable (a CA bundle, a key id, a passphrase…).
    #[error("{0}")]
    Invalid(String),
}

fn hint_line(hint: &Option<String>) -> HintLine<'_> {
    HintLine(hint.as_deref())
}

struct HintLine<'a>(Option<&'a str>);

impl fmt::Display for HintLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(h) => write!(f, "\nhint: {h}"),
            None => Ok(()),
        }
    }
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// True when the object failed authentication (as opposed to a transport or key-service
    /// failure).
    pub fn is_integrity(&self) -> bool {
        matches!(self, Error::Format(e) if e.is_integrity())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The code, message and hint of an SDK error, whatever the operation.
pub(crate) fn describe_sdk_error<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> (String, String, Option<String>)
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_s3::error::SdkError;
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            // An answer to HEAD has no body, so no error code: name it after the status, as
            // botocore and the AWS CLI do (400 BadRequest, 403 Forbidden, 404 NotFound).
            let code = match (e.code(), se.raw().status().as_u16()) {
                (Some(c), _) => c.to_owned(),
                (None, 400) => "BadRequest".to_owned(),
                (None, 403) => "Forbidden".to_owned(),
                (None, 404) => "NotFound".to_owned(),
                (None, status) => format!("HTTP{status}"),
            };
            let message = e.message().unwrap_or_default().to_owned();
            let hint = match code.as_str() {
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "IncompleteSignatureException" => Some(
                    "check the credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, \
                     --profile, or the profile's access_key_id / secret_access_key"
                        .to_owned(),
                ),
                _ => None,
            };
            (code, message, hint)
        }
        other => {
            let mut message = other.to_string();
            let mut source: Option<&dyn std::error::Error> = std::error::Error::source(other);
            while let Some(s) = source {
                message.push_str(": ");
                message.push_str(&s.to_string());
                source = s.source();
            }
            let lower = message.to_ascii_lowercase();
            let hint = if lower.contains("unknownissuer")
                || lower.contains("certificate")
                || lower.contains("invalid peer")
            {
                Some(
                    "the server's TLS certificate is not trusted: pass --ca-bundle \
                     <data-dir>/tls/ca.pem (or set AWS_CA_BUNDLE / ca_bundle in the profile)"
                        .to_owned(),
                )
            } else if lower.contains("connection refused") || lower.contains("dns") {
                Some(
                    "is the endpoint right and the server running? (--endpoint, AWS_ENDPOINT_URL)"
                        .to_owned(),
                )
            } else {
                None
            };
            let code = match other {
                SdkError::DispatchFailure(_) => "ConnectionFailed",
                SdkError::TimeoutError(_) => "Timeout",
                SdkError::ResponseError(_) => "BadResponse",
                _ => "RequestFailed",
            };
            (code.to_owned(), message, hint)
        }
    }
}
