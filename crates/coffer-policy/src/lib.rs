//! Coffer's policy language: the subset of AWS IAM's JSON policy language that identity
//! policies, S3 bucket policies and KMS key policies use (spec/policy.md).
//!
//! [`Policy::parse`] checks a document strictly (unknown elements, duplicate keys, unknown
//! condition operators and policy variables are errors, never silently ignored);
//! [`Policy::evaluate`] decides one [`Request`] against one policy; [`combine`] merges the
//! decisions of several policies (explicit deny wins, then allow, else not applicable —
//! which the caller treats as an implicit deny).
//!
//! ```
//! use coffer_policy::{Context, Decision, Policy, PolicyKind, Request};
//!
//! let policy = Policy::parse(
//!     r#"{"Version": "2012-10-17", "Statement": {
//!         "Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::photos/*"}}"#,
//!     PolicyKind::Identity,
//! )?;
//! let context = Context::new();
//! let request = Request {
//!     principal: "arn:aws:iam::000000000000:user/alice",
//!     action: "s3:GetObject",
//!     resource: "arn:aws:s3:::photos/cat.jpg",
//!     context: &context,
//! };
//! assert_eq!(policy.evaluate(&request), Decision::Allow);
//! # Ok::<(), coffer_policy::PolicyError>(())
//! ```
#![forbid(unsafe_code)]

mod condition;
mod error;
mod json;
mod parse;
mod pattern;
mod principal;

use std::collections::BTreeMap;

pub use error::PolicyError;
use parse::{Effect, Patterns, Principals, Statement};
use pattern::glob;
pub use principal::{Principal, ACCOUNT};

/// The largest policy document accepted, in bytes (KMS's key policy limit; S3 bucket
/// policies are limited to 20 KB and IAM's managed policies to 6,144 characters in AWS).
pub const MAX_POLICY_BYTES: usize = 32 * 1024;

/// What a policy is attached to, which decides whether its statements name a principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// Attached to an identity (user): statements MUST NOT have `Principal`.
    Identity,
    /// Attached to a resource (bucket policy, key policy): every statement MUST have
    /// `Principal`.
    Resource,
}

/// A parsed, checked policy document.
#[derive(Clone, Debug)]
pub struct Policy {
    source: String,
    kind: PolicyKind,
    statements: Vec<Statement>,
}

impl Policy {
    /// Parses and checks `json` as a policy of the given kind. Every malformed or
    /// unsupported construct is an error naming the element at fault.
    pub fn parse(json: &str, kind: PolicyKind) -> Result<Policy, PolicyError> {
        let statements = parse::parse(json, kind)?;
        Ok(Policy {
            source: json.to_owned(),
            kind,
            statements,
        })
    }

    /// The document exactly as given to [`Policy::parse`] (what `Get*Policy` returns).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The kind the policy was parsed as.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// The number of statements.
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }

    /// The statement ids (`Sid`), in order, `None` for statements without one.
    pub fn sids(&self) -> impl Iterator<Item = Option<&str>> {
        self.statements.iter().map(|s| s.sid.as_deref())
    }

    /// [`Decision::Deny`] if a matching statement denies, else [`Decision::Allow`] if one
    /// allows, else [`Decision::NotApplicable`]. A statement matches when its principal
    /// (resource policies only), action, resource and every condition match.
    pub fn evaluate(&self, request: &Request<'_>) -> Decision {
        let action = request.action.to_ascii_lowercase();
        let mut allowed = false;
        for statement in &self.statements {
            if statement_matches(statement, request, &action) {
                match statement.effect {
                    Effect::Deny => return Decision::Deny,
                    Effect::Allow => allowed = true,
                }
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::NotApplicable
        }
    }
}

fn statement_matches(statement: &Statement, request: &Request<'_>, action: &str) -> bool {
    let principal_ok = match &statement.principal {
        None => true,
        Some(Principals::Any) => true,
        Some(Principals::Arns(arns)) => arns.iter().any(|a| a == request.principal),
    };
    principal_ok
        && patterns_match(&statement.action, action)
        && patterns_match(&statement.resource, request.resource)
        && statement
            .conditions
            .iter()
            .all(|c| c.evaluate(request.context))
}

fn patterns_match(patterns: &Patterns, text: &str) -> bool {
    patterns.patterns.iter().any(|p| glob(p, text)) != patterns.not
}

/// One request to authorize.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The caller's ARN (`coffer_server::Principal::arn`).
    pub principal: &'a str,
    /// The action, e.g. `s3:GetObject`, `kms:Decrypt` (matched case-insensitively).
    pub action: &'a str,
    /// The resource's ARN, e.g. `arn:aws:s3:::bucket/key` (matched case-sensitively).
    pub resource: &'a str,
    /// The condition keys of the request.
    pub context: &'a Context,
}

/// Condition keys and their values for one request. Key names are case-insensitive;
/// values are kept as given. A key may have several values (`kms:EncryptionContextKeys`).
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// Keyed by the lowercased name.
    values: BTreeMap<String, Vec<String>>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value to `key`; inserting the same key again appends another value.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        self.values
            .entry(key.to_lowercase())
            .or_default()
            .push(value.into());
    }

    /// The values of `key` (case-insensitive), `None` if it was never inserted.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.values.get(&key.to_lowercase()).map(Vec::as_slice)
    }
}

/// The outcome of evaluating a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A matching statement allows and none denies.
    Allow,
    /// A matching statement explicitly denies: nothing else can allow.
    Deny,
    /// No statement matches (an implicit deny unless another policy allows).
    NotApplicable,
}

/// Merges the decisions of several policies as AWS does: any [`Decision::Deny`] wins, then
/// any [`Decision::Allow`], else [`Decision::NotApplicable`] (also for no decisions).
pub fn combine(decisions: impl IntoIterator<Item = Decision>) -> Decision {
    let mut result = Decision::NotApplicable;
    for decision in decisions {
        match decision {
            Decision::Deny => return Decision::Deny,
            Decision::Allow => result = Decision::Allow,
            Decision::NotApplicable => {}
        }
    }
    result
}
