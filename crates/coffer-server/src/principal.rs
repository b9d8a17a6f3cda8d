//! Who is making a request, once its signature has been verified.

/// An authenticated caller. `arn` is the identity's ARN in AWS's IAM form:
/// `arn:aws:iam::<account>:root` for the root identity,
/// `arn:aws:iam::<account>:user/<name>` for users and service accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The identity's name (`root` for the root identity).
    pub name: String,
    /// The identity's ARN; what policies name in `Principal` and what audit records carry.
    pub arn: String,
    /// The access key id the request was signed with (never the secret).
    pub access_key: String,
    /// The root identity administers Coffer; it does not thereby use customers' keys.
    pub is_root: bool,
}

/// The account id in every ARN Coffer issues (single-tenant: one account).
pub const ACCOUNT: &str = "000000000000";

impl Principal {
    /// The ARN of a named identity.
    pub fn user_arn(name: &str) -> String {
        if name == "root" {
            format!("arn:aws:iam::{ACCOUNT}:root")
        } else {
            format!("arn:aws:iam::{ACCOUNT}:user/{name}")
        }
    }
}

/// Finds the identity behind an access key: the S3, KMS and admin APIs verify signatures
/// with the secret it returns. Disabled identities and unknown keys return `None`.
pub trait IdentityLookup: Send + Sync {
    /// The secret access key and the identity for `access_key`.
    fn lookup(&self, access_key: &str) -> Option<(zeroize::Zeroizing<String>, Principal)>;

    /// Whether `p`'s identity policies allow `action`, which is bound to no bucket or key
    /// (`kms:CreateKey`, `kms:ListKeys`, …). Lookups without policies (tests) allow it; the
    /// identity store (`iam::Iam`) decides by the caller's policies, root allowed by default.
    fn allows_unbound(&self, p: &Principal, action: &str, secure: bool) -> bool {
        let _ = (p, action, secure);
        true
    }
}
