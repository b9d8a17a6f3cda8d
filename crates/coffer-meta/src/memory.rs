//! [`MemoryStore`]: both traits over maps behind one mutex — for tests, and the reference
//! model of the contracts (it passes the same conformance suites as the SQLCipher store).
//!
//! Records are kept in their stored encoding ([`crate::record::encode`]), so they go
//! through the same serialization, version marker and checks as on disk. Each method takes
//! the lock once and checks everything before changing anything, which makes it atomic.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::error::{MetaError, MetaResult};
use crate::identity::{AccessKey, IdentityRecord, IdentitySnapshot, IdentityStore};
use crate::meta::{
    BucketConfig, DeleteRequest, Deleted, MetaStore, ObjectUpdate, Precondition, VersionEntry,
    Versioning, Written,
};
use crate::record::{
    decode, encode, BucketEncryption, BucketInfo, ObjectRecord, PartRecord, UploadRecord,
};
use crate::versions::{self, History};

#[derive(Default)]
struct Bucket {
    created: i64,
    /// Encoded [`BucketEncryption`].
    encryption: Option<String>,
    /// Key → encoded [`ObjectRecord`]: the current objects.
    objects: BTreeMap<String, String>,
    /// Key → sequence number → encoded [`ObjectRecord`]: older versions and delete
    /// markers (crate::versions).
    versions: BTreeMap<String, BTreeMap<i64, String>>,
    /// Sub-resource documents by kind.
    config: BTreeMap<&'static str, String>,
}

/// One key's history in a bucket. Changes are made in place; [`with_history`] restores the
/// key's entries if the operation fails, which keeps every method atomic.
struct MemHistory<'a> {
    bucket: &'a mut Bucket,
    key: &'a str,
}

impl History for MemHistory<'_> {
    fn versioning(&mut self) -> MetaResult<Versioning> {
        Versioning::from_document(
            self.bucket
                .config
                .get(BucketConfig::Versioning.as_str())
                .map(String::as_str),
        )
    }

    fn current(&mut self) -> MetaResult<Option<ObjectRecord>> {
        decode_opt(self.bucket.objects.get(self.key))
    }

    fn set_current(&mut self, record: Option<&ObjectRecord>) -> MetaResult<()> {
        match record {
            Some(r) => {
                self.bucket.objects.insert(self.key.to_owned(), encode(r)?);
            }
            None => {
                self.bucket.objects.remove(self.key);
            }
        }
        Ok(())
    }

    fn newest_older(&mut self) -> MetaResult<Option<(i64, ObjectRecord)>> {
        match self
            .bucket
            .versions
            .get(self.key)
            .and_then(|v| v.last_key_value())
        {
            Some((seq, stored)) => Ok(Some((*seq, decode(stored)?))),
            None => Ok(None),
        }
    }

    fn find_older(&mut self, s3_version_id: &str) -> MetaResult<Option<(i64, ObjectRecord)>> {
        for (seq, stored) in self.bucket.versions.get(self.key).into_iter().flatten() {
            let r: ObjectRecord = decode(stored)?;
            if r.s3_version_id() == s3_version_id {
                return Ok(Some((*seq, r)));
            }
        }
        Ok(None)
    }

    fn push_older(&mut self, record: &ObjectRecord) -> MetaResult<()> {
        let encoded = encode(record)?;
        let older = self.bucket.versions.entry(self.key.to_owned()).or_default();
        let seq = older.last_key_value().map_or(1, |(seq, _)| seq + 1);
        older.insert(seq, encoded);
        Ok(())
    }

    fn replace_older(&mut self, seq: i64, record: &ObjectRecord) -> MetaResult<()> {
        let encoded = encode(record)?;
        if let Some(older) = self.bucket.versions.get_mut(self.key) {
            older.insert(seq, encoded);
        }
        Ok(())
    }

    fn remove_older(&mut self, seq: i64) -> MetaResult<()> {
        if let Some(older) = self.bucket.versions.get_mut(self.key) {
            older.remove(&seq);
            if older.is_empty() {
                self.bucket.versions.remove(self.key);
            }
        }
        Ok(())
    }
}

/// Runs `op` on `key`'s history, restoring the key's entries if it fails.
fn with_history<T>(
    bucket: &mut Bucket,
    key: &str,
    op: impl FnOnce(&mut dyn History) -> MetaResult<T>,
) -> MetaResult<T> {
    let saved = (
        bucket.objects.get(key).cloned(),
        bucket.versions.get(key).cloned(),
    );
    let result = op(&mut MemHistory { bucket, key });
    if result.is_err() {
        match saved.0 {
            Some(o) => bucket.objects.insert(key.to_owned(), o),
            None => bucket.objects.remove(key),
        };
        match saved.1 {
            Some(v) => bucket.versions.insert(key.to_owned(), v),
            None => bucket.versions.remove(key),
        };
    }
    result
}

struct Upload {
    bucket: String,
    key: String,
    /// Encoded [`UploadRecord`].
    record: String,
    /// Part number → encoded [`PartRecord`].
    parts: BTreeMap<u32, String>,
}

#[derive(Default)]
struct State {
    buckets: BTreeMap<String, Bucket>,
    uploads: BTreeMap<String, Upload>,
    bucket_owners: BTreeMap<String, String>,
    bucket_policies: BTreeMap<String, String>,
    identities: BTreeMap<String, IdentityRecord>,
    access_keys: BTreeMap<String, AccessKey>,
    identity_policies: BTreeMap<(String, String), String>,
}

/// An in-memory [`MetaStore`] and [`IdentityStore`] (nothing survives the process).
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every method checks before it mutates, so a panic elsewhere cannot leave a
        // half-made change behind the poisoned lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every stored record in its encoded form (objects, uploads, parts, bucket
    /// encryption), for checks of the stored format.
    pub fn encoded_records(&self) -> Vec<String> {
        let state = self.state();
        let mut out = Vec::new();
        for bucket in state.buckets.values() {
            out.extend(bucket.encryption.iter().cloned());
            out.extend(bucket.objects.values().cloned());
            out.extend(bucket.versions.values().flat_map(|v| v.values().cloned()));
        }
        for upload in state.uploads.values() {
            out.push(upload.record.clone());
            out.extend(upload.parts.values().cloned());
        }
        out
    }
}

fn decode_opt<T: serde::de::DeserializeOwned>(stored: Option<&String>) -> MetaResult<Option<T>> {
    stored.map(|s| decode(s)).transpose()
}

#[async_trait]
impl MetaStore for MemoryStore {
    async fn create_bucket(&self, name: &str, created: i64, owner: &str) -> MetaResult<()> {
        let mut state = self.state();
        if state.buckets.contains_key(name) {
            let owner = state
                .bucket_owners
                .get(name)
                .cloned()
                .unwrap_or_else(|| "root".to_owned());
            return Err(MetaError::BucketAlreadyExists { owner });
        }
        state.buckets.insert(
            name.to_owned(),
            Bucket {
                created,
                ..Bucket::default()
            },
        );
        state
            .bucket_owners
            .insert(name.to_owned(), owner.to_owned());
        Ok(())
    }

    async fn bucket_exists(&self, name: &str) -> MetaResult<bool> {
        Ok(self.state().buckets.contains_key(name))
    }

    async fn list_buckets(&self) -> MetaResult<Vec<BucketInfo>> {
        Ok(self
            .state()
            .buckets
            .iter()
            .map(|(name, b)| BucketInfo {
                name: name.clone(),
                created: b.created,
            })
            .collect())
    }

    async fn delete_bucket(&self, name: &str) -> MetaResult<Vec<PartRecord>> {
        let mut state = self.state();
        let bucket = state.buckets.get(name).ok_or(MetaError::NoSuchBucket)?;
        if !bucket.objects.is_empty() || !bucket.versions.is_empty() {
            return Err(MetaError::BucketNotEmpty);
        }
        // Decode every part before changing anything: a failure leaves all as it was.
        let parts = state
            .uploads
            .values()
            .filter(|u| u.bucket == name)
            .flat_map(|u| u.parts.values())
            .map(|stored| decode(stored))
            .collect::<MetaResult<Vec<PartRecord>>>()?;
        state.uploads.retain(|_, u| u.bucket != name);
        state.buckets.remove(name);
        state.bucket_owners.remove(name);
        state.bucket_policies.remove(name);
        Ok(parts)
    }

    async fn bucket_encryption(&self, name: &str) -> MetaResult<Option<BucketEncryption>> {
        let state = self.state();
        let bucket = state.buckets.get(name).ok_or(MetaError::NoSuchBucket)?;
        decode_opt(bucket.encryption.as_ref())
    }

    async fn set_bucket_encryption(
        &self,
        name: &str,
        encryption: Option<&BucketEncryption>,
    ) -> MetaResult<()> {
        let encoded = encryption.map(encode).transpose()?;
        let mut state = self.state();
        let bucket = state.buckets.get_mut(name).ok_or(MetaError::NoSuchBucket)?;
        bucket.encryption = encoded;
        Ok(())
    }

    async fn object(&self, bucket: &str, key: &str) -> MetaResult<Option<ObjectRecord>> {
        let state = self.state();
        decode_opt(state.buckets.get(bucket).and_then(|b| b.objects.get(key)))
    }

    async fn bucket_config(&self, bucket: &str, kind: BucketConfig) -> MetaResult<Option<String>> {
        let state = self.state();
        let bucket = state.buckets.get(bucket).ok_or(MetaError::NoSuchBucket)?;
        Ok(bucket.config.get(kind.as_str()).cloned())
    }

    async fn set_bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
        document: Option<&str>,
    ) -> MetaResult<()> {
        let mut state = self.state();
        let bucket = state
            .buckets
            .get_mut(bucket)
            .ok_or(MetaError::NoSuchBucket)?;
        match document {
            Some(d) => bucket.config.insert(kind.as_str(), d.to_owned()),
            None => bucket.config.remove(kind.as_str()),
        };
        Ok(())
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        condition: &Precondition,
    ) -> MetaResult<Written> {
        let mut state = self.state();
        let bucket = state
            .buckets
            .get_mut(bucket)
            .ok_or(MetaError::NoSuchBucket)?;
        with_history(bucket, key, |h| versions::put(h, record, condition))
    }

    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        request: &DeleteRequest<'_>,
    ) -> MetaResult<Deleted> {
        let mut state = self.state();
        let Some(bucket) = state.buckets.get_mut(bucket) else {
            return Ok(Deleted::default());
        };
        with_history(bucket, key, |h| versions::delete(h, request))
    }

    async fn object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> MetaResult<Option<ObjectRecord>> {
        let mut state = self.state();
        let Some(bucket) = state.buckets.get_mut(bucket) else {
            return Ok(None);
        };
        with_history(bucket, key, |h| versions::get(h, version_id))
    }

    async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        update: &ObjectUpdate,
    ) -> MetaResult<ObjectRecord> {
        let mut state = self.state();
        let bucket = state
            .buckets
            .get_mut(bucket)
            .ok_or(MetaError::NoSuchBucket)?;
        with_history(bucket, key, |h| versions::update(h, version_id, update))
    }

    async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: &str,
        version_marker: &str,
        limit: usize,
    ) -> MetaResult<Vec<VersionEntry>> {
        let state = self.state();
        let Some(bucket) = state.buckets.get(bucket) else {
            return Ok(Vec::new());
        };
        let keys: std::collections::BTreeSet<&String> = bucket
            .objects
            .keys()
            .chain(bucket.versions.keys())
            .filter(|k| k.starts_with(prefix))
            .filter(|k| {
                if version_marker.is_empty() {
                    k.as_str() > key_marker
                } else {
                    k.as_str() >= key_marker
                }
            })
            .collect();
        let mut page = Vec::new();
        for key in keys {
            if page.len() >= limit {
                break;
            }
            let current = decode_opt(bucket.objects.get(key))?;
            let older = bucket
                .versions
                .get(key)
                .into_iter()
                .flat_map(|v| v.values().rev())
                .map(|stored| decode(stored))
                .collect::<MetaResult<Vec<ObjectRecord>>>()?;
            let skip = (key == key_marker && !version_marker.is_empty()).then_some(version_marker);
            versions::take_after(
                &mut page,
                versions::key_entries(key, current, older),
                skip,
                limit,
            );
        }
        Ok(page)
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> MetaResult<Vec<(String, ObjectRecord)>> {
        let state = self.state();
        let Some(bucket) = state.buckets.get(bucket) else {
            return Ok(Vec::new());
        };
        let start = std::cmp::max(after, prefix);
        let mut out = Vec::new();
        for (key, stored) in bucket
            .objects
            .range::<str, _>((Bound::Included(start), Bound::Unbounded))
        {
            if out.len() >= limit || !key.starts_with(prefix) {
                break;
            }
            if key.as_str() == after {
                continue;
            }
            out.push((key.clone(), decode(stored)?));
        }
        Ok(out)
    }

    async fn referenced_blobs(&self) -> MetaResult<HashSet<String>> {
        let state = self.state();
        let mut out = HashSet::new();
        for bucket in state.buckets.values() {
            let older = bucket.versions.values().flat_map(|v| v.values());
            for stored in bucket.objects.values().chain(older) {
                let record: ObjectRecord = decode(stored)?;
                out.extend(record.segments.into_iter().map(|s| s.blob));
            }
        }
        for upload in state.uploads.values() {
            for stored in upload.parts.values() {
                let part: PartRecord = decode(stored)?;
                out.insert(part.segment.blob);
            }
        }
        Ok(out)
    }

    async fn create_upload(&self, upload_id: &str, record: &UploadRecord) -> MetaResult<()> {
        let encoded = encode(record)?;
        let mut state = self.state();
        if !state.buckets.contains_key(&record.bucket) {
            return Err(MetaError::NoSuchBucket);
        }
        if state.uploads.contains_key(upload_id) {
            return Err(MetaError::AlreadyExists(format!("upload {upload_id}")));
        }
        state.uploads.insert(
            upload_id.to_owned(),
            Upload {
                bucket: record.bucket.clone(),
                key: record.key.clone(),
                record: encoded,
                parts: BTreeMap::new(),
            },
        );
        Ok(())
    }

    async fn upload(&self, upload_id: &str) -> MetaResult<Option<UploadRecord>> {
        let state = self.state();
        decode_opt(state.uploads.get(upload_id).map(|u| &u.record))
    }

    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: &str,
        upload_id_marker: &str,
        limit: usize,
    ) -> MetaResult<Vec<(String, UploadRecord)>> {
        let state = self.state();
        let mut rows: Vec<(&str, &str, &str)> = state
            .uploads
            .iter()
            .filter(|(id, u)| {
                u.bucket == bucket
                    && u.key.starts_with(prefix)
                    && (u.key.as_str(), id.as_str()) > (key_marker, upload_id_marker)
            })
            .map(|(id, u)| (u.key.as_str(), id.as_str(), u.record.as_str()))
            .collect();
        rows.sort_unstable();
        rows.into_iter()
            .take(limit)
            .map(|(_, id, stored)| Ok((id.to_owned(), decode(stored)?)))
            .collect()
    }

    async fn put_part(
        &self,
        upload_id: &str,
        part_number: u32,
        record: &PartRecord,
    ) -> MetaResult<Option<PartRecord>> {
        let encoded = encode(record)?;
        let mut state = self.state();
        let upload = state
            .uploads
            .get_mut(upload_id)
            .ok_or(MetaError::NoSuchUpload)?;
        let old: Option<PartRecord> = decode_opt(upload.parts.get(&part_number))?;
        upload.parts.insert(part_number, encoded);
        Ok(old)
    }

    async fn list_parts(&self, upload_id: &str) -> MetaResult<BTreeMap<u32, PartRecord>> {
        let state = self.state();
        let Some(upload) = state.uploads.get(upload_id) else {
            return Ok(BTreeMap::new());
        };
        upload
            .parts
            .iter()
            .map(|(n, stored)| Ok((*n, decode(stored)?)))
            .collect()
    }

    async fn delete_upload(&self, upload_id: &str) -> MetaResult<Vec<PartRecord>> {
        let mut state = self.state();
        let upload = state
            .uploads
            .get(upload_id)
            .ok_or(MetaError::NoSuchUpload)?;
        let parts = upload
            .parts
            .values()
            .map(|stored| decode(stored))
            .collect::<MetaResult<Vec<PartRecord>>>()?;
        state.uploads.remove(upload_id);
        Ok(parts)
    }

    async fn complete_upload(
        &self,
        upload_id: &str,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        condition: &Precondition,
    ) -> MetaResult<Written> {
        let mut state = self.state();
        match state.uploads.get(upload_id) {
            Some(u) if u.bucket == bucket && u.key == key => {}
            _ => return Err(MetaError::NoSuchUpload),
        }
        let bucket = state
            .buckets
            .get_mut(bucket)
            .ok_or(MetaError::NoSuchBucket)?;
        let written = with_history(bucket, key, |h| versions::put(h, record, condition))?;
        state.uploads.remove(upload_id);
        Ok(written)
    }
}

#[async_trait]
impl IdentityStore for MemoryStore {
    async fn snapshot(&self) -> MetaResult<IdentitySnapshot> {
        let state = self.state();
        Ok(IdentitySnapshot {
            identities: state.identities.clone(),
            access_keys: state
                .access_keys
                .iter()
                .map(|(id, key)| (id.clone(), key.duplicate()))
                .collect(),
            identity_policies: state.identity_policies.clone(),
            bucket_owners: state.bucket_owners.clone(),
            bucket_policies: state.bucket_policies.clone(),
        })
    }

    async fn create_identity(&self, identity: &IdentityRecord) -> MetaResult<()> {
        let mut state = self.state();
        if state.identities.contains_key(&identity.name) {
            return Err(MetaError::AlreadyExists(format!(
                "identity {}",
                identity.name
            )));
        }
        state
            .identities
            .insert(identity.name.clone(), identity.clone());
        Ok(())
    }

    async fn set_identity_enabled(&self, name: &str, enabled: bool) -> MetaResult<()> {
        let mut state = self.state();
        let identity = state
            .identities
            .get_mut(name)
            .ok_or_else(|| MetaError::NoSuchIdentity(name.to_owned()))?;
        identity.enabled = enabled;
        Ok(())
    }

    async fn delete_identity(&self, name: &str) -> MetaResult<()> {
        let mut state = self.state();
        if !state.identities.contains_key(name) {
            return Err(MetaError::NoSuchIdentity(name.to_owned()));
        }
        if let Some((bucket, _)) = state.bucket_owners.iter().find(|(_, o)| *o == name) {
            return Err(MetaError::IdentityOwnsBucket {
                bucket: bucket.clone(),
            });
        }
        state.identities.remove(name);
        state.access_keys.retain(|_, k| k.identity != name);
        state.identity_policies.retain(|(who, _), _| who != name);
        Ok(())
    }

    async fn put_access_key(&self, key: &AccessKey) -> MetaResult<()> {
        let mut state = self.state();
        if !state.identities.contains_key(&key.identity) {
            return Err(MetaError::NoSuchIdentity(key.identity.clone()));
        }
        if state.access_keys.contains_key(&key.access_key) {
            return Err(MetaError::AlreadyExists(format!(
                "access key {}",
                key.access_key
            )));
        }
        state
            .access_keys
            .insert(key.access_key.clone(), key.duplicate());
        Ok(())
    }

    async fn delete_access_key(&self, identity: &str, access_key: &str) -> MetaResult<()> {
        let mut state = self.state();
        match state.access_keys.get(access_key) {
            Some(k) if k.identity == identity => {}
            _ => return Err(MetaError::NoSuchAccessKey),
        }
        state.access_keys.remove(access_key);
        Ok(())
    }

    async fn replace_access_key(&self, old_access_key: &str, new: &AccessKey) -> MetaResult<()> {
        let mut state = self.state();
        match state.access_keys.get(old_access_key) {
            Some(k) if k.identity == new.identity => {}
            _ => return Err(MetaError::NoSuchAccessKey),
        }
        if new.access_key != old_access_key && state.access_keys.contains_key(&new.access_key) {
            return Err(MetaError::AlreadyExists(format!(
                "access key {}",
                new.access_key
            )));
        }
        state.access_keys.remove(old_access_key);
        state
            .access_keys
            .insert(new.access_key.clone(), new.duplicate());
        Ok(())
    }

    async fn put_identity_policy(
        &self,
        identity: &str,
        policy_name: &str,
        document: &str,
    ) -> MetaResult<()> {
        let mut state = self.state();
        if !state.identities.contains_key(identity) {
            return Err(MetaError::NoSuchIdentity(identity.to_owned()));
        }
        state.identity_policies.insert(
            (identity.to_owned(), policy_name.to_owned()),
            document.to_owned(),
        );
        Ok(())
    }

    async fn delete_identity_policy(&self, identity: &str, policy_name: &str) -> MetaResult<()> {
        self.state()
            .identity_policies
            .remove(&(identity.to_owned(), policy_name.to_owned()))
            .map(drop)
            .ok_or(MetaError::NoSuchPolicy)
    }

    async fn put_bucket_policy(&self, bucket: &str, document: &str) -> MetaResult<()> {
        let mut state = self.state();
        if !state.buckets.contains_key(bucket) {
            return Err(MetaError::NoSuchBucket);
        }
        state
            .bucket_policies
            .insert(bucket.to_owned(), document.to_owned());
        Ok(())
    }

    async fn delete_bucket_policy(&self, bucket: &str) -> MetaResult<()> {
        self.state().bucket_policies.remove(bucket);
        Ok(())
    }
}
