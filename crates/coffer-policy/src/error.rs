//! Why a policy document was rejected.

/// A rejected policy document. The server answers it as AWS does (`MalformedPolicyDocument`,
/// S3's `MalformedPolicy`, KMS's `MalformedPolicyDocumentException`); the message says what
/// is wrong and where. Locations are JSON paths with 0-based indexes, e.g.
/// `Statement[1].Condition.StringEquals."aws:username"`.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The document is larger than [`crate::MAX_POLICY_BYTES`].
    #[error("the policy document is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// The document's size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The document is not JSON (serde_json's message, with line and column).
    #[error("the policy document is not valid JSON: {0}")]
    Syntax(String),
    /// A JSON object has the same key twice (JSON parsers would silently keep one of them).
    #[error("{location}: duplicate key \"{key}\"")]
    DuplicateKey {
        /// The object holding the key.
        location: String,
        /// The repeated key.
        key: String,
    },
    /// The document is JSON but not a valid policy: missing, unknown or ill-typed element,
    /// bad value.
    #[error("{location}: {message}")]
    Invalid {
        /// Where (JSON path).
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A valid IAM construct that Coffer does not implement (`NotPrincipal`, policy
    /// variables, principal types other than `AWS`). Rejected so that no one believes it
    /// takes effect.
    #[error("{location}: not supported by Coffer: {feature}")]
    Unsupported {
        /// Where (JSON path).
        location: String,
        /// What is not supported.
        feature: String,
    },
}

impl PolicyError {
    pub(crate) fn invalid(location: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyError::Invalid {
            location: location.into(),
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(location: impl Into<String>, feature: impl Into<String>) -> Self {
        PolicyError::Unsupported {
            location: location.into(),
            feature: feature.into(),
        }
    }
}
