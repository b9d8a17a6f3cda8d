//! Who is making a request, once its signature has been verified.
//!
//! The type lives with the policy language because every decision (identity policies,
//! bucket policies, key policies and grants) is about one principal; identity stores build
//! it after they have checked a request's signature, and everything after that only reads it.

/// The account id in every ARN Coffer issues (single-tenant: one account).
pub const ACCOUNT: &str = "000000000000";

/// An authenticated caller. `arn` is the identity's ARN in AWS's IAM form:
/// `arn:aws:iam::<account>:root` for the root identity,
/// `arn:aws:iam::<account>:user/<name>` for users and service accounts.
///
/// The fields are private: a `Principal` is made by [`Principal::authenticated`] (the
/// identity store, after the signature check) and read through accessors, so no handler
/// can change who it acts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    name: String,
    arn: String,
    access_key: String,
    is_root: bool,
}

impl Principal {
    /// The principal of a request whose signature was verified with `access_key`'s secret.
    /// Only identity stores (and tests) call this.
    pub fn authenticated(name: &str, access_key: &str, is_root: bool) -> Principal {
        Principal {
            name: name.to_owned(),
            arn: Principal::user_arn(name),
            access_key: access_key.to_owned(),
            is_root,
        }
    }

    /// Like [`Principal::authenticated`], with an ARN recorded by the identity store.
    pub fn with_arn(name: &str, arn: &str, access_key: &str, is_root: bool) -> Principal {
        Principal {
            name: name.to_owned(),
            arn: arn.to_owned(),
            access_key: access_key.to_owned(),
            is_root,
        }
    }

    /// The ARN of a named identity.
    pub fn user_arn(name: &str) -> String {
        if name == "root" {
            format!("arn:aws:iam::{ACCOUNT}:root")
        } else {
            format!("arn:aws:iam::{ACCOUNT}:user/{name}")
        }
    }

    /// The identity's name (`root` for the root identity).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The identity's ARN; what policies name in `Principal` and what audit records carry.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// The access key id the request was signed with (never the secret).
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The root identity administers Coffer; it does not thereby use customers' keys.
    pub fn is_root(&self) -> bool {
        self.is_root
    }
}
