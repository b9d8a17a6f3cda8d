//! KMS errors, one variant per AWS KMS exception name, so the HTTP layer maps each error to
//! exactly one `__type` and status without inspecting messages.
//!
//! Messages are safe to return to a client: they never contain key material, and decryption
//! failures say the same thing whatever stage failed (STYLE.md §8).

/// Result alias for the KMS.
pub type Result<T, E = KmsError> = std::result::Result<T, E>;

/// A KMS failure, named after the AWS KMS exception it maps to.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// The key, alias or ARN names nothing.
    #[error("not found: {0}")]
    NotFound(String),
    /// The key is disabled.
    #[error("key {0} is disabled")]
    Disabled(String),
    /// The key's state does not allow the operation (pending deletion, pending import,
    /// a version below the minimum decryption version…).
    #[error("invalid key state: {0}")]
    InvalidState(String),
    /// The ciphertext blob is malformed, altered, bound to another context, or was made by a
    /// key version that no longer exists. Deliberately uninformative.
    #[error("the ciphertext is invalid, or does not match the key and encryption context")]
    InvalidCiphertext,
    /// Decrypt was given a key id that is not the key that made the ciphertext.
    #[error("the ciphertext was not made under the specified key")]
    IncorrectKey,
    /// The import token is unknown or was issued for another key.
    #[error("invalid import token")]
    InvalidImportToken,
    /// The import token has expired (valid 24 hours).
    #[error("the import token has expired")]
    ExpiredImportToken,
    /// Imported material is not the material the key had before.
    #[error("the key material is not the material previously imported into this key")]
    IncorrectKeyMaterial,
    /// The key policy and grants do not allow the caller this action on this key. The
    /// message is AWS's wording and names the caller, the action and the key.
    #[error("{0}")]
    AccessDenied(String),
    /// A key policy document does not parse, or would lock its author out.
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// A parameter is out of range or malformed.
    #[error("validation failed: {0}")]
    Validation(String),
    /// The alias (or key) already exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// An alias name does not follow the `alias/…` rules or uses the reserved `alias/aws/`.
    #[error("invalid alias name: {0}")]
    InvalidAliasName(String),
    /// A string looked like an ARN but is not a valid KMS ARN for this region and account.
    #[error("invalid ARN: {0}")]
    InvalidArn(String),
    /// The operation does not apply to this kind of key (e.g. rotating imported material).
    #[error("unsupported operation: {0}")]
    UnsupportedOperation(String),
    /// A bounded resource (ciphertext size, random bytes) would be exceeded.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The root key could not be unsealed (wrong passphrase, missing key file or token).
    /// Raised when opening the KMS, never by a request.
    #[error("cannot unseal the root key: {0}")]
    Unseal(String),
    /// The key store failed (I/O, corruption, wrong store key). Details go to logs.
    #[error("key store error: {0}")]
    Store(String),
    /// A bug or an unexpected library failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl KmsError {
    /// The AWS KMS exception name (`__type` of the JSON error response).
    pub fn aws_code(&self) -> &'static str {
        match self {
            KmsError::NotFound(_) => "NotFoundException",
            KmsError::Disabled(_) => "DisabledException",
            KmsError::InvalidState(_) => "KMSInvalidStateException",
            KmsError::InvalidCiphertext => "InvalidCiphertextException",
            KmsError::IncorrectKey => "IncorrectKeyException",
            KmsError::InvalidImportToken => "InvalidImportTokenException",
            KmsError::ExpiredImportToken => "ExpiredImportTokenException",
            KmsError::IncorrectKeyMaterial => "IncorrectKeyMaterialException",
            KmsError::AccessDenied(_) => "AccessDeniedException",
            KmsError::MalformedPolicyDocument(_) => "MalformedPolicyDocumentException",
            KmsError::Validation(_) => "ValidationException",
            KmsError::AlreadyExists(_) => "AlreadyExistsException",
            KmsError::InvalidAliasName(_) => "InvalidAliasNameException",
            KmsError::InvalidArn(_) => "InvalidArnException",
            KmsError::UnsupportedOperation(_) => "UnsupportedOperationException",
            KmsError::LimitExceeded(_) => "LimitExceededException",
            KmsError::Unseal(_) | KmsError::Store(_) | KmsError::Internal(_) => {
                "KMSInternalException"
            }
        }
    }

    /// The HTTP status AWS KMS answers with for this exception.
    pub fn http_status(&self) -> u16 {
        match self {
            KmsError::Unseal(_) | KmsError::Store(_) | KmsError::Internal(_) => 500,
            _ => 400,
        }
    }

    /// True when the caller caused the error (a 4xx), false for server faults.
    pub fn is_client_error(&self) -> bool {
        self.http_status() < 500
    }
}

impl From<rusqlite::Error> for KmsError {
    fn from(e: rusqlite::Error) -> Self {
        KmsError::Store(e.to_string())
    }
}

impl From<coffer_format::Error> for KmsError {
    fn from(e: coffer_format::Error) -> Self {
        KmsError::Internal(e.to_string())
    }
}
