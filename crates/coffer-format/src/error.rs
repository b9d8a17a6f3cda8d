//! Errors of the format layer, by cause.

/// Why an operation of the format layer failed.
///
/// `Integrity` deliberately carries no detail about *which* check failed: a remote party must
/// not learn which stage of decryption rejected its input (spec/object-format.md §7). The
/// static reason is for local diagnostics and tests only.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not a well-formed encoding (bad magic, version, length, ordering…).
    #[error("malformed input: {0}")]
    Malformed(&'static str),
    /// Authentication failed: wrong key, wrong context, or altered/truncated/extended data.
    #[error("integrity check failed: {0}")]
    Integrity(&'static str),
    /// The caller passed something outside the format's limits.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A requested byte range lies outside the object (HTTP 416).
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable,
    /// The system's random generator or crypto library failed (a bug or an unusable system).
    #[error("cryptographic library failure")]
    Crypto,
    /// Reading or writing the underlying stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// True when the error means the data (or the key/context given for it) is not authentic.
    pub fn is_integrity(&self) -> bool {
        matches!(self, Error::Integrity(_) | Error::Malformed(_))
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(io) => io,
            Error::Malformed(_) | Error::Integrity(_) => {
                std::io::Error::new(std::io::ErrorKind::InvalidData, e)
            }
            Error::InvalidArgument(_) | Error::RangeNotSatisfiable => {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
            }
            Error::Crypto => std::io::Error::other(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
