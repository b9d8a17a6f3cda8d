//! Identities, access keys, identity policies, bucket owners and bucket policies — and the
//! authorization decision for S3 requests.
//!
//! Everything lives in the page-encrypted metadata database (`server.db`); a snapshot is held
//! in memory and replaced after every change, so a request's decision never touches SQLite.
//!
//! The decision for an S3 action (see docs/security.md):
//! 1. an explicit `Deny` in any of the caller's identity policies or in the bucket policy
//!    refuses the request — for the root identity and the bucket owner too;
//! 2. otherwise an `Allow` in either grants it;
//! 3. otherwise the root identity and the bucket's owner (the identity that created it) are
//!    allowed, everyone else is refused (default deny) — except `s3:ListAllMyBuckets`, which
//!    every identity may call: it lists only the buckets the caller may list.
//!
//! Using a KMS key is never granted here: SSE-KMS requests also need the key's permission
//! (key policy or grant), checked by the KMS API layer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use coffer_meta::{AccessKey, IdentityRecord, IdentityStore, MetaError, SecretAccessKey};
use coffer_policy::{combine, Context, Decision, Policy, PolicyKind, Request};
use zeroize::Zeroizing;

use crate::principal::{IdentityLookup, Principal};
use coffer_outcome::{ServerError, ServerResult};

/// An identity's kind: people are users, programs are service accounts. Both sign requests
/// with access keys; the kind is informational.
pub const KINDS: [&str; 3] = ["root", "user", "service"];

/// An identity as the admin API shows it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Identity {
    pub user_name: String,
    pub arn: String,
    pub kind: String,
    pub enabled: bool,
    /// Milliseconds since the Unix epoch.
    pub created: i64,
}

/// A new access key pair: the secret is shown once and never again.
pub struct NewAccessKey {
    pub access_key: String,
    pub secret: Zeroizing<String>,
}

impl NewAccessKey {
    /// The pair as the store keeps it, for `identity`.
    pub fn stored(&self, identity: &str) -> AccessKey {
        AccessKey {
            access_key: self.access_key.clone(),
            identity: identity.to_owned(),
            secret: SecretAccessKey::new(self.secret.clone()),
        }
    }
}

#[derive(Default)]
struct Snapshot {
    /// By access key id.
    keys: HashMap<String, AccessKey>,
    identities: HashMap<String, Identity>,
    /// identity → [(policy name, policy)]
    policies: HashMap<String, Vec<(String, Policy)>>,
    bucket_owners: HashMap<String, String>,
    bucket_policies: HashMap<String, Policy>,
    /// Whether any policy names an `s3:ExistingObjectTag/…` key: only then does the access
    /// hook read an object's tags before deciding.
    uses_existing_tags: bool,
}

/// The identity and policy store: decisions from an in-memory snapshot, changes written
/// through the [`IdentityStore`] and the snapshot read again.
pub struct Iam {
    store: Arc<dyn IdentityStore>,
    snap: RwLock<Arc<Snapshot>>,
}

/// IAM's error for a store failure on an identity operation.
fn store_err(e: MetaError) -> ServerError {
    match e {
        MetaError::NoSuchIdentity(name) => {
            no_such_entity(&format!("The user with name {name} cannot be found."))
        }
        MetaError::NoSuchPolicy => no_such_entity("The user policy cannot be found."),
        MetaError::NoSuchAccessKey => no_such_entity("The Access Key cannot be found."),
        MetaError::IdentityOwnsBucket { bucket } => ServerError::s3(
            s3s::S3ErrorCode::Custom("DeleteConflict".into()),
            format!("Cannot delete the user: it owns bucket {bucket}."),
        ),
        other => other.into(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// IAM's user-name alphabet: letters, digits and `+=,.@_-`, 1–64 characters.
pub fn check_name(what: &str, name: &str, max: usize) -> ServerResult<()> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ServerError::invalid_argument(format!(
            "{what} must be 1-{max} characters of letters, digits and +=,.@_-"
        )))
    }
}

/// A fresh access key id (`CF` + 18 hex digits) and secret (28 characters, 168 bits).
pub fn new_key_pair() -> ServerResult<NewAccessKey> {
    let mut raw = Zeroizing::new([0u8; 30]);
    coffer_format::secret::random_fill(raw.as_mut())?;
    let access_key = format!("CF{}", hex::encode_upper(&raw[..9]));
    let secret = Zeroizing::new(base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &raw[9..],
    ));
    Ok(NewAccessKey { access_key, secret })
}

/// Proof that IAM allowed one principal one action on one resource: made only by
/// [`Iam::authorize`] (no public constructor), so holding one means the decision ran and said
/// yes. The S3 access hook leaves it in the request's extensions for the handlers; every
/// change IAM makes on a caller's behalf takes one and checks it [covers](Authorized::covers)
/// that change, so a handler cannot act for a request that was allowed something else.
#[derive(Clone, Debug)]
pub struct Authorized {
    principal: Principal,
    action: String,
    resource: String,
}

impl Authorized {
    /// Who was allowed.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// What was allowed (`s3:PutObject`, `admin:CreateUser`, …).
    pub fn action(&self) -> &str {
        &self.action
    }

    /// On what (an ARN, or `*` for actions bound to no resource).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// [`Authorized::covers`] for an action on the named identity (`arn:…:user/<name>`).
    pub fn covers_user(&self, action: &str, name: &str) -> ServerResult<()> {
        self.covers(action, &Principal::user_arn(name))
    }

    /// `Ok` if this proof allows `action` on `resource`; otherwise an internal error (a
    /// handler reached a change its request was not authorized for: a bug, refused).
    pub fn covers(&self, action: &str, resource: &str) -> ServerResult<()> {
        if self.action == action && self.resource == resource {
            return Ok(());
        }
        Err(ServerError::Internal(format!(
            "authorization for {} on {} does not cover {action} on {resource}",
            self.action, self.resource
        )))
    }
}

impl Iam {
    /// Loads the store. (Identities named by credentials of data directories older than
    /// identities get their identity when the store opens.)
    pub async fn open(store: Arc<dyn IdentityStore>) -> ServerResult<Iam> {
        let iam = Iam {
            store,
            snap: RwLock::new(Arc::new(Snapshot::default())),
        };
        iam.reload().await?;
        Ok(iam)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snap.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads the store into a new snapshot. Stored policies are parsed again; one that no
    /// longer parses (it was validated when stored) stops the server with a clear error
    /// rather than being skipped, since skipping a Deny would widen access.
    pub async fn reload(&self) -> ServerResult<()> {
        let stored = self.store.snapshot().await.map_err(store_err)?;
        let mut s = Snapshot {
            keys: stored.access_keys.into_iter().collect(),
            bucket_owners: stored.bucket_owners.into_iter().collect(),
            ..Snapshot::default()
        };
        for (name, id) in stored.identities {
            s.identities.insert(
                name.clone(),
                Identity {
                    arn: Principal::user_arn(&name),
                    user_name: name,
                    kind: id.kind,
                    enabled: id.enabled,
                    created: id.created,
                },
            );
        }
        let mentions = |doc: &str| doc.to_ascii_lowercase().contains("s3:existingobjecttag/");
        s.uses_existing_tags = stored.identity_policies.values().any(|d| mentions(d))
            || stored.bucket_policies.values().any(|d| mentions(d));
        for ((who, pname), doc) in stored.identity_policies {
            let pol = Policy::parse(&doc, PolicyKind::Identity).map_err(|e| {
                ServerError::Internal(format!("stored policy {pname} of {who}: {e}"))
            })?;
            s.policies.entry(who).or_default().push((pname, pol));
        }
        for (b, doc) in stored.bucket_policies {
            let pol = Policy::parse(&doc, PolicyKind::Resource)
                .map_err(|e| ServerError::Internal(format!("stored policy of bucket {b}: {e}")))?;
            s.bucket_policies.insert(b, pol);
        }
        *self.snap.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
        Ok(())
    }

    /// Whether some policy conditions on `s3:ExistingObjectTag/…`.
    pub fn uses_existing_tags(&self) -> bool {
        self.snapshot().uses_existing_tags
    }

    // ---- identities ----

    pub fn list_identities(&self) -> Vec<Identity> {
        let mut v: Vec<Identity> = self.snapshot().identities.values().cloned().collect();
        v.sort_by(|a, b| a.user_name.cmp(&b.user_name));
        v
    }

    pub fn get_identity(&self, name: &str) -> ServerResult<Identity> {
        self.snapshot()
            .identities
            .get(name)
            .cloned()
            .ok_or_else(|| no_such_entity(&format!("The user with name {name} cannot be found.")))
    }

    /// Creates a user or service account (no access key yet, no policy: it can do nothing).
    pub async fn create_identity(
        &self,
        proof: &Authorized,
        name: &str,
        kind: &str,
    ) -> ServerResult<Identity> {
        proof.covers_user("admin:CreateUser", name)?;
        check_name("UserName", name, 64)?;
        if kind == "root" || !KINDS.contains(&kind) {
            return Err(ServerError::invalid_argument(
                "Kind must be \"user\" or \"service\"",
            ));
        }
        let record = IdentityRecord {
            name: name.to_owned(),
            kind: kind.to_owned(),
            enabled: true,
            created: now_ms(),
        };
        match self.store.create_identity(&record).await {
            Err(MetaError::AlreadyExists(_)) => {
                return Err(ServerError::s3(
                    s3s::S3ErrorCode::Custom("EntityAlreadyExists".into()),
                    format!("User with name {name} already exists."),
                ))
            }
            r => r.map_err(store_err)?,
        }
        self.reload().await?;
        self.get_identity(name)
    }

    /// Deletes an identity with its access keys and policies. Refused for the root identity
    /// and for an identity that still owns buckets (delete or hand them over first).
    pub async fn delete_identity(&self, proof: &Authorized, name: &str) -> ServerResult<()> {
        proof.covers_user("admin:DeleteUser", name)?;
        self.get_identity(name)?;
        if name == "root" {
            return Err(ServerError::invalid_argument(
                "the root identity cannot be deleted",
            ));
        }
        match self.store.delete_identity(name).await {
            Err(MetaError::IdentityOwnsBucket { bucket }) => {
                return Err(ServerError::s3(
                    s3s::S3ErrorCode::Custom("DeleteConflict".into()),
                    format!("Cannot delete user {name}: it owns bucket {bucket}."),
                ))
            }
            r => r.map_err(store_err)?,
        }
        self.reload().await
    }

    /// Enables or disables an identity: a disabled identity's keys stop working at once.
    pub async fn set_enabled(
        &self,
        proof: &Authorized,
        name: &str,
        enabled: bool,
    ) -> ServerResult<()> {
        let action = if enabled {
            "admin:EnableUser"
        } else {
            "admin:DisableUser"
        };
        proof.covers_user(action, name)?;
        self.get_identity(name)?;
        if name == "root" && !enabled {
            return Err(ServerError::invalid_argument(
                "the root identity cannot be disabled (rotate its access key instead)",
            ));
        }
        self.store
            .set_identity_enabled(name, enabled)
            .await
            .map_err(store_err)?;
        self.reload().await
    }

    /// Adds an access key pair to an identity (at most two at a time, as IAM).
    pub async fn create_access_key(
        &self,
        proof: &Authorized,
        name: &str,
    ) -> ServerResult<NewAccessKey> {
        proof.covers_user("admin:CreateAccessKey", name)?;
        self.get_identity(name)?;
        if self.list_access_keys(name).len() >= 2 {
            return Err(ServerError::s3(
                s3s::S3ErrorCode::Custom("LimitExceeded".into()),
                format!("Cannot exceed quota for AccessKeysPerUser: 2 ({name})"),
            ));
        }
        let key = new_key_pair()?;
        self.store
            .put_access_key(&key.stored(name))
            .await
            .map_err(store_err)?;
        self.reload().await?;
        Ok(key)
    }

    /// Deletes one access key of `name`; an identity without keys simply cannot sign
    /// requests.
    pub async fn delete_access_key(
        &self,
        proof: &Authorized,
        name: &str,
        access_key: &str,
    ) -> ServerResult<()> {
        proof.covers_user("admin:DeleteAccessKey", name)?;
        match self.store.delete_access_key(name, access_key).await {
            Err(MetaError::NoSuchAccessKey) => return Err(no_such_key(name, access_key)),
            r => r.map_err(store_err)?,
        }
        self.reload().await
    }

    /// Replaces `old` with a new key pair in one transaction: the old key stops working the
    /// moment the new one exists.
    pub async fn rotate_access_key(
        &self,
        proof: &Authorized,
        name: &str,
        old: &str,
    ) -> ServerResult<NewAccessKey> {
        proof.covers_user("admin:RotateAccessKey", name)?;
        self.get_identity(name)?;
        let key = new_key_pair()?;
        match self.store.replace_access_key(old, &key.stored(name)).await {
            Err(MetaError::NoSuchAccessKey) => return Err(no_such_key(name, old)),
            r => r.map_err(store_err)?,
        }
        self.reload().await?;
        Ok(key)
    }

    pub fn list_access_keys(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .snapshot()
            .keys
            .values()
            .filter(|k| k.identity == name)
            .map(|k| k.access_key.clone())
            .collect();
        v.sort();
        v
    }

    // ---- identity policies ----

    pub async fn put_identity_policy(
        &self,
        proof: &Authorized,
        name: &str,
        policy_name: &str,
        doc: &str,
    ) -> ServerResult<()> {
        proof.covers_user("admin:PutUserPolicy", name)?;
        self.get_identity(name)?;
        check_name("PolicyName", policy_name, 128)?;
        Policy::parse(doc, PolicyKind::Identity).map_err(malformed_policy)?;
        self.store
            .put_identity_policy(name, policy_name, doc)
            .await
            .map_err(store_err)?;
        self.reload().await
    }

    pub fn get_identity_policy(&self, name: &str, policy_name: &str) -> ServerResult<String> {
        self.snapshot()
            .policies
            .get(name)
            .and_then(|v| v.iter().find(|(n, _)| n == policy_name))
            .map(|(_, p)| p.source().to_owned())
            .ok_or_else(|| {
                no_such_entity(&format!(
                    "The user policy with name {policy_name} cannot be found."
                ))
            })
    }

    pub async fn delete_identity_policy(
        &self,
        proof: &Authorized,
        name: &str,
        policy_name: &str,
    ) -> ServerResult<()> {
        proof.covers_user("admin:DeleteUserPolicy", name)?;
        match self.store.delete_identity_policy(name, policy_name).await {
            Err(MetaError::NoSuchPolicy | MetaError::NoSuchIdentity(_)) => {
                return Err(no_such_entity(&format!(
                    "The user policy with name {policy_name} cannot be found."
                )))
            }
            r => r.map_err(store_err)?,
        }
        self.reload().await
    }

    pub fn list_identity_policies(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .snapshot()
            .policies
            .get(name)
            .map(|v| v.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    // ---- buckets ----

    /// The identity that created `bucket` (`root` for buckets older than ownership).
    pub fn bucket_owner(&self, bucket: &str) -> String {
        self.snapshot()
            .bucket_owners
            .get(bucket)
            .cloned()
            .unwrap_or_else(|| "root".to_owned())
    }

    pub async fn put_bucket_policy(
        &self,
        proof: &Authorized,
        bucket: &str,
        doc: &str,
    ) -> ServerResult<()> {
        proof.covers("s3:PutBucketPolicy", &s3_arn(bucket, None))?;
        Policy::parse(doc, PolicyKind::Resource).map_err(|e| {
            ServerError::s3(
                s3s::S3ErrorCode::MalformedPolicy,
                format!("Policies must be valid JSON and the first byte must be '{{': {e}"),
            )
        })?;
        self.store
            .put_bucket_policy(bucket, doc)
            .await
            .map_err(store_err)?;
        self.reload().await
    }

    pub fn bucket_policy(&self, bucket: &str) -> Option<String> {
        self.snapshot()
            .bucket_policies
            .get(bucket)
            .map(|p| p.source().to_owned())
    }

    pub async fn delete_bucket_policy(&self, proof: &Authorized, bucket: &str) -> ServerResult<()> {
        proof.covers("s3:DeleteBucketPolicy", &s3_arn(bucket, None))?;
        self.store
            .delete_bucket_policy(bucket)
            .await
            .map_err(store_err)?;
        self.reload().await
    }

    // ---- decisions ----

    /// The decision for `action` on `resource` (an S3 ARN) in `bucket` (see the module docs):
    /// the proof if allowed, `None` if refused.
    pub fn authorize(
        &self,
        p: &Principal,
        action: &str,
        resource: &str,
        bucket: Option<&str>,
        ctx: &Context,
    ) -> Option<Authorized> {
        self.decide(p, action, resource, bucket, ctx)
            .then(|| Authorized {
                principal: p.clone(),
                action: action.to_owned(),
                resource: resource.to_owned(),
            })
    }

    fn decide(
        &self,
        p: &Principal,
        action: &str,
        resource: &str,
        bucket: Option<&str>,
        ctx: &Context,
    ) -> bool {
        let snap = self.snapshot();
        let req = Request {
            principal: p.arn(),
            action,
            resource,
            context: ctx,
        };
        let mut decisions: Vec<Decision> = snap
            .policies
            .get(p.name())
            .map(|v| v.iter().map(|(_, pol)| pol.evaluate(&req)).collect())
            .unwrap_or_default();
        if let Some(bp) = bucket.and_then(|b| snap.bucket_policies.get(b)) {
            decisions.push(bp.evaluate(&req));
        }
        match combine(decisions) {
            Decision::Deny => false,
            Decision::Allow => true,
            Decision::NotApplicable => {
                // ListBuckets is answered with the buckets the caller may list: harmless to
                // allow by default (a policy can still deny it).
                // Bypassing GOVERNANCE retention is never implied by owning the bucket: it
                // needs an explicit Allow (as for IAM users on AWS), or root.
                action == "s3:ListAllMyBuckets"
                    || p.is_root()
                    || (!EXPLICIT_ONLY.contains(&action)
                        && bucket.is_some_and(|b| {
                            snap.bucket_owners.get(b).map_or("root", String::as_str) == p.name()
                        }))
            }
        }
    }

    /// The decision for an action bound to no bucket or key (admin API, CreateKey…): the
    /// caller's identity policies; the root identity is allowed unless a policy denies.
    pub fn authorize_unbound(
        &self,
        p: &Principal,
        action: &str,
        ctx: &Context,
    ) -> Option<Authorized> {
        self.authorize(p, action, "*", None, ctx)
    }
}

impl IdentityLookup for Iam {
    fn allows_unbound(&self, p: &Principal, action: &str, secure: bool) -> bool {
        self.authorize_unbound(p, action, &base_context(p, secure))
            .is_some()
    }

    fn lookup(&self, access_key: &str) -> Option<(Zeroizing<String>, Principal)> {
        let snap = self.snapshot();
        let key = snap.keys.get(access_key)?;
        let id = snap.identities.get(&key.identity)?;
        if !id.enabled {
            return None;
        }
        Some((
            Zeroizing::new(key.secret.expose().to_owned()),
            Principal::with_arn(&key.identity, &id.arn, access_key, id.kind == "root"),
        ))
    }
}

fn no_such_key(name: &str, access_key: &str) -> ServerError {
    no_such_entity(&format!(
        "The Access Key with id {access_key} cannot be found for user {name}."
    ))
}

fn no_such_entity(msg: &str) -> ServerError {
    ServerError::s3(s3s::S3ErrorCode::Custom("NoSuchEntity".into()), msg)
}

fn malformed_policy(e: coffer_policy::PolicyError) -> ServerError {
    ServerError::s3(
        s3s::S3ErrorCode::Custom("MalformedPolicyDocument".into()),
        e.to_string(),
    )
}

/// The condition keys every request carries (see spec/policy.md).
pub fn base_context(p: &Principal, secure: bool) -> Context {
    let mut ctx = Context::new();
    ctx.insert("aws:SecureTransport", if secure { "true" } else { "false" });
    ctx.insert("aws:PrincipalArn", p.arn().to_owned());
    ctx.insert("aws:username", p.name().to_owned());
    ctx.insert("aws:PrincipalAccount", crate::principal::ACCOUNT);
    ctx
}

/// The canonical user id S3 shows for an identity (owners, grants): 64 hex digits, like
/// AWS's, derived from the identity's name so that each identity has its own and it is
/// stable across restarts (SHA-256 of a fixed label and the name).
pub fn canonical_id(identity: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"coffer canonical user id\0");
    ctx.update(identity.as_bytes());
    hex::encode(ctx.finish().as_ref())
}

/// Actions a bucket owner gets only from a policy that allows them, never by default.
const EXPLICIT_ONLY: [&str; 1] = ["s3:BypassGovernanceRetention"];

/// The IAM action an S3 operation needs (AWS's mapping; the operations Coffer serves).
pub fn s3_action(op: &str) -> String {
    let a = match op {
        "GetObject" | "HeadObject" => "GetObject",
        "PutObject"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload" => "PutObject",
        "AbortMultipartUpload" => "AbortMultipartUpload",
        "ListParts" => "ListMultipartUploadParts",
        "DeleteObject" | "DeleteObjects" => "DeleteObject",
        "ListObjects" | "ListObjectsV2" | "HeadBucket" => "ListBucket",
        "ListObjectVersions" => "ListBucketVersions",
        "ListMultipartUploads" => "ListBucketMultipartUploads",
        "ListBuckets" => "ListAllMyBuckets",
        "GetBucketEncryption" => "GetEncryptionConfiguration",
        "PutBucketEncryption" | "DeleteBucketEncryption" => "PutEncryptionConfiguration",
        "PutObjectLockConfiguration" => "PutBucketObjectLockConfiguration",
        "GetObjectLockConfiguration" => "GetBucketObjectLockConfiguration",
        "GetBucketLifecycleConfiguration" => "GetLifecycleConfiguration",
        "PutBucketLifecycleConfiguration" | "DeleteBucketLifecycle" => "PutLifecycleConfiguration",
        "GetBucketCors" => "GetBucketCORS",
        "PutBucketCors" | "DeleteBucketCors" => "PutBucketCORS",
        "GetPublicAccessBlock" => "GetBucketPublicAccessBlock",
        "PutPublicAccessBlock" | "DeletePublicAccessBlock" => "PutBucketPublicAccessBlock",
        "DeleteBucketTagging" => "PutBucketTagging",
        "GetBucketOwnershipControls" => "GetBucketOwnershipControls",
        "PutBucketOwnershipControls" | "DeleteBucketOwnershipControls" => {
            "PutBucketOwnershipControls"
        }
        other => other,
    };
    format!("s3:{a}")
}

/// The action of an operation that names an object version (`versionId`): AWS's separate
/// `…Version…` permissions for reading, deleting and tagging one version.
pub fn s3_version_action(op: &str) -> String {
    match op {
        "GetObject" | "HeadObject" => "s3:GetObjectVersion".to_owned(),
        "DeleteObject" => "s3:DeleteObjectVersion".to_owned(),
        "GetObjectTagging" => "s3:GetObjectVersionTagging".to_owned(),
        "PutObjectTagging" => "s3:PutObjectVersionTagging".to_owned(),
        "DeleteObjectTagging" => "s3:DeleteObjectVersionTagging".to_owned(),
        "GetObjectAcl" => "s3:GetObjectVersionAcl".to_owned(),
        "PutObjectAcl" => "s3:PutObjectVersionAcl".to_owned(),
        "GetObjectAttributes" => "s3:GetObjectVersionAttributes".to_owned(),
        other => s3_action(other),
    }
}

/// The ARN of a bucket or of an object in it.
pub fn s3_arn(bucket: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => format!("arn:aws:s3:::{bucket}/{k}"),
        None => format!("arn:aws:s3:::{bucket}"),
    }
}

/// s3s's access hook: resolves the caller, decides, and leaves the [`Principal`] and the
/// [`Authorized`] proof in the request's extensions for the handlers (bucket ownership,
/// SSE-KMS key checks, bucket policy changes).
pub struct S3Authz {
    pub iam: Arc<Iam>,
    pub secure: bool,
    /// Object metadata, for `s3:ExistingObjectTag/…` (read only when a policy uses it).
    pub meta: Option<Arc<dyn coffer_meta::MetaStore>>,
}

/// The principal of an unsigned request. Its name cannot be an identity's (names are
/// `[A-Za-z0-9+=,.@_-]`), its ARN matches no policy `Principal` but `"*"`.
pub fn anonymous() -> Principal {
    Principal::with_arn("*anonymous*", "anonymous", "", false)
}

impl S3Authz {
    /// Whether `bucket`'s public access block has RestrictPublicBuckets on (also when it
    /// cannot be read: refusing is the safe answer).
    async fn restricts_public(&self, bucket: &str) -> bool {
        let Some(meta) = &self.meta else {
            return true;
        };
        match meta
            .bucket_config(bucket, coffer_meta::BucketConfig::PublicAccessBlock)
            .await
        {
            Ok(None) => false,
            Ok(Some(doc)) => serde_json::from_str::<serde_json::Value>(&doc)
                .map(|v| v["restrict_public_buckets"] != serde_json::Value::Bool(false))
                .unwrap_or(true),
            Err(_) => true,
        }
    }
}

/// Operations on an existing object version whose decision may use its tags
/// (`s3:ExistingObjectTag/<key>`), as on AWS.
const TAG_CONDITIONED: [&str; 12] = [
    "GetObject",
    "HeadObject",
    "GetObjectAttributes",
    "GetObjectTagging",
    "PutObjectTagging",
    "DeleteObjectTagging",
    "GetObjectAcl",
    "PutObjectAcl",
    "GetObjectRetention",
    "PutObjectRetention",
    "GetObjectLegalHold",
    "PutObjectLegalHold",
];

/// `AccessDenied`, recorded as the request's outcome: the one refusal of the S3 access hook
/// and of handlers that find no caller or proof in the extensions.
pub fn access_denied() -> s3s::S3Error {
    coffer_outcome::Recorder::s3_error(
        s3s::S3Error::with_message(s3s::S3ErrorCode::AccessDenied, "Access Denied"),
        false,
    )
}

#[async_trait::async_trait]
impl s3s::access::S3Access for S3Authz {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        let p = match cx.credentials() {
            // An unsigned request: only a bucket policy allowing every principal grants it
            // (identity policies and ownership cannot apply to nobody).
            None => anonymous(),
            Some(creds) => match self.iam.lookup(&creds.access_key) {
                Some((_, p)) => p,
                None => return Err(access_denied()),
            },
        };
        let is_anonymous = cx.credentials().is_none();
        let op = cx.s3_op().name().to_owned();
        let query = crate::request::Query::parse(cx.uri().query());
        let action = if query.get("versionId").is_some() {
            s3_version_action(&op)
        } else {
            s3_action(&op)
        };
        let (bucket, key) = match cx.s3_path() {
            s3s::path::S3Path::Root => (None, None),
            s3s::path::S3Path::Bucket { bucket } => (Some(bucket.to_string()), None),
            s3s::path::S3Path::Object { bucket, key } => {
                (Some(bucket.to_string()), Some(key.to_string()))
            }
        };
        let mut ctx = base_context(&p, self.secure);
        for (h, k) in [
            (
                "x-amz-server-side-encryption",
                "s3:x-amz-server-side-encryption",
            ),
            (
                "x-amz-server-side-encryption-aws-kms-key-id",
                "s3:x-amz-server-side-encryption-aws-kms-key-id",
            ),
            (
                "x-amz-server-side-encryption-customer-algorithm",
                "s3:x-amz-server-side-encryption-customer-algorithm",
            ),
            ("x-amz-copy-source", "s3:x-amz-copy-source"),
            ("x-amz-metadata-directive", "s3:x-amz-metadata-directive"),
            ("x-amz-acl", "s3:x-amz-acl"),
            ("x-amz-storage-class", "s3:x-amz-storage-class"),
            ("x-amz-object-lock-mode", "s3:object-lock-mode"),
            ("x-amz-object-lock-legal-hold", "s3:object-lock-legal-hold"),
        ] {
            if let Some(v) = cx.headers().get(h).and_then(|v| v.to_str().ok()) {
                ctx.insert(k, v.to_owned());
            }
        }
        for k in ["prefix", "delimiter", "max-keys"] {
            if let Some(v) = query.get(k) {
                ctx.insert(&format!("s3:{k}"), v.to_owned());
            }
        }
        if let Some(v) = query.get("versionId") {
            ctx.insert("s3:VersionId", v.to_owned());
        }
        // Tags the request sets (`x-amz-tagging` on PUT, copy, multipart creation).
        if let Some(t) = cx
            .headers()
            .get("x-amz-tagging")
            .and_then(|v| v.to_str().ok())
        {
            for (k, v) in form_urlencoded::parse(t.as_bytes()) {
                ctx.insert(&format!("s3:RequestObjectTag/{k}"), v.into_owned());
                ctx.insert("s3:RequestObjectTagKeys", k.into_owned());
            }
        }
        // Tags the object already has, when a policy looks at them.
        if let (Some(meta), Some(b), Some(k)) = (&self.meta, &bucket, &key) {
            if TAG_CONDITIONED.contains(&op.as_str()) && self.iam.uses_existing_tags() {
                let found = meta
                    .object_version(b, k, query.get("versionId"))
                    .await
                    .map_err(|_| access_denied())?;
                for (tk, tv) in found.map(|r| r.tags).unwrap_or_default() {
                    ctx.insert(&format!("s3:ExistingObjectTag/{tk}"), tv);
                }
            }
        }
        let resource = match (&bucket, &key) {
            (None, _) => "*".to_owned(),
            (Some(b), k) => s3_arn(b, k.as_deref()),
        };
        if is_anonymous {
            let Some(b) = &bucket else {
                return Err(access_denied());
            };
            // RestrictPublicBuckets: public policies grant nothing to anonymous callers.
            if self.restricts_public(b).await {
                return Err(access_denied());
            }
        }
        // PostObject names its key in the form, which s3s reads after this check: decided
        // in `post_object` below, on the object. DeleteObjects names its keys in the body:
        // each is checked in the handler.
        let proof = if op == "DeleteObjects" || op == "PostObject" {
            None
        } else {
            let proof = self
                .iam
                .authorize(&p, &action, &resource, bucket.as_deref(), &ctx);
            Some(proof.ok_or_else(access_denied)?)
        };
        if matches!(op.as_str(), "CopyObject" | "UploadPartCopy") {
            let header = cx
                .headers()
                .get("x-amz-copy-source")
                .and_then(|v| v.to_str().ok());
            if let Some((sb, sk)) = header.and_then(copy_source) {
                let src = s3_arn(&sb, Some(&sk));
                // Copying a named version reads it with s3:GetObjectVersion, as on AWS.
                let read = if header.is_some_and(|h| h.contains("?versionId=")) {
                    "s3:GetObjectVersion"
                } else {
                    "s3:GetObject"
                };
                if self
                    .iam
                    .authorize(&p, read, &src, Some(&sb), &ctx)
                    .is_none()
                {
                    return Err(access_denied());
                }
            }
        }
        if let Some(proof) = proof {
            cx.extensions_mut().insert(proof);
        }
        cx.extensions_mut().insert(p);
        Ok(())
    }

    /// PostObject (a browser form upload, signed by its POST policy): `s3:PutObject` on the
    /// object the form names, with the form's tags as `s3:RequestObjectTag/…`. A key's
    /// `${filename}` is first replaced by the file part's name ([`crate::post_form`]), so the
    /// final key is the one authorized and stored.
    async fn post_object(
        &self,
        req: &mut s3s::S3Request<s3s::dto::PostObjectInput>,
    ) -> s3s::S3Result<()> {
        let p = req
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(access_denied)?;
        if req.input.key.contains(crate::post_form::FILENAME_VARIABLE) {
            let form = req.extensions.get::<crate::post_form::PostForm>().cloned();
            let key = match form {
                Some(form) => form.substitute(&req.input.key).await,
                None => None,
            };
            req.input.key = key.ok_or_else(|| {
                s3s::s3_error!(
                    InvalidArgument,
                    "The form's key uses ${{filename}} but no file part name was found before the first {} bytes of the form.",
                    crate::post_form::PREFIX_LIMIT
                )
            })?;
        }
        let bucket = req.input.bucket.clone();
        let mut ctx = base_context(&p, self.secure);
        if let Some(t) = &req.input.tagging {
            for (k, v) in form_urlencoded::parse(t.as_bytes()) {
                ctx.insert(&format!("s3:RequestObjectTag/{k}"), v.into_owned());
                ctx.insert("s3:RequestObjectTagKeys", k.into_owned());
            }
        }
        if let Some(sse) = &req.input.server_side_encryption {
            ctx.insert("s3:x-amz-server-side-encryption", sse.as_str().to_owned());
        }
        let proof = self
            .iam
            .authorize(
                &p,
                "s3:PutObject",
                &s3_arn(&bucket, Some(&req.input.key)),
                Some(&bucket),
                &ctx,
            )
            .ok_or_else(access_denied)?;
        req.extensions.insert(proof);
        Ok(())
    }
}

/// `x-amz-copy-source`: `[/]bucket/key[?versionId=…]`, percent-encoded.
fn copy_source(v: &str) -> Option<(String, String)> {
    let v = v.split('?').next()?;
    let v = crate::request::decode_or_keep(v.trim_start_matches('/'));
    let (b, k) = v.split_once('/')?;
    (!b.is_empty() && !k.is_empty()).then(|| (b.to_owned(), k.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_ids_are_distinct_stable_and_shaped_like_aws() {
        let (a, b) = (canonical_id("alice"), canonical_id("bob"));
        assert_ne!(a, b);
        assert_eq!(a, canonical_id("alice"));
        assert!(
            a.len() == 64 && a.bytes().all(|c| c.is_ascii_hexdigit()),
            "{a}"
        );
    }

    #[test]
    fn copy_source_forms() {
        assert_eq!(
            copy_source("/b/a%20b/c?versionId=null"),
            Some(("b".into(), "a b/c".into()))
        );
        assert_eq!(copy_source("b/k"), Some(("b".into(), "k".into())));
        assert_eq!(copy_source("b"), None);
        assert_eq!(copy_source("/b/"), None);
    }

    #[test]
    fn names() {
        assert!(check_name("UserName", "alice.b@x_y-z+=,", 64).is_ok());
        assert!(check_name("UserName", "", 64).is_err());
        assert!(check_name("UserName", "a/b", 64).is_err());
        assert!(check_name("UserName", &"a".repeat(65), 64).is_err());
    }

    async fn iam() -> Iam {
        let store = Arc::new(coffer_meta::MemoryStore::new());
        store
            .create_identity(&IdentityRecord {
                name: "root".into(),
                kind: "root".into(),
                enabled: true,
                created: 0,
            })
            .await
            .unwrap();
        Iam::open(store).await.unwrap()
    }

    /// A change is made only with a proof of the decision that allowed exactly that change:
    /// a denied caller gets no proof, and a proof for one user cannot create another.
    #[tokio::test]
    async fn changes_need_a_proof_that_covers_them() {
        let iam = iam().await;
        let root = Principal::authenticated("root", "AKROOT", true);
        let ctx = base_context(&root, true);
        let alice = Principal::user_arn("alice");
        let proof = iam
            .authorize(&root, "admin:CreateUser", &alice, None, &ctx)
            .expect("root may create users");
        assert_eq!(
            (proof.principal(), proof.action(), proof.resource()),
            (&root, "admin:CreateUser", alice.as_str())
        );

        let wrong = iam.create_identity(&proof, "bob", "user").await;
        assert!(
            matches!(&wrong, Err(ServerError::Internal(m)) if m.contains("does not cover")),
            "{wrong:?}"
        );
        assert!(iam.get_identity("bob").is_err(), "nothing was created");
        iam.create_identity(&proof, "alice", "user").await.unwrap();
        // The proof for CreateUser is not one for DeleteUser.
        assert!(iam.delete_identity(&proof, "alice").await.is_err());
        assert!(iam.get_identity("alice").is_ok());

        // alice has no policy: she is refused, and so holds no proof to change anything.
        let alice_p = Principal::authenticated("alice", "AKALICE", false);
        let actx = base_context(&alice_p, true);
        assert!(iam
            .authorize(
                &alice_p,
                "admin:CreateUser",
                &Principal::user_arn("eve"),
                None,
                &actx
            )
            .is_none());
        assert!(iam
            .authorize(
                &alice_p,
                "s3:GetObject",
                "arn:aws:s3:::b/k",
                Some("b"),
                &actx
            )
            .is_none());
    }

    #[test]
    fn actions() {
        assert_eq!(s3_action("HeadObject"), "s3:GetObject");
        assert_eq!(s3_action("UploadPartCopy"), "s3:PutObject");
        assert_eq!(s3_action("ListObjectsV2"), "s3:ListBucket");
        assert_eq!(s3_action("PutBucketPolicy"), "s3:PutBucketPolicy");
    }
}
