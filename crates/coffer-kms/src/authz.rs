//! Who may use a key: key policies and grants, decided here, next to the keys they protect.
//!
//! [`Kms::authorize`] resolves a key once, evaluates its key policy and grants for one
//! principal and one action, and returns a [`KeyUse`]: the only way to call a cryptographic
//! operation ([`Kms::encrypt`], [`Kms::decrypt`], [`Kms::re_encrypt`],
//! [`Kms::generate_data_key`] …). `KeyUse` has private fields and no public constructor, so a
//! caller that has not asked — the S3 server, the KMS JSON API, anything later — cannot
//! reach key material (docs/security.md, "Key ownership").
//!
//! ```compile_fail
//! // A KeyUse cannot be made outside this crate…
//! let proof = coffer_kms::KeyUse { key_id: String::new() };
//! ```
//!
//! ```compile_fail
//! // …and a data key cannot be asked for by key id alone.
//! fn data_key(kms: &coffer_kms::Kms, context: &coffer_format::Context) {
//!     let _ = kms.generate_data_key("1234abcd-12ab-34cd-56ef-1234567890ab", context);
//! }
//! ```
//!
//! The decision: an explicit deny in the key policy → denied; allowed by the key policy, or
//! by a grant to the caller for the operation whose constraints hold → allowed; otherwise
//! denied. There is no fallback that allows: a key without a stored policy gets its owner's
//! default policy (or, for AWS-managed keys, the managed-key policy), never "anyone".

use std::collections::BTreeMap;

use coffer_policy::{Decision, Policy, PolicyKind, Principal, ACCOUNT};
use serde_json::json;

use crate::error::{KmsError, Result};
use crate::kms::{KeyMetadata, Kms};
use crate::store::{GrantConstraints, GrantRecord};

/// `kms:ViaService` of requests the S3 server makes on a caller's behalf (SSE-KMS).
pub const S3_VIA_SERVICE: &str = "s3.us-east-1.amazonaws.com";
/// The owner recorded on AWS-managed keys (`alias/aws/s3`).
pub const MANAGED_OWNER: &str = "coffer:s3";

/// The facts about a request the key policy's conditions and the grants look at.
#[derive(Clone, Debug, Default)]
pub struct CallContext<'a> {
    /// The encryption context, for operations that take one.
    pub encryption_context: Option<&'a BTreeMap<String, String>>,
    /// `kms:ViaService`, when another Coffer service calls on the principal's behalf.
    pub via_service: Option<&'a str>,
    /// Whether the request came over TLS (`aws:SecureTransport`).
    pub secure: bool,
    /// `kms:GrantOperations` (CreateGrant).
    pub grant_operations: &'a [String],
}

/// Proof that one principal was allowed one action on one key. Made only by
/// [`Kms::authorize`]; every cryptographic operation takes one and refuses a proof for
/// another action. Not `Clone`: a proof is for the request that asked for it.
#[derive(Debug)]
pub struct KeyUse {
    action: String,
    principal_arn: String,
    metadata: KeyMetadata,
}

impl KeyUse {
    /// The key's id (resolved from whatever id, alias or ARN the caller named).
    pub fn key_id(&self) -> &str {
        &self.metadata.key_id
    }

    /// The key's ARN.
    pub fn key_arn(&self) -> &str {
        &self.metadata.arn
    }

    /// The action allowed (`kms:Encrypt`, `kms:GenerateDataKey`, …).
    pub fn action(&self) -> &str {
        &self.action
    }

    /// Who was allowed.
    pub fn principal_arn(&self) -> &str {
        &self.principal_arn
    }

    /// The key as it was when the decision was made.
    pub fn metadata(&self) -> &KeyMetadata {
        &self.metadata
    }

    /// Refuses a proof that was made for another action.
    pub(crate) fn check_action(&self, action: &str) -> Result<()> {
        if self.action != action {
            return Err(KmsError::AccessDenied(format!(
                "a proof for {} does not allow {action}",
                self.action
            )));
        }
        Ok(())
    }

    /// Refuses a proof that was made for another action or for another key than the one a
    /// ciphertext names.
    pub(crate) fn check(&self, action: &str, key_id: &str) -> Result<()> {
        self.check_action(action)?;
        if self.metadata.key_id != key_id {
            return Err(KmsError::IncorrectKey);
        }
        Ok(())
    }
}

/// The owner of a key as an ARN; `None` for AWS-managed keys. Keys created before key
/// ownership existed have an owner that is not an ARN: they belong to root (migration).
pub fn owner_arn(recorded_owner: &str) -> Option<String> {
    if recorded_owner == MANAGED_OWNER {
        None
    } else if recorded_owner.starts_with("arn:") {
        Some(recorded_owner.to_owned())
    } else {
        Some(Principal::user_arn("root"))
    }
}

/// The key policy a new key gets when CreateKey has no `Policy`: the owner may do
/// everything with it.
pub fn default_key_policy(owner_arn: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Id": "coffer-key-default-1",
        "Statement": [{
            "Sid": "Allow the key owner full access",
            "Effect": "Allow",
            "Principal": {"AWS": owner_arn},
            "Action": "kms:*",
            "Resource": "*"
        }]
    })
    .to_string()
}

/// The key policy of the AWS-managed key `alias/aws/s3`, modelled on AWS's: use through S3
/// by anyone in the account, metadata reads directly.
pub fn managed_key_policy() -> String {
    json!({
        "Version": "2012-10-17",
        "Id": "auto-s3-2",
        "Statement": [
            {
                "Sid": "Allow access through S3 for all principals in the account that are authorized to use S3",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {"StringEquals": {
                    "kms:ViaService": S3_VIA_SERVICE,
                    "kms:CallerAccount": ACCOUNT
                }}
            },
            {
                "Sid": "Allow direct access to key metadata to the account",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": ["kms:DescribeKey", "kms:GetKeyPolicy"],
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:CallerAccount": ACCOUNT}}
            }
        ]
    })
    .to_string()
}

/// Parses a key policy document (resource policy rules).
pub fn parse_key_policy(json: &str) -> Result<Policy> {
    Policy::parse(json, PolicyKind::Resource)
        .map_err(|e| KmsError::MalformedPolicyDocument(e.to_string()))
}

/// The condition keys of one request (docs/kms.md lists them).
fn condition_context(principal: &Principal, call: &CallContext<'_>) -> coffer_policy::Context {
    let mut c = coffer_policy::Context::new();
    if let Some(ec) = call.encryption_context {
        for (k, v) in ec {
            c.insert(&format!("kms:EncryptionContext:{k}"), v.clone());
            c.insert("kms:EncryptionContextKeys", k.clone());
        }
    }
    c.insert("kms:CallerAccount", ACCOUNT);
    if let Some(via) = call.via_service {
        c.insert("kms:ViaService", via);
    }
    c.insert(
        "aws:SecureTransport",
        if call.secure { "true" } else { "false" },
    );
    c.insert("aws:PrincipalArn", principal.arn());
    c.insert("aws:username", principal.name());
    c.insert("aws:PrincipalAccount", ACCOUNT);
    for op in call.grant_operations {
        c.insert("kms:GrantOperations", op.clone());
    }
    c
}

/// Whether a grant's constraints hold for the request's encryption context. Constraints
/// only restrict operations that take an encryption context.
fn grant_constraints_hold(
    constraints: Option<&GrantConstraints>,
    context: Option<&BTreeMap<String, String>>,
) -> bool {
    let (Some(constraints), Some(context)) = (constraints, context) else {
        return true;
    };
    if let Some(equals) = &constraints.encryption_context_equals {
        if equals != context {
            return false;
        }
    }
    if let Some(subset) = &constraints.encryption_context_subset {
        if !subset.iter().all(|(k, v)| context.get(k) == Some(v)) {
            return false;
        }
    }
    true
}

/// AWS's AccessDeniedException wording (`explicit`: denied by a `Deny` statement).
pub fn access_denied(
    principal: &Principal,
    action: &str,
    key_arn: &str,
    explicit: bool,
) -> KmsError {
    let why = if explicit {
        "with an explicit deny in a resource-based policy".to_owned()
    } else {
        format!("because no resource-based policy allows the {action} action")
    };
    KmsError::AccessDenied(format!(
        "User: {} is not authorized to perform: {action} on resource: {key_arn} {why}",
        principal.arn()
    ))
}

/// The authorization decision for `action` (`kms:<Operation>`) on one key.
pub fn decide(
    policy: &Policy,
    grants: &[GrantRecord],
    principal: &Principal,
    action: &str,
    key_arn: &str,
    call: &CallContext<'_>,
) -> Result<()> {
    let context = condition_context(principal, call);
    let request = coffer_policy::Request {
        principal: principal.arn(),
        action,
        resource: key_arn,
        context: &context,
    };
    match policy.evaluate(&request) {
        Decision::Deny => return Err(access_denied(principal, action, key_arn, true)),
        Decision::Allow => return Ok(()),
        Decision::NotApplicable => {}
    }
    let operation = action.strip_prefix("kms:").unwrap_or(action);
    let granted = grants.iter().any(|g| {
        g.grantee_principal == principal.arn()
            && g.operations.iter().any(|o| o == operation)
            && grant_constraints_hold(g.constraints.as_ref(), call.encryption_context)
    });
    if granted {
        Ok(())
    } else {
        Err(access_denied(principal, action, key_arn, false))
    }
}

/// AWS's lockout safety check: a new key policy must let `principal` change it again.
pub fn check_lockout(policy: &Policy, principal: &Principal, secure: bool) -> Result<()> {
    let call = CallContext {
        secure,
        ..CallContext::default()
    };
    let context = condition_context(principal, &call);
    let allowed = policy.evaluate(&coffer_policy::Request {
        principal: principal.arn(),
        action: "kms:PutKeyPolicy",
        resource: "*",
        context: &context,
    }) == Decision::Allow;
    if allowed {
        Ok(())
    } else {
        Err(KmsError::MalformedPolicyDocument(
            "The new key policy will not allow you to update the key policy in the future.".into(),
        ))
    }
}

impl Kms {
    /// The policy that applies to a key: its stored one, else its owner's default.
    pub async fn effective_key_policy(&self, metadata: &KeyMetadata) -> Result<Policy> {
        match self.key_policy(&metadata.key_id).await? {
            Some(json) => parse_key_policy(&json).map_err(|e| {
                // A stored policy was validated when it was stored: this is corruption.
                KmsError::Internal(format!(
                    "stored policy of key {} does not parse: {e}",
                    metadata.key_id
                ))
            }),
            None => match owner_arn(&metadata.owner) {
                Some(owner) => parse_key_policy(&default_key_policy(&owner)),
                None => parse_key_policy(&managed_key_policy()),
            },
        }
    }

    /// Resolves `key` (id, alias or ARN; `NotFoundException` first), and decides whether
    /// `principal` may perform `action` on it under its key policy and grants. The proof
    /// carries the resolved key, so the operation that follows does not resolve it again.
    pub async fn authorize(
        &self,
        principal: &Principal,
        key: &str,
        action: &str,
        call: &CallContext<'_>,
    ) -> Result<KeyUse> {
        let metadata = self.describe_key(key).await?;
        let policy = self.effective_key_policy(&metadata).await?;
        let grants = self.grants(&metadata.key_id).await?;
        decide(&policy, &grants, principal, action, &metadata.arn, call)?;
        Ok(KeyUse {
            action: action.to_owned(),
            principal_arn: principal.arn().to_owned(),
            metadata,
        })
    }
}
