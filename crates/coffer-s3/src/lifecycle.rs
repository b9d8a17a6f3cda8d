//! Bucket lifecycle: Put/Get/DeleteBucketLifecycleConfiguration and the background pass that
//! enforces it (expiration by days or date, expired delete markers, noncurrent versions,
//! unfinished multipart uploads). Object Lock wins over lifecycle: a locked version is not
//! removed (the pass skips it and tries again on a later pass).

use serde::{Deserialize, Serialize};

use super::*;

const MAX_RULES: usize = 1000;

/// One lifecycle rule as stored ([`BucketConfig::Lifecycle`], a JSON list of these).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<String>,
    pub(super) enabled: bool,
    /// Filter: key prefix, tags (all must match), size bounds (exclusive).
    #[serde(default)]
    pub(super) prefix: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) size_greater_than: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) size_less_than: Option<i64>,
    /// Expiration of current versions: days after creation, or a date (Unix ms, midnight UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) expiration_days: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) expiration_date: Option<i64>,
    #[serde(default)]
    pub(super) expired_object_delete_marker: bool,
    /// Expiration of noncurrent versions: days after they became noncurrent, keeping the
    /// `newer_noncurrent_versions` newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) noncurrent_days: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) newer_noncurrent_versions: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) abort_incomplete_days: Option<i32>,
}

/// S3's day arithmetic: `days` after `t`, rounded up to the next midnight UTC.
fn after_days(t: i64, days: i32) -> i64 {
    let raw = t.saturating_add(i64::from(days).saturating_mul(DAY_MS));
    let rem = raw.rem_euclid(DAY_MS);
    if rem == 0 {
        raw
    } else {
        raw - rem + DAY_MS
    }
}

impl Rule {
    fn matches(&self, key: &str, rec: &ObjectRecord) -> bool {
        self.enabled
            && key.starts_with(&self.prefix)
            && self.tags.iter().all(|(k, v)| rec.tags.get(k) == Some(v))
            && self.size_greater_than.is_none_or(|n| (rec.size as i64) > n)
            && self.size_less_than.is_none_or(|n| (rec.size as i64) < n)
    }

    /// Whether a current version made at `created` has expired at `now`.
    fn current_expired(&self, created: i64, now: i64) -> bool {
        self.expiration_days
            .is_some_and(|d| after_days(created, d) <= now)
            || self.expiration_date.is_some_and(|d| d <= now)
    }
}

/// What the pass does to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// Expire the current version (a delete without version id: a marker when versioned).
    ExpireCurrent,
    /// Remove this version or delete marker for good.
    RemoveVersion(String),
}

/// The actions the rules call for on one key, whose entries (newest first, as listed) are
/// `entries`, at `now`.
pub(super) fn key_actions(
    rules: &[Rule],
    key: &str,
    entries: &[coffer_meta::VersionEntry],
    now: i64,
) -> Vec<Action> {
    let mut out = Vec::new();
    let Some(latest) = entries.first() else {
        return out;
    };
    let rule_for = |rec: &ObjectRecord, want: &dyn Fn(&Rule) -> bool| {
        rules.iter().any(|r| r.matches(key, rec) && want(r))
    };
    if !latest.record.delete_marker
        && rule_for(&latest.record, &|r| {
            r.current_expired(latest.record.last_modified, now)
        })
    {
        out.push(Action::ExpireCurrent);
    }
    // A delete marker that is the only thing left of a key.
    if latest.record.delete_marker
        && entries.len() == 1
        && rules.iter().any(|r| {
            r.enabled
                && key.starts_with(&r.prefix)
                && r.tags.is_empty()
                && r.expired_object_delete_marker
        })
    {
        out.push(Action::RemoveVersion(
            latest.record.s3_version_id().to_owned(),
        ));
    }
    // Noncurrent versions: each became noncurrent when the next newer entry was made.
    for (i, e) in entries.iter().enumerate().skip(1) {
        if e.record.delete_marker {
            continue;
        }
        let since = entries[i - 1].record.last_modified;
        let rank = i - 1; // 0 = the newest noncurrent version
        let expired = rules.iter().any(|r| {
            r.matches(key, &e.record)
                && r.noncurrent_days
                    .is_some_and(|d| after_days(since, d) <= now)
                && r.newer_noncurrent_versions
                    .is_none_or(|keep| rank >= keep.max(0) as usize)
        });
        if expired {
            out.push(Action::RemoveVersion(e.record.s3_version_id().to_owned()));
        }
    }
    out
}

fn malformed() -> ServerError {
    ServerError::s3(
        S3ErrorCode::MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema",
    )
}

fn positive(v: Option<i32>, what: &str) -> ServerResult<Option<i32>> {
    match v {
        Some(n) if n <= 0 => Err(ServerError::invalid_argument(format!(
            "'{what}' for a lifecycle rule must be a positive integer"
        ))),
        v => Ok(v),
    }
}

/// An S3 lifecycle configuration, checked as S3 checks it, in stored form.
fn to_rules(config: BucketLifecycleConfiguration) -> ServerResult<Vec<Rule>> {
    if config.rules.is_empty() || config.rules.len() > MAX_RULES {
        return Err(malformed());
    }
    let mut ids = std::collections::HashSet::new();
    let mut out = Vec::new();
    for r in config.rules {
        if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
            || r.noncurrent_version_transitions
                .as_ref()
                .is_some_and(|t| !t.is_empty())
        {
            return Err(ServerError::s3(
                S3ErrorCode::NotImplemented,
                "Lifecycle transitions are not supported: Coffer has one storage class.",
            ));
        }
        let mut rule = Rule {
            enabled: r.status.as_str() == ExpirationStatus::ENABLED,
            ..Rule::default()
        };
        if let Some(id) = r.id.filter(|i| !i.is_empty()) {
            if id.len() > 255 {
                return Err(ServerError::invalid_argument(
                    "ID length should not exceed allowed limit of 255",
                ));
            }
            if !ids.insert(id.clone()) {
                return Err(ServerError::invalid_argument(
                    "Rule ID must be unique. Found same ID for more than one rule",
                ));
            }
            rule.id = Some(id);
        }
        match (r.prefix, r.filter) {
            (Some(_), Some(_)) => return Err(malformed()),
            (Some(p), None) => rule.prefix = p,
            (None, Some(f)) => {
                rule.size_greater_than = f.object_size_greater_than;
                rule.size_less_than = f.object_size_less_than;
                rule.prefix = f.prefix.unwrap_or_default();
                if let Some(t) = f.tag {
                    rule.tags
                        .insert(t.key.unwrap_or_default(), t.value.unwrap_or_default());
                }
                if let Some(and) = f.and {
                    rule.prefix = and.prefix.unwrap_or_default();
                    rule.size_greater_than = and.object_size_greater_than;
                    rule.size_less_than = and.object_size_less_than;
                    for t in and.tags.unwrap_or_default() {
                        rule.tags
                            .insert(t.key.unwrap_or_default(), t.value.unwrap_or_default());
                    }
                }
            }
            (None, None) => {}
        }
        if let Some(e) = r.expiration {
            rule.expiration_days = positive(e.days, "Days")?;
            if let Some(d) = e.date {
                let ms = ms_of(&d);
                if ms.rem_euclid(DAY_MS) != 0 {
                    return Err(ServerError::invalid_argument(
                        "'Date' must be at midnight GMT",
                    ));
                }
                rule.expiration_date = Some(ms);
            }
            rule.expired_object_delete_marker = e.expired_object_delete_marker.unwrap_or(false);
            let set = [
                rule.expiration_days.is_some(),
                rule.expiration_date.is_some(),
                e.expired_object_delete_marker.is_some(),
            ];
            if set.iter().filter(|s| **s).count() != 1 {
                return Err(malformed());
            }
            if rule.expired_object_delete_marker && !rule.tags.is_empty() {
                return Err(ServerError::invalid_argument(
                    "ExpiredObjectDeleteMarker cannot be specified with tags.",
                ));
            }
        }
        if let Some(n) = r.noncurrent_version_expiration {
            rule.noncurrent_days = positive(n.noncurrent_days, "NoncurrentDays")?;
            rule.newer_noncurrent_versions =
                positive(n.newer_noncurrent_versions, "NewerNoncurrentVersions")?;
            if rule.noncurrent_days.is_none() {
                return Err(malformed());
            }
        }
        if let Some(a) = r.abort_incomplete_multipart_upload {
            if !rule.tags.is_empty() {
                return Err(ServerError::invalid_argument(
                    "AbortIncompleteMultipartUpload cannot be specified with tags.",
                ));
            }
            rule.abort_incomplete_days = positive(a.days_after_initiation, "DaysAfterInitiation")?;
        }
        if rule.expiration_days.is_none()
            && rule.expiration_date.is_none()
            && !rule.expired_object_delete_marker
            && rule.noncurrent_days.is_none()
            && rule.abort_incomplete_days.is_none()
        {
            return Err(ServerError::invalid_argument(
                "At least one action needs to be specified in a rule",
            ));
        }
        out.push(rule);
    }
    Ok(out)
}

fn from_rule(r: &Rule) -> LifecycleRule {
    let mut out = LifecycleRule {
        status: ExpirationStatus::from_static(if r.enabled {
            ExpirationStatus::ENABLED
        } else {
            ExpirationStatus::DISABLED
        }),
        abort_incomplete_multipart_upload: None,
        expiration: None,
        filter: None,
        id: None,
        noncurrent_version_expiration: None,
        noncurrent_version_transitions: None,
        prefix: None,
        transitions: None,
    };
    out.id = r.id.clone();
    let mut filter = LifecycleRuleFilter::default();
    let tags = to_tag_set(&r.tags);
    if tags.len() > 1
        || (!tags.is_empty()
            && (!r.prefix.is_empty()
                || r.size_greater_than.is_some()
                || r.size_less_than.is_some()))
    {
        let mut and = LifecycleRuleAndOperator::default();
        and.prefix = Some(r.prefix.clone());
        and.tags = Some(tags);
        and.object_size_greater_than = r.size_greater_than;
        and.object_size_less_than = r.size_less_than;
        filter.and = Some(and);
    } else {
        filter.prefix = Some(r.prefix.clone());
        filter.tag = tags.into_iter().next();
        filter.object_size_greater_than = r.size_greater_than;
        filter.object_size_less_than = r.size_less_than;
    }
    out.filter = Some(filter);
    if r.expiration_days.is_some() || r.expiration_date.is_some() || r.expired_object_delete_marker
    {
        let mut e = LifecycleExpiration::default();
        e.days = r.expiration_days;
        e.date = r.expiration_date.map(ts);
        e.expired_object_delete_marker = r.expired_object_delete_marker.then_some(true);
        out.expiration = Some(e);
    }
    if let Some(d) = r.noncurrent_days {
        let mut n = NoncurrentVersionExpiration::default();
        n.noncurrent_days = Some(d);
        n.newer_noncurrent_versions = r.newer_noncurrent_versions;
        out.noncurrent_version_expiration = Some(n);
    }
    if let Some(d) = r.abort_incomplete_days {
        let mut a = AbortIncompleteMultipartUpload::default();
        a.days_after_initiation = Some(d);
        out.abort_incomplete_multipart_upload = Some(a);
    }
    out
}

impl S3Handlers {
    async fn lifecycle_rules(&self, bucket: &str) -> ServerResult<Option<Vec<Rule>>> {
        config_json(&*self.meta, bucket, BucketConfig::Lifecycle).await
    }

    /// One lifecycle pass over every bucket at `now` (Unix ms): returns how many versions
    /// were expired or removed and uploads aborted. Errors on one bucket are logged and the
    /// pass goes on; a version Object Lock keeps is skipped.
    pub async fn lifecycle_pass(&self, now: i64) -> LifecycleReport {
        let mut report = LifecycleReport::default();
        let buckets = match self.meta.list_buckets().await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("lifecycle: list buckets: {e}");
                report.errors += 1;
                return report;
            }
        };
        for b in buckets {
            if let Err(e) = self.lifecycle_bucket(&b.name, now, &mut report).await {
                tracing::error!(bucket = b.name, "lifecycle: {e}");
                report.errors += 1;
            }
        }
        report
    }

    async fn lifecycle_bucket(
        &self,
        bucket: &str,
        now: i64,
        report: &mut LifecycleReport,
    ) -> ServerResult<()> {
        let Some(rules) = self.lifecycle_rules(bucket).await? else {
            return Ok(());
        };
        // Versions, key by key (a key's entries may straddle two pages: the page is cut
        // at a key boundary and the rest read again).
        let (mut key_marker, mut actions) = (String::new(), Vec::new());
        loop {
            let page = self
                .meta
                .list_versions(bucket, "", &key_marker, "", 1000)
                .await?;
            let full = page.len() == 1000;
            let mut by_key: Vec<(String, Vec<coffer_meta::VersionEntry>)> = Vec::new();
            for e in page {
                match by_key.last_mut() {
                    Some((k, v)) if *k == e.key => v.push(e),
                    _ => by_key.push((e.key.clone(), vec![e])),
                }
            }
            if full && by_key.len() > 1 {
                by_key.pop();
            }
            let Some((last, _)) = by_key.last() else {
                break;
            };
            let last = last.clone();
            for (key, entries) in &by_key {
                for a in key_actions(&rules, key, entries, now) {
                    actions.push((key.clone(), a));
                }
            }
            if !full || last == key_marker {
                break;
            }
            key_marker = last;
        }
        for (key, action) in actions {
            let version = match &action {
                Action::ExpireCurrent => None,
                Action::RemoveVersion(v) => Some(v.as_str()),
            };
            match self.delete_one(bucket, &key, version, false).await {
                Ok(_) => report.expired += 1,
                Err(ServerError::S3(S3ErrorCode::AccessDenied, _)) => report.locked += 1,
                Err(e) => return Err(e),
            }
        }
        // Unfinished uploads.
        let abort: Vec<&Rule> = rules
            .iter()
            .filter(|r| r.enabled && r.abort_incomplete_days.is_some())
            .collect();
        if abort.is_empty() {
            return Ok(());
        }
        let (mut km, mut um) = (String::new(), String::new());
        loop {
            let uploads = self.meta.list_uploads(bucket, "", &km, &um, 1000).await?;
            let n = uploads.len();
            for (id, u) in &uploads {
                let due = abort.iter().any(|r| {
                    u.key.starts_with(&r.prefix)
                        && r.abort_incomplete_days
                            .is_some_and(|d| after_days(u.initiated, d) <= now)
                });
                if due {
                    if let Ok(parts) = self.meta.delete_upload(id).await {
                        self.delete_blobs(parts.into_iter().map(|p| p.segment))
                            .await;
                        report.aborted += 1;
                    }
                }
            }
            match uploads.last() {
                Some((id, u)) if n == 1000 => {
                    km = u.key.clone();
                    um = id.clone();
                }
                _ => break,
            }
        }
        Ok(())
    }
}

/// What one lifecycle pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LifecycleReport {
    /// Current versions expired and versions or markers removed.
    pub expired: u64,
    /// Versions due but kept by Object Lock.
    pub locked: u64,
    /// Multipart uploads aborted.
    pub aborted: u64,
    pub errors: u64,
}

pub(super) async fn put_bucket_lifecycle_configuration(
    h: &S3Handlers,
    req: S3Request<PutBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
    let input = req.input;
    let config = input.lifecycle_configuration.ok_or_else(malformed)?;
    let rules = s3(to_rules(config))?;
    s3(set_config_json(&*h.meta, &input.bucket, BucketConfig::Lifecycle, &rules).await)?;
    Ok(S3Response::new(
        PutBucketLifecycleConfigurationOutput::default(),
    ))
}

pub(super) async fn get_bucket_lifecycle_configuration(
    h: &S3Handlers,
    req: S3Request<GetBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
    let Some(rules) = s3(h.lifecycle_rules(&req.input.bucket).await)? else {
        return Err(ServerError::s3(
            S3ErrorCode::NoSuchLifecycleConfiguration,
            "The lifecycle configuration does not exist",
        )
        .into());
    };
    let mut out = GetBucketLifecycleConfigurationOutput::default();
    out.rules = Some(rules.iter().map(from_rule).collect());
    Ok(S3Response::new(out))
}

pub(super) async fn delete_bucket_lifecycle(
    h: &S3Handlers,
    req: S3Request<DeleteBucketLifecycleInput>,
) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
    s3(h.meta
        .set_bucket_config(&req.input.bucket, BucketConfig::Lifecycle, None)
        .await)?;
    Ok(S3Response::new(DeleteBucketLifecycleOutput::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, vid: &str, at: i64, marker: bool) -> coffer_meta::VersionEntry {
        let mut record = ObjectRecord::new_delete_marker(vid, at);
        record.delete_marker = marker;
        record.versioned = true;
        record.size = 10;
        coffer_meta::VersionEntry {
            key: key.to_owned(),
            record,
            is_latest: false,
        }
    }

    #[test]
    fn days_round_up_to_the_next_midnight_utc() {
        assert_eq!(after_days(0, 1), DAY_MS);
        assert_eq!(after_days(1, 1), 2 * DAY_MS);
        assert_eq!(after_days(DAY_MS - 1, 2), 3 * DAY_MS);
    }

    #[test]
    fn current_versions_expire_after_their_days_or_date() {
        let rule = Rule {
            enabled: true,
            prefix: "logs/".into(),
            expiration_days: Some(2),
            ..Rule::default()
        };
        let made = 10 * DAY_MS + 5;
        let e = [entry("logs/a", "v1", made, false)];
        // Due at made + 2 days rounded up to midnight: day 13.
        assert!(key_actions(std::slice::from_ref(&rule), "logs/a", &e, 13 * DAY_MS - 1).is_empty());
        assert_eq!(
            key_actions(std::slice::from_ref(&rule), "logs/a", &e, 13 * DAY_MS),
            [Action::ExpireCurrent]
        );
        assert!(
            key_actions(std::slice::from_ref(&rule), "other/a", &e, 99 * DAY_MS).is_empty(),
            "the prefix filters"
        );
        let disabled = Rule {
            enabled: false,
            ..rule.clone()
        };
        assert!(key_actions(&[disabled], "logs/a", &e, 99 * DAY_MS).is_empty());
        let dated = Rule {
            enabled: true,
            expiration_date: Some(20 * DAY_MS),
            ..Rule::default()
        };
        assert!(key_actions(std::slice::from_ref(&dated), "k", &e, 20 * DAY_MS - 1).is_empty());
        assert_eq!(
            key_actions(&[dated], "k", &e, 20 * DAY_MS),
            [Action::ExpireCurrent]
        );
        let tagged = Rule {
            tags: BTreeMap::from([("tier".to_owned(), "tmp".to_owned())]),
            ..rule
        };
        assert!(key_actions(std::slice::from_ref(&tagged), "logs/a", &e, 99 * DAY_MS).is_empty());
        let mut t = e.clone();
        t[0].record.tags.insert("tier".into(), "tmp".into());
        assert_eq!(
            key_actions(&[tagged], "logs/a", &t, 99 * DAY_MS),
            [Action::ExpireCurrent]
        );
    }

    #[test]
    fn noncurrent_versions_count_from_when_they_were_superseded() {
        let rule = Rule {
            enabled: true,
            noncurrent_days: Some(1),
            newer_noncurrent_versions: Some(1),
            ..Rule::default()
        };
        // Newest first: current v3 (day 5), v2 superseded at day 5, v1 superseded at day 3.
        let e = [
            entry("k", "v3", 5 * DAY_MS, false),
            entry("k", "v2", 3 * DAY_MS, false),
            entry("k", "v1", DAY_MS, false),
        ];
        assert!(key_actions(std::slice::from_ref(&rule), "k", &e, 4 * DAY_MS - 1).is_empty());
        // v1 (superseded day 3) is due at day 4, but v2 is the one newest noncurrent kept.
        assert_eq!(
            key_actions(std::slice::from_ref(&rule), "k", &e, 4 * DAY_MS),
            [Action::RemoveVersion("v1".into())]
        );
        let keep_none = Rule {
            newer_noncurrent_versions: None,
            ..rule
        };
        assert_eq!(
            key_actions(&[keep_none], "k", &e, 6 * DAY_MS),
            [
                Action::RemoveVersion("v2".into()),
                Action::RemoveVersion("v1".into())
            ]
        );
    }

    #[test]
    fn a_lone_delete_marker_is_removed_when_asked() {
        let rule = Rule {
            enabled: true,
            expired_object_delete_marker: true,
            ..Rule::default()
        };
        let lone = [entry("k", "m", DAY_MS, true)];
        assert_eq!(
            key_actions(std::slice::from_ref(&rule), "k", &lone, DAY_MS),
            [Action::RemoveVersion("m".into())]
        );
        let with_versions = [entry("k", "m", DAY_MS, true), entry("k", "v", 0, false)];
        assert!(key_actions(&[rule], "k", &with_versions, DAY_MS).is_empty());
    }
}
