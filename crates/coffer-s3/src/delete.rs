//! DeleteObject and DeleteObjects.

use super::*;

pub(super) async fn delete_object(
    h: &S3Handlers,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let caller = principal(&req.extensions)?;
    let input = req.input;
    s3(check_key(&input.key))?;
    if !s3(h.meta.bucket_exists(&input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    let bypass = h.bypass_governance(
        &caller,
        input.bypass_governance_retention,
        &input.bucket,
        &input.key,
    );
    // Deleting a missing key or version succeeds (204), as on S3.
    let deleted = s3(h
        .delete_one(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            bypass,
        )
        .await)?;
    let mut out = DeleteObjectOutput::default();
    out.delete_marker = deleted.delete_marker.then_some(true);
    out.version_id = deleted.version_id;
    Ok(S3Response::new(out))
}

impl S3Handlers {
    /// Whether a delete or retention change bypasses GOVERNANCE retention: the request
    /// asked (`x-amz-bypass-governance-retention: true`) and the caller holds
    /// `s3:BypassGovernanceRetention` on the object.
    pub(super) fn bypass_governance(
        &self,
        caller: &coffer_iam::principal::Principal,
        asked: Option<bool>,
        bucket: &str,
        key: &str,
    ) -> bool {
        asked == Some(true)
            && self
                .iam
                .authorize(
                    caller,
                    "s3:BypassGovernanceRetention",
                    &coffer_iam::iam::s3_arn(bucket, Some(key)),
                    Some(bucket),
                    &coffer_iam::iam::base_context(caller, self.secure),
                )
                .is_some()
    }

    /// One DeleteObject (also each key of DeleteObjects): the store applies versioning
    /// and Object Lock; the blobs of what it removed are deleted.
    pub(super) async fn delete_one(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        bypass_governance: bool,
    ) -> ServerResult<Deleted> {
        let marker = uuid::Uuid::new_v4().to_string();
        let mut deleted = self
            .meta
            .delete_object(
                bucket,
                key,
                &DeleteRequest {
                    version_id,
                    marker_version: &marker,
                    now: now_ms(),
                    bypass_governance,
                },
            )
            .await?;
        if !deleted.removed.is_empty() {
            self.delete_records(std::mem::take(&mut deleted.removed))
                .await;
            self.reserve.ensure();
        }
        Ok(deleted)
    }
}

pub(super) async fn delete_objects(
    h: &S3Handlers,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let caller = principal(&req.extensions)?;
    let input = req.input;
    if !s3(h.meta.bucket_exists(&input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    if input.delete.objects.len() > 1000 {
        return Err(ServerError::s3(
            S3ErrorCode::MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema",
        )
        .into());
    }
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    let ctx = coffer_iam::iam::base_context(&caller, h.secure);
    for id in input.delete.objects {
        // s3:DeleteObject (s3:DeleteObjectVersion for a named version) is decided per key,
        // as AWS does.
        let action = if id.version_id.is_some() {
            "s3:DeleteObjectVersion"
        } else {
            "s3:DeleteObject"
        };
        let allowed = h.iam.authorize(
            &caller,
            action,
            &coffer_iam::iam::s3_arn(&input.bucket, Some(&id.key)),
            Some(&input.bucket),
            &ctx,
        );
        if allowed.is_none() {
            let mut err = Error::default();
            err.key = Some(id.key);
            err.code = Some("AccessDenied".to_owned());
            err.message = Some("Access Denied".to_owned());
            errors.push(err);
            continue;
        }
        let bypass = h.bypass_governance(
            &caller,
            input.bypass_governance_retention,
            &input.bucket,
            &id.key,
        );
        match h
            .delete_one(&input.bucket, &id.key, id.version_id.as_deref(), bypass)
            .await
        {
            Ok(done) => {
                if !quiet {
                    let mut d = DeletedObject::default();
                    d.key = Some(id.key);
                    if done.delete_marker {
                        d.delete_marker = Some(true);
                        d.delete_marker_version_id = done.version_id.clone();
                    }
                    if id.version_id.is_some() {
                        d.version_id = done.version_id;
                    }
                    deleted.push(d);
                }
            }
            Err(e) => {
                let e: s3s::S3Error = e.into();
                let mut err = Error::default();
                err.key = Some(id.key);
                err.version_id = id.version_id;
                err.code = Some(e.code().as_str().to_owned());
                err.message = e.message().map(str::to_owned);
                errors.push(err);
            }
        }
    }
    let mut out = DeleteObjectsOutput::default();
    out.deleted = Some(deleted);
    out.errors = (!errors.is_empty()).then_some(errors);
    Ok(S3Response::new(out))
}
