//! Object Lock (bucket configuration, retention, legal hold) and tagging (object and
//! bucket tags): the sub-resources of versions and buckets that policy and WORM rest on.

use serde::{Deserialize, Serialize};

use super::*;

/// S3's limits: 10 tags per object, 50 per bucket; keys up to 128 characters, values 256.
const MAX_OBJECT_TAGS: usize = 10;
const MAX_BUCKET_TAGS: usize = 50;
const MAX_TAG_KEY: usize = 128;
const MAX_TAG_VALUE: usize = 256;

/// A bucket's Object Lock configuration as stored ([`BucketConfig::ObjectLock`], JSON): lock
/// is enabled whenever the document exists; `mode` with `days` or `years` is the default
/// retention given to new versions.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct LockConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) mode: Option<RetentionMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) days: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) years: Option<i32>,
}

impl LockConfig {
    /// The default retention of a version written at `now`, if the bucket has one.
    fn default_retention(&self, now: i64) -> Option<Retention> {
        let days = match (self.days, self.years) {
            (Some(d), _) => i64::from(d),
            (None, Some(y)) => i64::from(y) * 365,
            (None, None) => return None,
        };
        Some(Retention {
            mode: self.mode?,
            until: now.saturating_add(days.saturating_mul(DAY_MS)),
        })
    }
}

fn mode_of(s: &str) -> ServerResult<RetentionMode> {
    match s {
        "GOVERNANCE" => Ok(RetentionMode::Governance),
        "COMPLIANCE" => Ok(RetentionMode::Compliance),
        _ => Err(ServerError::invalid_argument("Unknown wormMode directive.")),
    }
}

fn missing_lock_config() -> ServerError {
    ServerError::invalid_request("Bucket is missing Object Lock Configuration")
}

/// The Object Lock and tag headers of a write (PutObject, CopyObject,
/// CreateMultipartUpload: same field names, no shared trait).
macro_rules! write_extras {
    ($h:ident, $input:ident) => {
        s3($h
            .write_extras(
                &$input.bucket,
                $input.object_lock_mode.as_ref().map(|m| m.as_str()),
                $input.object_lock_retain_until_date.as_ref(),
                $input
                    .object_lock_legal_hold_status
                    .as_ref()
                    .map(|s| s.as_str()),
                $input.tagging.as_deref(),
            )
            .await)?
    };
}
pub(super) use write_extras;

/// What a write sets on its new version besides data: retention, legal hold, tags.
#[derive(Clone, Debug, Default)]
pub(super) struct WriteExtras {
    pub(super) retention: Option<Retention>,
    pub(super) legal_hold: bool,
    pub(super) tags: BTreeMap<String, String>,
}

impl WriteExtras {
    pub(super) fn apply(self, rec: &mut ObjectRecord) {
        rec.retention = self.retention;
        rec.legal_hold = self.legal_hold;
        rec.tags = self.tags;
    }
}

impl S3Handlers {
    /// The bucket's Object Lock configuration (`None`: lock not enabled).
    pub(super) async fn lock_config(&self, bucket: &str) -> ServerResult<Option<LockConfig>> {
        config_json(&*self.meta, bucket, BucketConfig::ObjectLock).await
    }

    /// The Object Lock headers and `x-amz-tagging` of a write, checked as S3 checks them;
    /// without lock headers, the bucket's default retention applies.
    pub(super) async fn write_extras(
        &self,
        bucket: &str,
        mode: Option<&str>,
        until: Option<&Timestamp>,
        hold: Option<&str>,
        tagging: Option<&str>,
    ) -> ServerResult<WriteExtras> {
        let tags = match tagging {
            Some(t) => parse_tagging_header(t)?,
            None => BTreeMap::new(),
        };
        let asked = mode.is_some() || until.is_some() || hold.is_some();
        let config = self.lock_config(bucket).await?;
        let Some(config) = config else {
            if asked {
                return Err(missing_lock_config());
            }
            return Ok(WriteExtras {
                tags,
                ..WriteExtras::default()
            });
        };
        let now = now_ms();
        let retention = match (mode, until) {
            (Some(m), Some(u)) => {
                let until = ms_of(u);
                if until <= now {
                    return Err(ServerError::invalid_argument(
                        "The retain until date must be in the future!",
                    ));
                }
                Some(Retention {
                    mode: mode_of(m)?,
                    until,
                })
            }
            (None, None) => config.default_retention(now),
            _ => {
                return Err(ServerError::invalid_argument(
                    "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied",
                ))
            }
        };
        let legal_hold = match hold {
            None | Some("OFF") => false,
            Some("ON") => true,
            Some(_) => {
                return Err(ServerError::invalid_argument(
                    "Legal Hold must be either of 'ON' or 'OFF'",
                ))
            }
        };
        Ok(WriteExtras {
            retention,
            legal_hold,
            tags,
        })
    }
}

/// `x-amz-tagging`: a URL-encoded query string (`k1=v1&k2=v2`).
pub(super) fn parse_tagging_header(header: &str) -> ServerResult<BTreeMap<String, String>> {
    let pairs = form_urlencoded::parse(header.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    check_tags(pairs, MAX_OBJECT_TAGS)
}

fn invalid_tag(msg: &str) -> ServerError {
    ServerError::s3(S3ErrorCode::InvalidTag, msg)
}

/// S3's tag rules: at most `max` tags, unique keys of 1–128 characters, values up to 256,
/// no `aws:` prefix.
fn check_tags(pairs: Vec<(String, String)>, max: usize) -> ServerResult<BTreeMap<String, String>> {
    if pairs.len() > max {
        return Err(ServerError::s3(
            S3ErrorCode::Custom("BadRequest".into()),
            format!("Object tags cannot be greater than {max}"),
        ));
    }
    let mut tags = BTreeMap::new();
    for (k, v) in pairs {
        if k.is_empty() || k.chars().count() > MAX_TAG_KEY {
            return Err(invalid_tag("The TagKey you have provided is invalid"));
        }
        if v.chars().count() > MAX_TAG_VALUE {
            return Err(invalid_tag("The TagValue you have provided is invalid"));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid_tag("Your TagKey cannot be prefixed with aws:"));
        }
        if tags.insert(k, v).is_some() {
            return Err(invalid_tag(
                "Cannot provide multiple Tags with the same key",
            ));
        }
    }
    Ok(tags)
}

fn tag_set(tagging: Tagging, max: usize) -> ServerResult<BTreeMap<String, String>> {
    let pairs = tagging
        .tag_set
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect();
    check_tags(pairs, max)
}

pub(super) fn to_tag_set(tags: &BTreeMap<String, String>) -> TagSet {
    tags.iter()
        .map(|(k, v)| {
            let mut t = Tag::default();
            t.key = Some(k.clone());
            t.value = Some(v.clone());
            t
        })
        .collect()
}

/// A version's Object Lock state and tag count in GET/HEAD responses.
macro_rules! set_lock_headers {
    ($out:expr, $rec:expr) => {{
        let rec = $rec;
        if let Some(r) = rec.retention {
            $out.object_lock_mode = Some(ObjectLockMode::from(r.mode.as_str().to_owned()));
            $out.object_lock_retain_until_date = Some(ts(r.until));
        }
        if rec.legal_hold {
            $out.object_lock_legal_hold_status = Some(ObjectLockLegalHoldStatus::from_static(
                ObjectLockLegalHoldStatus::ON,
            ));
        }
    }};
}
pub(super) use set_lock_headers;

// ---- bucket configuration ----

pub(super) async fn put_object_lock_configuration(
    h: &S3Handlers,
    req: S3Request<PutObjectLockConfigurationInput>,
) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
    let input = req.input;
    let malformed = || {
        ServerError::s3(
            S3ErrorCode::MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema",
        )
    };
    let config = input.object_lock_configuration.ok_or_else(malformed)?;
    if config.object_lock_enabled.as_ref().map(|e| e.as_str()) != Some(ObjectLockEnabled::ENABLED) {
        return Err(malformed().into());
    }
    let versioning = s3(h
        .meta
        .bucket_config(&input.bucket, BucketConfig::Versioning)
        .await)?;
    if s3(Versioning::from_document(versioning.as_deref()))? != Versioning::Enabled {
        return Err(ServerError::s3(
            S3ErrorCode::InvalidBucketState,
            "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration",
        )
        .into());
    }
    let mut stored = LockConfig::default();
    if let Some(d) = config.rule.and_then(|r| r.default_retention) {
        let mode = d.mode.ok_or_else(malformed)?;
        stored.mode = Some(s3(mode_of(mode.as_str()))?);
        match (d.days, d.years) {
            (Some(n), None) | (None, Some(n)) if n > 0 => {
                stored.days = d.days;
                stored.years = d.years;
            }
            (Some(_), Some(_)) | (None, None) => return Err(malformed().into()),
            _ => {
                return Err(ServerError::invalid_argument(
                    "Default retention period must be a positive integer value",
                )
                .into())
            }
        }
    }
    s3(set_config_json(&*h.meta, &input.bucket, BucketConfig::ObjectLock, &stored).await)?;
    Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
}

pub(super) async fn get_object_lock_configuration(
    h: &S3Handlers,
    req: S3Request<GetObjectLockConfigurationInput>,
) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
    let Some(stored) = s3(h.lock_config(&req.input.bucket).await)? else {
        return Err(ServerError::s3(
            S3ErrorCode::ObjectLockConfigurationNotFoundError,
            "Object Lock configuration does not exist for this bucket",
        )
        .into());
    };
    let mut config = ObjectLockConfiguration::default();
    config.object_lock_enabled = Some(ObjectLockEnabled::from_static(ObjectLockEnabled::ENABLED));
    if let Some(mode) = stored.mode {
        let mut d = DefaultRetention::default();
        d.mode = Some(ObjectLockRetentionMode::from(mode.as_str().to_owned()));
        d.days = stored.days;
        d.years = stored.years;
        let mut rule = ObjectLockRule::default();
        rule.default_retention = Some(d);
        config.rule = Some(rule);
    }
    let mut out = GetObjectLockConfigurationOutput::default();
    out.object_lock_configuration = Some(config);
    Ok(S3Response::new(out))
}

/// CreateBucket with `x-amz-bucket-object-lock-enabled: true`: versioning on and lock
/// enabled without a default retention.
pub(super) async fn enable_lock_at_creation(h: &S3Handlers, bucket: &str) -> ServerResult<()> {
    h.meta
        .set_bucket_config(bucket, BucketConfig::Versioning, Some("Enabled"))
        .await?;
    h.meta
        .set_bucket_config(bucket, BucketConfig::ObjectLock, Some("{}"))
        .await?;
    Ok(())
}

// ---- retention and legal hold ----

pub(super) async fn put_object_retention(
    h: &S3Handlers,
    req: S3Request<PutObjectRetentionInput>,
) -> S3Result<S3Response<PutObjectRetentionOutput>> {
    let caller = principal(&req.extensions)?;
    let input = req.input;
    s3(check_key(&input.key))?;
    if s3(h.lock_config(&input.bucket).await)?.is_none() {
        return Err(missing_lock_config().into());
    }
    let retention = match input.retention {
        Some(ObjectLockRetention {
            mode: Some(m),
            retain_until_date: Some(u),
        }) => {
            let until = ms_of(&u);
            if until <= now_ms() {
                return Err(ServerError::invalid_argument(
                    "The retain until date must be in the future!",
                )
                .into());
            }
            Some(Retention {
                mode: s3(mode_of(m.as_str()))?,
                until,
            })
        }
        // An empty <Retention/> removes it (GOVERNANCE with the bypass only).
        Some(ObjectLockRetention {
            mode: None,
            retain_until_date: None,
        })
        | None => None,
        Some(_) => {
            return Err(ServerError::s3(
                S3ErrorCode::MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema",
            )
            .into())
        }
    };
    let bypass = h.bypass_governance(
        &caller,
        input.bypass_governance_retention,
        &input.bucket,
        &input.key,
    );
    s3(h.meta
        .update_object(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            &ObjectUpdate::Retention {
                retention,
                bypass_governance: bypass,
                now: now_ms(),
            },
        )
        .await)?;
    Ok(S3Response::new(PutObjectRetentionOutput::default()))
}

pub(super) async fn get_object_retention(
    h: &S3Handlers,
    req: S3Request<GetObjectRetentionInput>,
) -> S3Result<S3Response<GetObjectRetentionOutput>> {
    let input = req.input;
    if s3(h.lock_config(&input.bucket).await)?.is_none() {
        return Err(missing_lock_config().into());
    }
    let rec = s3(h
        .object_at(&input.bucket, &input.key, input.version_id.as_deref())
        .await)?;
    let Some(r) = rec.retention else {
        return Err(ServerError::s3(
            S3ErrorCode::NoSuchObjectLockConfiguration,
            "The specified object does not have a ObjectLock configuration",
        )
        .into());
    };
    let mut retention = ObjectLockRetention::default();
    retention.mode = Some(ObjectLockRetentionMode::from(r.mode.as_str().to_owned()));
    retention.retain_until_date = Some(ts(r.until));
    let mut out = GetObjectRetentionOutput::default();
    out.retention = Some(retention);
    Ok(S3Response::new(out))
}

pub(super) async fn put_object_legal_hold(
    h: &S3Handlers,
    req: S3Request<PutObjectLegalHoldInput>,
) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
    let input = req.input;
    s3(check_key(&input.key))?;
    if s3(h.lock_config(&input.bucket).await)?.is_none() {
        return Err(missing_lock_config().into());
    }
    let on = match input
        .legal_hold
        .and_then(|l| l.status)
        .as_ref()
        .map(|s| s.as_str())
    {
        Some(ObjectLockLegalHoldStatus::ON) => true,
        Some(ObjectLockLegalHoldStatus::OFF) => false,
        _ => {
            return Err(ServerError::s3(
                S3ErrorCode::MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema",
            )
            .into())
        }
    };
    s3(h.meta
        .update_object(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            &ObjectUpdate::LegalHold(on),
        )
        .await)?;
    Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
}

pub(super) async fn get_object_legal_hold(
    h: &S3Handlers,
    req: S3Request<GetObjectLegalHoldInput>,
) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
    let input = req.input;
    if s3(h.lock_config(&input.bucket).await)?.is_none() {
        return Err(missing_lock_config().into());
    }
    let rec = s3(h
        .object_at(&input.bucket, &input.key, input.version_id.as_deref())
        .await)?;
    let mut hold = ObjectLockLegalHold::default();
    hold.status = Some(ObjectLockLegalHoldStatus::from(
        if rec.legal_hold { "ON" } else { "OFF" }.to_owned(),
    ));
    let mut out = GetObjectLegalHoldOutput::default();
    out.legal_hold = Some(hold);
    Ok(S3Response::new(out))
}

// ---- object tags ----

pub(super) async fn put_object_tagging(
    h: &S3Handlers,
    req: S3Request<PutObjectTaggingInput>,
) -> S3Result<S3Response<PutObjectTaggingOutput>> {
    let input = req.input;
    let tags = s3(tag_set(input.tagging, MAX_OBJECT_TAGS))?;
    let mut out = PutObjectTaggingOutput::default();
    out.version_id = set_tags(
        h,
        &input.bucket,
        &input.key,
        input.version_id.as_deref(),
        tags,
    )
    .await?;
    Ok(S3Response::new(out))
}

/// Replaces a version's tags (PutObjectTagging, DeleteObjectTagging); returns the version id
/// to report. No such version: NoSuchKey, or NoSuchVersion when one was named.
async fn set_tags(
    h: &S3Handlers,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    tags: BTreeMap<String, String>,
) -> S3Result<Option<String>> {
    s3(check_key(key))?;
    let rec = s3(h
        .meta
        .update_object(bucket, key, version_id, &ObjectUpdate::Tags(tags))
        .await
        .map_err(|e| match (e, version_id) {
            (MetaError::NoSuchKey, Some(_)) => ServerError::s3(
                S3ErrorCode::NoSuchVersion,
                "The specified version does not exist.",
            ),
            (e, _) => e.into(),
        }))?;
    Ok(version_out(&rec, version_id.is_some()))
}

pub(super) async fn get_object_tagging(
    h: &S3Handlers,
    req: S3Request<GetObjectTaggingInput>,
) -> S3Result<S3Response<GetObjectTaggingOutput>> {
    let input = req.input;
    s3(check_key(&input.key))?;
    let rec = s3(h
        .object_at(&input.bucket, &input.key, input.version_id.as_deref())
        .await)?;
    let mut out = GetObjectTaggingOutput::default();
    out.tag_set = to_tag_set(&rec.tags);
    out.version_id = version_out(&rec, input.version_id.is_some());
    Ok(S3Response::new(out))
}

pub(super) async fn delete_object_tagging(
    h: &S3Handlers,
    req: S3Request<DeleteObjectTaggingInput>,
) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
    let input = req.input;
    let mut out = DeleteObjectTaggingOutput::default();
    out.version_id = set_tags(
        h,
        &input.bucket,
        &input.key,
        input.version_id.as_deref(),
        BTreeMap::new(),
    )
    .await?;
    Ok(S3Response::new(out))
}

// ---- bucket tags ----

pub(super) async fn put_bucket_tagging(
    h: &S3Handlers,
    req: S3Request<PutBucketTaggingInput>,
) -> S3Result<S3Response<PutBucketTaggingOutput>> {
    let input = req.input;
    let tags = s3(tag_set(input.tagging, MAX_BUCKET_TAGS))?;
    s3(set_config_json(&*h.meta, &input.bucket, BucketConfig::Tagging, &tags).await)?;
    Ok(S3Response::new(PutBucketTaggingOutput::default()))
}

pub(super) async fn get_bucket_tagging(
    h: &S3Handlers,
    req: S3Request<GetBucketTaggingInput>,
) -> S3Result<S3Response<GetBucketTaggingOutput>> {
    let tags: Option<BTreeMap<String, String>> =
        s3(config_json(&*h.meta, &req.input.bucket, BucketConfig::Tagging).await)?;
    let Some(tags) = tags else {
        return Err(ServerError::s3(S3ErrorCode::NoSuchTagSet, "The TagSet does not exist").into());
    };
    let mut out = GetBucketTaggingOutput::default();
    out.tag_set = to_tag_set(&tags);
    Ok(S3Response::new(out))
}

pub(super) async fn delete_bucket_tagging(
    h: &S3Handlers,
    req: S3Request<DeleteBucketTaggingInput>,
) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
    s3(h.meta
        .set_bucket_config(&req.input.bucket, BucketConfig::Tagging, None)
        .await)?;
    Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
}

// ---- KMS key deletion ----

/// The KMS's [`coffer_kms::DeletionGuard`]: a key that encrypts object versions still under
/// Object Lock (retention not yet over, or a legal hold) is not deleted, so crypto-shredding
/// cannot defeat WORM. Scans the versions of every bucket with Object Lock enabled (only
/// those can hold locked versions); deletion is rare, the scan is bounded by them.
pub struct LockedKeysGuard {
    pub meta: Arc<dyn MetaStore>,
}

#[async_trait::async_trait]
impl coffer_kms::DeletionGuard for LockedKeysGuard {
    async fn deletion_refusal(&self, key_id: &str) -> Result<Option<String>, String> {
        let now = now_ms();
        let suffix = format!(":key/{key_id}");
        let (mut count, mut buckets) = (0u64, Vec::new());
        for b in self.meta.list_buckets().await.map_err(|e| e.to_string())? {
            let lock = self
                .meta
                .bucket_config(&b.name, BucketConfig::ObjectLock)
                .await
                .map_err(|e| e.to_string())?;
            if lock.is_none() {
                continue;
            }
            let (mut key, mut version, mut here) = (String::new(), String::new(), 0u64);
            loop {
                let page = self
                    .meta
                    .list_versions(&b.name, "", &key, &version, 1000)
                    .await
                    .map_err(|e| e.to_string())?;
                for e in &page {
                    let r = &e.record;
                    let locked = r.legal_hold || r.retention.is_some_and(|t| t.until > now);
                    let under_key = matches!(&r.sse, SseRecord::Kms { key_arn, .. }
                        if key_arn.ends_with(&suffix) || key_arn == key_id);
                    if locked && under_key {
                        here += 1;
                    }
                }
                match page.last() {
                    Some(last) if page.len() == 1000 => {
                        key = last.key.clone();
                        version = last.record.s3_version_id().to_owned();
                    }
                    _ => break,
                }
            }
            if here > 0 {
                count += here;
                buckets.push(b.name);
            }
        }
        Ok((count > 0).then(|| {
            format!(
                "key {key_id} encrypts {count} object version(s) under Object Lock (retention or legal hold) in bucket(s) {}; deleting it would destroy data that must be kept. Delete those versions after their retention ends, or release their legal holds, first.",
                buckets.join(", ")
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagging_headers_follow_s3_rules() {
        let tags = parse_tagging_header("team=blue&cost%20centre=a%26b").unwrap();
        assert_eq!(tags["team"], "blue");
        assert_eq!(tags["cost centre"], "a&b");
        for bad in [
            "a=1&a=2",
            "aws:x=1",
            "=v",
            &format!("{}=v", "k".repeat(129)),
            &format!("k={}", "v".repeat(257)),
        ] {
            assert!(
                matches!(
                    parse_tagging_header(bad),
                    Err(ServerError::S3(S3ErrorCode::InvalidTag, _))
                ),
                "{bad}"
            );
        }
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        assert!(parse_tagging_header(&eleven.join("&")).is_err());
        assert_eq!(parse_tagging_header("").unwrap().len(), 0);
    }

    #[test]
    fn default_retention_counts_days_or_years() {
        let c = LockConfig {
            mode: Some(RetentionMode::Compliance),
            days: Some(2),
            years: None,
        };
        assert_eq!(
            c.default_retention(1_000),
            Some(Retention {
                mode: RetentionMode::Compliance,
                until: 1_000 + 2 * DAY_MS
            })
        );
        let y = LockConfig {
            years: Some(1),
            days: None,
            ..c.clone()
        };
        assert_eq!(y.default_retention(0).map(|r| r.until), Some(365 * DAY_MS));
        assert_eq!(LockConfig::default().default_retention(0), None);
    }
}
