//! Server errors and their S3 error responses.

use s3s::{S3Error, S3ErrorCode};

pub type ServerResult<T> = Result<T, ServerError>;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("The specified bucket does not exist")]
    NoSuchBucket,
    #[error("The specified key does not exist.")]
    NoSuchKey,
    #[error("The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.")]
    NoSuchUpload,
    #[error("The bucket you tried to delete is not empty")]
    BucketNotEmpty,
    #[error("At least one of the pre-conditions you specified did not hold")]
    PreconditionFailed,
    /// The key's latest version is a delete marker (a read without a version id: 404
    /// NoSuchKey), or the version named is one (`named`: 405 MethodNotAllowed). Both answers
    /// carry `x-amz-delete-marker: true` and the marker's `x-amz-version-id`, as S3's do.
    #[error("{}", if *named { "The specified method is not allowed against this resource." } else { "The specified key does not exist." })]
    DeleteMarker { version_id: String, named: bool },
    /// A stored object failed authentication: it was altered on disk.
    #[error("stored object failed its integrity check: {0}")]
    Integrity(String),
    /// An S3 error with its own code and message.
    #[error("{1}")]
    S3(S3ErrorCode, String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServerError {
    pub fn s3(code: S3ErrorCode, msg: impl Into<String>) -> ServerError {
        ServerError::S3(code, msg.into())
    }

    pub fn invalid_argument(msg: impl Into<String>) -> ServerError {
        ServerError::S3(S3ErrorCode::InvalidArgument, msg.into())
    }

    pub fn invalid_request(msg: impl Into<String>) -> ServerError {
        ServerError::S3(S3ErrorCode::InvalidRequest, msg.into())
    }
}

/// Every handler failure reaches the client through this conversion, so this is where the
/// request's outcome is recorded for the audit trail (the code answered, and whether a
/// stored object failed authentication).
impl From<ServerError> for S3Error {
    fn from(e: ServerError) -> S3Error {
        let integrity = matches!(e, ServerError::Integrity(_));
        crate::outcome::Recorder::s3_error(to_s3(e), integrity)
    }
}

fn to_s3(e: ServerError) -> S3Error {
    let code = match &e {
        ServerError::NoSuchBucket => S3ErrorCode::NoSuchBucket,
        ServerError::NoSuchKey => S3ErrorCode::NoSuchKey,
        ServerError::NoSuchUpload => S3ErrorCode::NoSuchUpload,
        ServerError::BucketNotEmpty => S3ErrorCode::BucketNotEmpty,
        ServerError::PreconditionFailed => S3ErrorCode::PreconditionFailed,
        ServerError::DeleteMarker { version_id, named } => {
            let code = if *named {
                S3ErrorCode::MethodNotAllowed
            } else {
                S3ErrorCode::NoSuchKey
            };
            let mut err = S3Error::with_message(code, e.to_string());
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "x-amz-delete-marker",
                http::HeaderValue::from_static("true"),
            );
            if let Ok(v) = http::HeaderValue::from_str(version_id) {
                headers.insert("x-amz-version-id", v);
            }
            err.set_headers(headers);
            return err;
        }
        ServerError::Integrity(_) => {
            tracing::error!("{e}");
            return S3Error::with_message(
                S3ErrorCode::InternalError,
                "The stored object failed its integrity check and was not returned.",
            );
        }
        ServerError::S3(S3ErrorCode::Custom(_), msg) => {
            // Codes s3s does not know: InvalidPartNumber is 416 on AWS; the KMS.* family
            // are client errors (400).
            let code = e_code(&e);
            let status = match code.as_str() {
                "InvalidPartNumber" => http::StatusCode::RANGE_NOT_SATISFIABLE,
                "NoSuchPublicAccessBlockConfiguration" => http::StatusCode::NOT_FOUND,
                // Not retried by SDKs (unlike 500/503): a full disk does not clear itself.
                "InsufficientStorage" => http::StatusCode::INSUFFICIENT_STORAGE,
                _ => http::StatusCode::BAD_REQUEST,
            };
            let mut err = S3Error::with_message(code, msg.clone());
            err.set_status_code(status);
            return err;
        }
        ServerError::S3(code, _) => code.clone(),
        ServerError::Internal(_) => {
            tracing::error!("{e}");
            return S3Error::with_message(
                S3ErrorCode::InternalError,
                "We encountered an internal error. Please try again.",
            );
        }
    };
    S3Error::with_message(code, e.to_string())
}

fn e_code(e: &ServerError) -> S3ErrorCode {
    match e {
        ServerError::S3(code, _) => code.clone(),
        _ => S3ErrorCode::InternalError,
    }
}

impl From<coffer_meta::MetaError> for ServerError {
    /// Each cause to its S3 error. Identity causes reach S3 handlers only through bugs, so
    /// they map to internal errors here; the admin API maps them itself (IAM's codes).
    fn from(e: coffer_meta::MetaError) -> ServerError {
        use coffer_meta::MetaError as M;
        match e {
            M::NoSuchBucket => ServerError::NoSuchBucket,
            M::NoSuchKey => ServerError::NoSuchKey,
            M::NoSuchUpload => ServerError::NoSuchUpload,
            M::BucketNotEmpty => ServerError::BucketNotEmpty,
            M::PreconditionFailed => ServerError::PreconditionFailed,
            // AWS answers 403 AccessDenied for a delete or retention change Object Lock
            // refuses, and 405 MethodNotAllowed for data operations on a delete marker.
            M::ObjectLocked(why) => ServerError::S3(
                S3ErrorCode::AccessDenied,
                format!("Access Denied because object protected by object lock: {why}."),
            ),
            M::DeleteMarker => ServerError::S3(
                S3ErrorCode::MethodNotAllowed,
                "The specified method is not allowed against this resource.".into(),
            ),
            M::StorageFull => ServerError::S3(
                S3ErrorCode::Custom("InsufficientStorage".into()),
                "The server has no space left to record this change; existing objects are unaffected.".into(),
            ),
            other => ServerError::Internal(format!("metadata: {other}")),
        }
    }
}

impl From<object_store::Error> for ServerError {
    fn from(e: object_store::Error) -> ServerError {
        if is_storage_full(&e) {
            tracing::error!("blob store full: {e}");
            return ServerError::S3(
                S3ErrorCode::Custom("InsufficientStorage".into()),
                "The server has no space left to store this object; existing objects are unaffected.".into(),
            );
        }
        ServerError::Internal(format!("blob store: {e}"))
    }
}

/// ENOSPC or EDQUOT anywhere in the error's chain.
fn is_storage_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(28) | Some(122)) {
                return true;
            }
        }
        cur = err.source();
    }
    e.to_string().contains("No space left on device")
}

impl From<coffer_format::Error> for ServerError {
    fn from(e: coffer_format::Error) -> ServerError {
        match e {
            coffer_format::Error::Integrity(_) | coffer_format::Error::Malformed(_) => {
                ServerError::Integrity(e.to_string())
            }
            e => ServerError::Internal(format!("encryption: {e}")),
        }
    }
}

/// KMS errors as S3 reports them for SSE-KMS requests.
impl From<coffer_kms::KmsError> for ServerError {
    fn from(e: coffer_kms::KmsError) -> ServerError {
        use coffer_kms::KmsError as K;
        match &e {
            K::NotFound(_) | K::InvalidArn(_) | K::InvalidAliasName(_) => ServerError::S3(
                S3ErrorCode::Custom("KMS.NotFoundException".into()),
                format!("Invalid keyId: {e}"),
            ),
            K::Disabled(_) => ServerError::S3(
                S3ErrorCode::Custom("KMS.DisabledException".into()),
                e.to_string(),
            ),
            K::InvalidState(_) => ServerError::S3(
                S3ErrorCode::Custom("KMS.KMSInvalidStateException".into()),
                e.to_string(),
            ),
            K::InvalidCiphertext | K::IncorrectKey => {
                ServerError::Integrity(format!("data key did not unwrap: {e}"))
            }
            K::Validation(_) => ServerError::invalid_argument(e.to_string()),
            K::AccessDenied(_) => ServerError::S3(S3ErrorCode::AccessDenied, e.to_string()),
            _ => ServerError::Internal(format!("kms: {e}")),
        }
    }
}
