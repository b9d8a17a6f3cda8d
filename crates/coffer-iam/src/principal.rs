//! Who is making a request, once its signature has been verified: the [`Principal`] type is
//! `coffer_policy`'s (the KMS core decides key use by it too); this module holds the lookup
//! the protocol front-ends verify signatures with.

pub use coffer_policy::{Principal, ACCOUNT};

/// Finds the identity behind an access key: the S3, KMS and admin APIs verify signatures
/// with the secret it returns. Disabled identities and unknown keys return `None`.
pub trait IdentityLookup: Send + Sync {
    /// The secret access key and the identity for `access_key`.
    fn lookup(&self, access_key: &str) -> Option<(zeroize::Zeroizing<String>, Principal)>;

    /// Whether `p`'s identity policies allow `action`, which is bound to no bucket or key
    /// (`kms:CreateKey`, `kms:ListKeys`, …). The identity store (`iam::Iam`) decides by the
    /// caller's policies, the root identity allowed unless a policy denies. There is no
    /// default: every lookup says how it decides.
    fn allows_unbound(&self, p: &Principal, action: &str, secure: bool) -> bool;
}
