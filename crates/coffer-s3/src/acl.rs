//! Owners and ACLs in AWS's "bucket owner enforced" model (ACLs disabled: the bucket owner
//! owns every object and policies decide access), ownership controls, the public access
//! block and the bucket policy status.

use serde::{Deserialize, Serialize};

use super::*;

fn acls_disabled() -> ServerError {
    ServerError::s3(
        S3ErrorCode::AccessControlListNotSupported,
        "The bucket does not allow ACLs",
    )
}

/// The one ACL a bucket or object has: its owner with FULL_CONTROL.
fn owner_grants(owner: &Owner) -> Grants {
    let grantee = Grantee {
        display_name: owner.display_name.clone(),
        email_address: None,
        id: owner.id.clone(),
        type_: Type::from_static(Type::CANONICAL_USER),
        uri: None,
    };
    let mut g = Grant::default();
    g.grantee = Some(grantee);
    g.permission = Some(Permission::from_static(Permission::FULL_CONTROL));
    vec![g]
}

/// The ACL of a bucket or of an object in it: owner and grants.
fn owner_acl(h: &S3Handlers, bucket: &str) -> (Option<Owner>, Option<Grants>) {
    let owner = h.bucket_owner(bucket);
    (Some(owner.clone()), Some(owner_grants(&owner)))
}

/// What a request may set as an ACL when ACLs are disabled: nothing, `private`, or
/// `bucket-owner-full-control` (canned), or an explicit policy granting exactly the
/// owner FULL_CONTROL; anything else is `400 AccessControlListNotSupported`, as on AWS.
pub(super) fn check_acl_request(
    canned: Option<&str>,
    explicit_grants: bool,
    policy: Option<&AccessControlPolicy>,
    owner: &Owner,
) -> ServerResult<()> {
    if let Some(c) = canned {
        if c != "private" && c != "bucket-owner-full-control" {
            return Err(acls_disabled());
        }
    }
    if explicit_grants {
        return Err(acls_disabled());
    }
    if let Some(p) = policy {
        let grants = p.grants.as_deref().unwrap_or_default();
        let only_owner = grants.iter().all(|g| {
            g.permission.as_ref().map(|p| p.as_str()) == Some(Permission::FULL_CONTROL)
                && g.grantee.as_ref().and_then(|e| e.id.as_ref()) == owner.id.as_ref()
        });
        if !only_owner {
            return Err(acls_disabled());
        }
    }
    Ok(())
}

/// Whether an input carries `x-amz-grant-*` headers (same field names on every input).
macro_rules! any_grant {
    ($input:expr) => {
        $input.grant_full_control.is_some()
            || $input.grant_read.is_some()
            || $input.grant_read_acp.is_some()
            || $input.grant_write_acp.is_some()
    };
}
pub(super) use any_grant;

/// PutBucketAcl / PutObjectAcl: the canned ACL, grants or policy, checked.
macro_rules! put_acl {
    ($h:ident, $input:ident) => {
        s3(check_acl_request(
            $input.acl.as_ref().map(|a| a.as_str()),
            any_grant!($input) || $input.grant_write.is_some(),
            $input.access_control_policy.as_ref(),
            &$h.bucket_owner(&$input.bucket),
        ))?
    };
}

/// The ACL headers of a write (`x-amz-acl`, `x-amz-grant-*`: same field names on PutObject,
/// CopyObject, CreateMultipartUpload), checked against the disabled-ACL model.
macro_rules! check_write_acl {
    ($h:ident, $input:ident) => {
        s3(check_acl_request(
            $input.acl.as_ref().map(|a| a.as_str()),
            any_grant!($input),
            None,
            &$h.bucket_owner(&$input.bucket),
        ))?
    };
}
pub(super) use check_write_acl;

pub(super) async fn get_bucket_acl(
    h: &S3Handlers,
    req: S3Request<GetBucketAclInput>,
) -> S3Result<S3Response<GetBucketAclOutput>> {
    if !s3(h.meta.bucket_exists(&req.input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    let mut out = GetBucketAclOutput::default();
    (out.owner, out.grants) = owner_acl(h, &req.input.bucket);
    Ok(S3Response::new(out))
}

pub(super) async fn put_bucket_acl(
    h: &S3Handlers,
    req: S3Request<PutBucketAclInput>,
) -> S3Result<S3Response<PutBucketAclOutput>> {
    let input = req.input;
    if !s3(h.meta.bucket_exists(&input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    put_acl!(h, input);
    Ok(S3Response::new(PutBucketAclOutput::default()))
}

pub(super) async fn get_object_acl(
    h: &S3Handlers,
    req: S3Request<GetObjectAclInput>,
) -> S3Result<S3Response<GetObjectAclOutput>> {
    let input = req.input;
    s3(check_key(&input.key))?;
    s3(
        h.object_at(&input.bucket, &input.key, input.version_id.as_deref())
            .await,
    )?;
    let mut out = GetObjectAclOutput::default();
    (out.owner, out.grants) = owner_acl(h, &input.bucket);
    Ok(S3Response::new(out))
}

pub(super) async fn put_object_acl(
    h: &S3Handlers,
    req: S3Request<PutObjectAclInput>,
) -> S3Result<S3Response<PutObjectAclOutput>> {
    let input = req.input;
    s3(check_key(&input.key))?;
    s3(
        h.object_at(&input.bucket, &input.key, input.version_id.as_deref())
            .await,
    )?;
    put_acl!(h, input);
    Ok(S3Response::new(PutObjectAclOutput::default()))
}

pub(super) async fn get_bucket_ownership_controls(
    h: &S3Handlers,
    req: S3Request<GetBucketOwnershipControlsInput>,
) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
    if !s3(h.meta.bucket_exists(&req.input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    let rule = OwnershipControlsRule {
        object_ownership: ObjectOwnership::from_static(ObjectOwnership::BUCKET_OWNER_ENFORCED),
    };
    let mut out = GetBucketOwnershipControlsOutput::default();
    out.ownership_controls = Some(OwnershipControls { rules: vec![rule] });
    Ok(S3Response::new(out))
}

pub(super) async fn put_bucket_ownership_controls(
    h: &S3Handlers,
    req: S3Request<PutBucketOwnershipControlsInput>,
) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
    let input = req.input;
    if !s3(h.meta.bucket_exists(&input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    let enforced = input.ownership_controls.rules.len() == 1
        && input.ownership_controls.rules[0].object_ownership.as_str()
            == ObjectOwnership::BUCKET_OWNER_ENFORCED;
    if !enforced {
        return Err(ServerError::invalid_request(
            "Coffer supports only the BucketOwnerEnforced object ownership (ACLs disabled).",
        )
        .into());
    }
    Ok(S3Response::new(PutBucketOwnershipControlsOutput::default()))
}

// ---- public access block ----

/// A bucket's public access block as stored ([`BucketConfig::PublicAccessBlock`], JSON). New
/// buckets get all four on, as on AWS since April 2023.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct AccessBlock {
    pub(super) block_public_acls: bool,
    pub(super) ignore_public_acls: bool,
    pub(super) block_public_policy: bool,
    pub(super) restrict_public_buckets: bool,
}

impl AccessBlock {
    pub(super) const ALL: AccessBlock = AccessBlock {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: true,
        restrict_public_buckets: true,
    };
}

impl S3Handlers {
    pub(super) async fn access_block(&self, bucket: &str) -> ServerResult<Option<AccessBlock>> {
        config_json(&*self.meta, bucket, BucketConfig::PublicAccessBlock).await
    }
}

pub(super) async fn set_access_block(
    h: &S3Handlers,
    bucket: &str,
    block: &AccessBlock,
) -> ServerResult<()> {
    set_config_json(&*h.meta, bucket, BucketConfig::PublicAccessBlock, block).await
}

/// Whether a bucket policy is public as AWS judges it, simplified: some `Allow` statement
/// names every principal (`"*"` or `{"AWS": "*"}`) with no `Condition` to narrow it.
pub(super) fn policy_is_public(doc: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(doc) else {
        return false;
    };
    let statements = match &v["Statement"] {
        serde_json::Value::Array(a) => a.clone(),
        s @ serde_json::Value::Object(_) => vec![s.clone()],
        _ => return false,
    };
    let star = |p: &serde_json::Value| match p {
        serde_json::Value::String(s) => s == "*",
        serde_json::Value::Array(a) => a.iter().any(|x| x == "*"),
        _ => false,
    };
    statements.iter().any(|s| {
        s["Effect"] == "Allow"
            && s.get("Condition").is_none()
            && match &s["Principal"] {
                serde_json::Value::String(p) => p == "*",
                serde_json::Value::Object(o) => o.get("AWS").is_some_and(star),
                _ => false,
            }
    })
}

fn setting(v: Option<bool>) -> bool {
    v.unwrap_or(false)
}

pub(super) async fn put_public_access_block(
    h: &S3Handlers,
    req: S3Request<PutPublicAccessBlockInput>,
) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
    let input = req.input;
    let c = input.public_access_block_configuration;
    let block = AccessBlock {
        block_public_acls: setting(c.block_public_acls),
        ignore_public_acls: setting(c.ignore_public_acls),
        block_public_policy: setting(c.block_public_policy),
        restrict_public_buckets: setting(c.restrict_public_buckets),
    };
    s3(set_access_block(h, &input.bucket, &block).await)?;
    Ok(S3Response::new(PutPublicAccessBlockOutput::default()))
}

pub(super) async fn get_public_access_block(
    h: &S3Handlers,
    req: S3Request<GetPublicAccessBlockInput>,
) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
    let Some(b) = s3(h.access_block(&req.input.bucket).await)? else {
        return Err(ServerError::s3(
            S3ErrorCode::Custom("NoSuchPublicAccessBlockConfiguration".into()),
            "The public access block configuration was not found",
        )
        .into());
    };
    let mut c = PublicAccessBlockConfiguration::default();
    c.block_public_acls = Some(b.block_public_acls);
    c.ignore_public_acls = Some(b.ignore_public_acls);
    c.block_public_policy = Some(b.block_public_policy);
    c.restrict_public_buckets = Some(b.restrict_public_buckets);
    let mut out = GetPublicAccessBlockOutput::default();
    out.public_access_block_configuration = Some(c);
    Ok(S3Response::new(out))
}

pub(super) async fn delete_public_access_block(
    h: &S3Handlers,
    req: S3Request<DeletePublicAccessBlockInput>,
) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
    s3(h.meta
        .set_bucket_config(&req.input.bucket, BucketConfig::PublicAccessBlock, None)
        .await)?;
    Ok(S3Response::new(DeletePublicAccessBlockOutput::default()))
}

pub(super) async fn get_bucket_policy_status(
    h: &S3Handlers,
    req: S3Request<GetBucketPolicyStatusInput>,
) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
    if !s3(h.meta.bucket_exists(&req.input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    let Some(doc) = h.iam.bucket_policy(&req.input.bucket) else {
        return Err(ServerError::s3(
            S3ErrorCode::NoSuchBucketPolicy,
            "The bucket policy does not exist",
        )
        .into());
    };
    let mut status = PolicyStatus::default();
    status.is_public = Some(policy_is_public(&doc));
    let mut out = GetBucketPolicyStatusOutput::default();
    out.policy_status = Some(status);
    Ok(S3Response::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_policies_are_recognised() {
        let allow_all = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#;
        let allow_aws_all = r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":["*"]},"Action":"s3:GetObject","Resource":"*"}}"#;
        let deny_all =
            r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*"}]}"#;
        let conditioned = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}]}"#;
        let one_user = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/bob"},"Action":"s3:GetObject","Resource":"*"}]}"#;
        assert!(policy_is_public(allow_all));
        assert!(policy_is_public(allow_aws_all));
        for private in [deny_all, conditioned, one_user, "not json"] {
            assert!(!policy_is_public(private), "{private}");
        }
    }

    #[test]
    fn only_owner_acls_pass_when_acls_are_disabled() {
        let owner = owner_of("alice");
        assert!(check_acl_request(None, false, None, &owner).is_ok());
        assert!(check_acl_request(Some("bucket-owner-full-control"), false, None, &owner).is_ok());
        assert!(check_acl_request(Some("public-read"), false, None, &owner).is_err());
        assert!(check_acl_request(None, true, None, &owner).is_err());
        let mut p = AccessControlPolicy::default();
        p.grants = Some(owner_grants(&owner));
        assert!(check_acl_request(None, false, Some(&p), &owner).is_ok());
        p.grants = Some(owner_grants(&owner_of("bob")));
        assert!(check_acl_request(None, false, Some(&p), &owner).is_err());
    }
}
