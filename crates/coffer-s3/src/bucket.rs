//! Bucket operations: create, delete, head, list, location, versioning, default encryption, policy.

use super::*;

/// Names S3 reserves for its own features (bucket naming rules).
pub(super) fn check_new_bucket_name(name: &str) -> ServerResult<()> {
    const PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const SUFFIXES: [&str; 5] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];
    if PREFIXES.iter().any(|p| name.starts_with(p)) || SUFFIXES.iter().any(|x| name.ends_with(x)) {
        return Err(ServerError::s3(
            S3ErrorCode::InvalidBucketName,
            "The specified bucket is not valid: the name uses a reserved prefix or suffix",
        ));
    }
    Ok(())
}

pub(super) async fn create_bucket(
    h: &S3Handlers,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let bucket = req.input.bucket;
    s3(check_new_bucket_name(&bucket))?;
    if let Some(loc) = req
        .input
        .create_bucket_configuration
        .as_ref()
        .and_then(|c| c.location_constraint.as_ref())
        .filter(|loc| loc.as_str() != "us-east-1")
    {
        // This server is one region, us-east-1.
        return Err(ServerError::s3(
            S3ErrorCode::InvalidLocationConstraint,
            format!(
                "The specified location-constraint is not valid: {}",
                loc.as_str()
            ),
        )
        .into());
    }
    // ACLs are disabled (bucket owner enforced): a new bucket takes no other ACL.
    let acl = req.input.acl.as_ref().map(|a| a.as_str());
    if acl.is_some_and(|a| a != "private")
        || any_grant!(req.input)
        || req.input.grant_write.is_some()
    {
        return Err(ServerError::s3(
            S3ErrorCode::InvalidBucketAclWithObjectOwnership,
            "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
        )
        .into());
    }
    let caller = principal(&req.extensions)?;
    match h.meta.create_bucket(&bucket, now_ms(), caller.name()).await {
        Ok(()) => {}
        Err(MetaError::BucketAlreadyExists { owner }) if owner == caller.name() => {
            return Err(ServerError::s3(
                S3ErrorCode::BucketAlreadyOwnedByYou,
                "Your previous request to create the named bucket succeeded and you already own it.",
            )
            .into());
        }
        Err(MetaError::BucketAlreadyExists { .. }) => {
            return Err(ServerError::s3(
                S3ErrorCode::BucketAlreadyExists,
                "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.",
            )
            .into());
        }
        Err(e) => return Err(ServerError::from(e).into()),
    }
    // New buckets block public access, as on AWS since April 2023.
    let mut made = set_access_block(h, &bucket, &AccessBlock::ALL).await;
    if made.is_ok() && req.input.object_lock_enabled_for_bucket == Some(true) {
        made = enable_lock_at_creation(h, &bucket).await;
    }
    if let Err(e) = made {
        // No half-made bucket: one whose configuration could not be written is removed.
        let _ = h.meta.delete_bucket(&bucket).await;
        return Err(e.into());
    }
    s3(h.iam.reload().await)?;
    let mut out = CreateBucketOutput::default();
    out.location = Some(format!("/{bucket}"));
    Ok(S3Response::new(out))
}

pub(super) async fn delete_bucket(
    h: &S3Handlers,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    // Unfinished multipart uploads do not keep a bucket (as on S3): they are aborted with
    // it, and their parts' blobs deleted once the bucket is gone.
    let parts = s3(h.meta.delete_bucket(&req.input.bucket).await)?;
    for p in parts {
        h.blobs.delete(&p.segment.blob).await;
    }
    Ok(S3Response::new(DeleteBucketOutput::default()))
}

pub(super) async fn head_bucket(
    h: &S3Handlers,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    if !s3(h.meta.bucket_exists(&req.input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    let mut out = HeadBucketOutput::default();
    out.bucket_region = Some("us-east-1".to_owned());
    Ok(S3Response::new(out))
}

pub(super) async fn list_buckets(
    h: &S3Handlers,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    // Each identity sees the buckets it may list (its own, and those policies open to it).
    let caller = principal(&req.extensions)?;
    let ctx = coffer_iam::iam::base_context(&caller, h.secure);
    let input = req.input;
    let max = match input.max_buckets {
        None => usize::MAX,
        Some(n @ 1..=10_000) => n as usize,
        Some(_) => {
            return Err(ServerError::invalid_argument(
                "Argument max-buckets must be an integer between 1 and 10000",
            )
            .into())
        }
    };
    // The token is the last name of the previous page (opaque to clients: base64url).
    let after = match input.continuation_token.as_deref() {
        None => None,
        Some(t) => Some(s3(base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ServerError::invalid_argument("The continuation token provided is incorrect")
            }))?),
    };
    let prefix = input.prefix.as_deref().unwrap_or("");
    let mut visible: Vec<BucketInfo> = s3(h.meta.list_buckets().await)?
        .into_iter()
        .filter(|b| b.name.starts_with(prefix))
        .filter(|b| after.as_deref().is_none_or(|a| b.name.as_str() > a))
        .filter(|BucketInfo { name, .. }| {
            h.iam
                .authorize(
                    &caller,
                    "s3:ListBucket",
                    &coffer_iam::iam::s3_arn(name, None),
                    Some(name),
                    &ctx,
                )
                .is_some()
        })
        .collect();
    visible.sort_by(|a, b| a.name.cmp(&b.name));
    let truncated = visible.len() > max;
    visible.truncate(max);
    let mut out = ListBucketsOutput::default();
    if truncated {
        out.continuation_token = visible
            .last()
            .map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&b.name));
    }
    out.buckets = Some(
        visible
            .into_iter()
            .map(|BucketInfo { name, created }| {
                let mut b = Bucket::default();
                b.name = Some(name);
                b.creation_date = Some(ts(created));
                b.bucket_region = Some("us-east-1".to_owned());
                b
            })
            .collect(),
    );
    out.prefix = input.prefix;
    out.owner = Some(owner_of(caller.name()));
    Ok(S3Response::new(out))
}

pub(super) async fn get_bucket_location(
    h: &S3Handlers,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    if !s3(h.meta.bucket_exists(&req.input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    // us-east-1 is reported as an empty LocationConstraint, as AWS does.
    Ok(S3Response::new(GetBucketLocationOutput::default()))
}

pub(super) async fn get_bucket_versioning(
    h: &S3Handlers,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    let stored = s3(h
        .meta
        .bucket_config(&req.input.bucket, BucketConfig::Versioning)
        .await)?;
    let mut out = GetBucketVersioningOutput::default();
    out.status = match s3(Versioning::from_document(stored.as_deref()))? {
        Versioning::Unversioned => None,
        Versioning::Enabled => Some(BucketVersioningStatus::from_static(
            BucketVersioningStatus::ENABLED,
        )),
        Versioning::Suspended => Some(BucketVersioningStatus::from_static(
            BucketVersioningStatus::SUSPENDED,
        )),
    };
    Ok(S3Response::new(out))
}

pub(super) async fn put_bucket_versioning(
    h: &S3Handlers,
    req: S3Request<PutBucketVersioningInput>,
) -> S3Result<S3Response<PutBucketVersioningOutput>> {
    let input = req.input;
    let config = input.versioning_configuration;
    if config
        .mfa_delete
        .as_ref()
        .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
    {
        return Err(ServerError::s3(
            S3ErrorCode::NotImplemented,
            "MFA delete is not supported: Coffer has no MFA devices.",
        )
        .into());
    }
    let status = match config.status.as_ref().map(|s| s.as_str()) {
        // No status: the state is unchanged (AWS accepts this).
        None => {
            if !s3(h.meta.bucket_exists(&input.bucket).await)? {
                return Err(ServerError::NoSuchBucket.into());
            }
            return Ok(S3Response::new(PutBucketVersioningOutput::default()));
        }
        Some(BucketVersioningStatus::ENABLED) => "Enabled",
        Some(BucketVersioningStatus::SUSPENDED) => "Suspended",
        Some(_) => {
            return Err(ServerError::s3(
                S3ErrorCode::MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema",
            )
            .into())
        }
    };
    if status == "Suspended"
        && s3(h
            .meta
            .bucket_config(&input.bucket, BucketConfig::ObjectLock)
            .await)?
        .is_some()
    {
        return Err(ServerError::s3(
            S3ErrorCode::InvalidBucketState,
            "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.",
        )
        .into());
    }
    s3(h.meta
        .set_bucket_config(&input.bucket, BucketConfig::Versioning, Some(status))
        .await)?;
    Ok(S3Response::new(PutBucketVersioningOutput::default()))
}

pub(super) async fn put_bucket_encryption(
    h: &S3Handlers,
    req: S3Request<PutBucketEncryptionInput>,
) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
    let input = req.input;
    let rule = input
        .server_side_encryption_configuration
        .rules
        .into_iter()
        .next()
        .ok_or_else(|| ServerError::s3(S3ErrorCode::MalformedXML, "No encryption rule"))?;
    let default = rule
        .apply_server_side_encryption_by_default
        .ok_or_else(|| {
            ServerError::s3(
                S3ErrorCode::MalformedXML,
                "ApplyServerSideEncryptionByDefault is required",
            )
        })?;
    let algorithm = default.sse_algorithm.as_str().to_owned();
    match algorithm.as_str() {
        "AES256" => {
            if default.kms_master_key_id.is_some() {
                return Err(ServerError::invalid_argument(
                    "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms",
                )
                .into());
            }
        }
        "aws:kms" => {
            if let Some(k) = &default.kms_master_key_id {
                // The key must exist (AWS checks it when the bucket is used; Coffer checks
                // it now so a typo is caught at configuration time).
                s3(h.keys.kms.describe_key(k).await.map_err(ServerError::from))?;
            }
        }
        other => {
            return Err(ServerError::invalid_argument(format!(
                "The encryption algorithm {other} is not supported"
            ))
            .into())
        }
    }
    let enc = BucketEncryption {
        algorithm,
        kms_key_id: default.kms_master_key_id,
        bucket_key_enabled: rule.bucket_key_enabled.unwrap_or(false),
    };
    s3(h.meta
        .set_bucket_encryption(&input.bucket, Some(&enc))
        .await)?;
    Ok(S3Response::new(PutBucketEncryptionOutput::default()))
}

pub(super) async fn get_bucket_encryption(
    h: &S3Handlers,
    req: S3Request<GetBucketEncryptionInput>,
) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
    // Every bucket has default encryption: SSE-S3 unless configured (as on AWS since 2023).
    let enc = s3(h.meta.bucket_encryption(&req.input.bucket).await)?.unwrap_or(BucketEncryption {
        algorithm: "AES256".into(),
        kms_key_id: None,
        bucket_key_enabled: false,
    });
    let by_default = ServerSideEncryptionByDefault {
        sse_algorithm: ServerSideEncryption::from(enc.algorithm),
        kms_master_key_id: enc.kms_key_id,
    };
    let mut rule = ServerSideEncryptionRule::default();
    rule.apply_server_side_encryption_by_default = Some(by_default);
    rule.bucket_key_enabled = Some(enc.bucket_key_enabled);
    let mut conf = ServerSideEncryptionConfiguration::default();
    conf.rules = vec![rule];
    let mut out = GetBucketEncryptionOutput::default();
    out.server_side_encryption_configuration = Some(conf);
    Ok(S3Response::new(out))
}

pub(super) async fn delete_bucket_encryption(
    h: &S3Handlers,
    req: S3Request<DeleteBucketEncryptionInput>,
) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
    s3(h.meta.set_bucket_encryption(&req.input.bucket, None).await)?;
    Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
}

pub(super) async fn put_bucket_policy(
    h: &S3Handlers,
    req: S3Request<PutBucketPolicyInput>,
) -> S3Result<S3Response<PutBucketPolicyOutput>> {
    if !s3(h.meta.bucket_exists(&req.input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    let proof = authorized(&req.extensions)?;
    if policy_is_public(&req.input.policy)
        && s3(h.access_block(&req.input.bucket).await)?.is_some_and(|b| b.block_public_policy)
    {
        return Err(ServerError::s3(
            S3ErrorCode::AccessDenied,
            "Access Denied: the bucket's public access block (BlockPublicPolicy) refuses a public bucket policy",
        )
        .into());
    }
    s3(h.iam
        .put_bucket_policy(proof, &req.input.bucket, &req.input.policy)
        .await)?;
    Ok(S3Response::new(PutBucketPolicyOutput::default()))
}

pub(super) async fn get_bucket_policy(
    h: &S3Handlers,
    req: S3Request<GetBucketPolicyInput>,
) -> S3Result<S3Response<GetBucketPolicyOutput>> {
    if !s3(h.meta.bucket_exists(&req.input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    let policy = h.iam.bucket_policy(&req.input.bucket).ok_or_else(|| {
        ServerError::s3(
            S3ErrorCode::NoSuchBucketPolicy,
            "The bucket policy does not exist",
        )
    })?;
    let mut out = GetBucketPolicyOutput::default();
    out.policy = Some(policy);
    Ok(S3Response::new(out))
}

pub(super) async fn delete_bucket_policy(
    h: &S3Handlers,
    req: S3Request<DeleteBucketPolicyInput>,
) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
    if !s3(h.meta.bucket_exists(&req.input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    let proof = authorized(&req.extensions)?;
    s3(h.iam.delete_bucket_policy(proof, &req.input.bucket).await)?;
    let mut resp = S3Response::new(DeleteBucketPolicyOutput::default());
    resp.status = Some(http::StatusCode::NO_CONTENT);
    Ok(resp)
}
