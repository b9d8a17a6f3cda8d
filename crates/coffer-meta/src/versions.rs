//! S3's versioning rules over one key's history, written once for every store.
//!
//! A store keeps, per key, the *current* object (the latest version when it is not a
//! delete marker) and the *older* entries (earlier versions, and delete markers — a marker
//! that is the latest version is the newest older entry while there is no current object),
//! each older entry under a sequence number that grows with age order (newest = highest).
//! The invariants every function here keeps:
//! 1. the current object, when there is one, is newer than every older entry;
//! 2. when there is none, the newest older entry (if any) is a delete marker;
//! 3. at most one entry of the history has the S3 version id `null`.
//!
//! A store implements [`History`] over its transaction; the functions below are the whole
//! of what PUT, DELETE and updates do to a history.

use crate::error::{MetaError, MetaResult};
use crate::meta::{DeleteRequest, Deleted, ObjectUpdate, Precondition, Versioning, Written};
use crate::record::{ObjectRecord, RetentionMode};

/// One key's history inside a store's transaction.
pub(crate) trait History {
    fn versioning(&mut self) -> MetaResult<Versioning>;
    fn current(&mut self) -> MetaResult<Option<ObjectRecord>>;
    fn set_current(&mut self, record: Option<&ObjectRecord>) -> MetaResult<()>;
    /// The newest older entry and its sequence number.
    fn newest_older(&mut self) -> MetaResult<Option<(i64, ObjectRecord)>>;
    /// The older entry with this S3 version id.
    fn find_older(&mut self, s3_version_id: &str) -> MetaResult<Option<(i64, ObjectRecord)>>;
    /// Adds `record` as the newest older entry.
    fn push_older(&mut self, record: &ObjectRecord) -> MetaResult<()>;
    fn replace_older(&mut self, seq: i64, record: &ObjectRecord) -> MetaResult<()>;
    fn remove_older(&mut self, seq: i64) -> MetaResult<()>;
}

/// Where a version lives in the history.
enum Place {
    Current,
    Older(i64),
}

fn find(
    h: &mut dyn History,
    version_id: Option<&str>,
) -> MetaResult<Option<(Place, ObjectRecord)>> {
    let current = h.current()?;
    match version_id {
        None => match current {
            Some(c) => Ok(Some((Place::Current, c))),
            None => Ok(h.newest_older()?.map(|(seq, r)| (Place::Older(seq), r))),
        },
        Some(id) => match current {
            Some(c) if c.s3_version_id() == id => Ok(Some((Place::Current, c))),
            _ => Ok(h.find_older(id)?.map(|(seq, r)| (Place::Older(seq), r))),
        },
    }
}

/// A version by S3 version id, or the latest (possibly a delete marker).
pub(crate) fn get(
    h: &mut dyn History,
    version_id: Option<&str>,
) -> MetaResult<Option<ObjectRecord>> {
    Ok(find(h, version_id)?.map(|(_, r)| r))
}

/// Removes the `null` entry among the older ones, if any; returns it.
fn take_null_older(h: &mut dyn History, now: i64) -> MetaResult<Option<ObjectRecord>> {
    match h.find_older("null")? {
        Some((seq, r)) => {
            if let Some(why) = r.lock_refusal(now, false) {
                return Err(MetaError::ObjectLocked(why.into()));
            }
            h.remove_older(seq)?;
            Ok(Some(r))
        }
        None => Ok(None),
    }
}

/// Moves the current object aside before something newer arrives: kept as an older
/// version if versioned or `keep_null` (versioning enabled), else (the `null` version)
/// returned to be replaced.
fn retire_current(
    h: &mut dyn History,
    keep_null: bool,
    now: i64,
) -> MetaResult<Option<ObjectRecord>> {
    let Some(current) = h.current()? else {
        return Ok(None);
    };
    if current.versioned || keep_null {
        h.set_current(None)?;
        h.push_older(&current)?;
        Ok(None)
    } else {
        if let Some(why) = current.lock_refusal(now, false) {
            return Err(MetaError::ObjectLocked(why.into()));
        }
        h.set_current(None)?;
        Ok(Some(current))
    }
}

/// PutObject / CompleteMultipartUpload of `record`.
pub(crate) fn put(
    h: &mut dyn History,
    record: &ObjectRecord,
    condition: &Precondition,
) -> MetaResult<Written> {
    let versioning = h.versioning()?;
    condition.check(h.current()?.as_ref())?;
    let mut record = record.clone();
    record.versioned = versioning == Versioning::Enabled;
    record.delete_marker = false;
    let mut replaced = Vec::new();
    match versioning {
        Versioning::Enabled => {
            retire_current(h, true, record.last_modified)?;
        }
        Versioning::Unversioned | Versioning::Suspended => {
            replaced.extend(retire_current(h, false, record.last_modified)?);
            replaced.extend(take_null_older(h, record.last_modified)?);
        }
    }
    h.set_current(Some(&record))?;
    let version_id = match versioning {
        Versioning::Unversioned => None,
        _ => Some(record.s3_version_id().to_owned()),
    };
    Ok(Written {
        replaced,
        version_id,
    })
}

/// After the current object or the newest older entry was removed: the newest remaining
/// entry becomes current if it is an object (invariant 2).
fn promote(h: &mut dyn History) -> MetaResult<()> {
    if h.current()?.is_some() {
        return Ok(());
    }
    if let Some((seq, r)) = h.newest_older()? {
        if !r.delete_marker {
            h.remove_older(seq)?;
            h.set_current(Some(&r))?;
        }
    }
    Ok(())
}

/// DeleteObject.
pub(crate) fn delete(h: &mut dyn History, req: &DeleteRequest<'_>) -> MetaResult<Deleted> {
    if let Some(id) = req.version_id {
        let Some((place, record)) = find(h, Some(id))? else {
            return Ok(Deleted {
                version_id: Some(id.to_owned()),
                ..Deleted::default()
            });
        };
        if let Some(why) = record.lock_refusal(req.now, req.bypass_governance) {
            return Err(MetaError::ObjectLocked(why.into()));
        }
        match place {
            Place::Current => h.set_current(None)?,
            Place::Older(seq) => h.remove_older(seq)?,
        }
        promote(h)?;
        return Ok(Deleted {
            delete_marker: record.delete_marker,
            version_id: Some(id.to_owned()),
            removed: vec![record],
        });
    }
    let versioning = h.versioning()?;
    if versioning == Versioning::Unversioned {
        let removed = h.current()?;
        if let Some(r) = &removed {
            if let Some(why) = r.lock_refusal(req.now, req.bypass_governance) {
                return Err(MetaError::ObjectLocked(why.into()));
            }
            h.set_current(None)?;
        }
        return Ok(Deleted {
            removed: removed.into_iter().collect(),
            ..Deleted::default()
        });
    }
    let mut removed = Vec::new();
    let enabled = versioning == Versioning::Enabled;
    removed.extend(retire_current(h, enabled, req.now)?);
    if versioning == Versioning::Suspended {
        removed.extend(take_null_older(h, req.now)?);
    }
    let mut marker = ObjectRecord::new_delete_marker(req.marker_version, req.now);
    marker.versioned = enabled;
    h.push_older(&marker)?;
    Ok(Deleted {
        removed,
        delete_marker: true,
        version_id: Some(marker.s3_version_id().to_owned()),
    })
}

/// PutObjectTagging / PutObjectRetention / PutObjectLegalHold (and their deletes).
pub(crate) fn update(
    h: &mut dyn History,
    version_id: Option<&str>,
    update: &ObjectUpdate,
) -> MetaResult<ObjectRecord> {
    let (place, mut record) = match find(h, version_id)? {
        Some(found) => found,
        None => return Err(MetaError::NoSuchKey),
    };
    if record.delete_marker {
        return Err(MetaError::DeleteMarker);
    }
    match update {
        ObjectUpdate::Tags(tags) => record.tags = tags.clone(),
        ObjectUpdate::LegalHold(on) => record.legal_hold = *on,
        ObjectUpdate::Retention {
            retention,
            bypass_governance,
            now,
        } => {
            if let Some(old) = record.retention.filter(|r| r.until > *now) {
                let weaker = match retention {
                    None => true,
                    Some(new) => {
                        new.until < old.until
                            || (old.mode == RetentionMode::Compliance
                                && new.mode == RetentionMode::Governance)
                    }
                };
                if weaker {
                    match old.mode {
                        RetentionMode::Compliance => {
                            return Err(MetaError::ObjectLocked(
                                "COMPLIANCE retention can only be extended".into(),
                            ))
                        }
                        RetentionMode::Governance if !bypass_governance => {
                            return Err(MetaError::ObjectLocked(
                                "shortening or removing GOVERNANCE retention needs the bypass"
                                    .into(),
                            ))
                        }
                        RetentionMode::Governance => {}
                    }
                }
            }
            record.retention = *retention;
        }
    }
    match place {
        Place::Current => h.set_current(Some(&record))?,
        Place::Older(seq) => h.replace_older(seq, &record)?,
    }
    Ok(record)
}

/// One key's entries for a version listing: current first, then older newest first.
pub(crate) fn key_entries(
    key: &str,
    current: Option<ObjectRecord>,
    older_newest_first: Vec<ObjectRecord>,
) -> Vec<crate::meta::VersionEntry> {
    current
        .into_iter()
        .chain(older_newest_first)
        .enumerate()
        .map(|(i, record)| crate::meta::VersionEntry {
            key: key.to_owned(),
            record,
            is_latest: i == 0,
        })
        .collect()
}

/// Appends to `page` the entries of one key that come after the listing's start, until
/// `limit`. `skip_through` is the version marker when `key` is the key marker.
pub(crate) fn take_after(
    page: &mut Vec<crate::meta::VersionEntry>,
    entries: Vec<crate::meta::VersionEntry>,
    skip_through: Option<&str>,
    limit: usize,
) {
    let start = match skip_through {
        None => 0,
        Some(marker) => entries
            .iter()
            .position(|e| e.record.s3_version_id() == marker)
            .map_or(entries.len(), |i| i + 1),
    };
    for e in entries.into_iter().skip(start) {
        if page.len() >= limit {
            return;
        }
        page.push(e);
    }
}
