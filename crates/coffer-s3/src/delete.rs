//! DeleteObject and DeleteObjects.

use super::*;

pub(super) async fn delete_object(
    h: &S3Handlers,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let input = req.input;
    s3(check_key(&input.key))?;
    if !s3(h.meta.bucket_exists(&input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    // Deleting a missing key succeeds (204), as on S3.
    if let Some(old) = s3(h.meta.delete_object(&input.bucket, &input.key).await)? {
        h.delete_blobs(old.segments).await;
        h.reserve.ensure();
    }
    Ok(S3Response::new(DeleteObjectOutput::default()))
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
        // s3:DeleteObject is decided per key, as AWS does.
        let allowed = h.iam.authorize(
            &caller,
            "s3:DeleteObject",
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
        match h.meta.delete_object(&input.bucket, &id.key).await {
            Ok(old) => {
                if let Some(old) = old {
                    h.delete_blobs(old.segments).await;
                }
                if !quiet {
                    let mut d = DeletedObject::default();
                    d.key = Some(id.key);
                    deleted.push(d);
                }
            }
            Err(e) => {
                let e: s3s::S3Error = ServerError::from(e).into();
                let mut err = Error::default();
                err.key = Some(id.key);
                err.code = Some(e.code().as_str().to_owned());
                err.message = e.message().map(str::to_owned);
                errors.push(err);
            }
        }
    }
    h.reserve.ensure();
    let mut out = DeleteObjectsOutput::default();
    out.deleted = Some(deleted);
    out.errors = (!errors.is_empty()).then_some(errors);
    Ok(S3Response::new(out))
}
