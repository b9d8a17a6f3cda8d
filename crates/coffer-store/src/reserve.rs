//! The disk reserve, as a [`MetaStore`] decorator.
//!
//! Deletes must work on a full disk — they are how an operator gets space back — but even a
//! delete writes to the metadata database's journal. The server therefore keeps a reserve
//! file of [`Reserve::SIZE`] bytes on the data directory's filesystem. [`Reserved`] wraps any
//! [`MetaStore`]: when one of the deleting calls ([`MetaStore::delete_object`],
//! [`MetaStore::delete_upload`]) fails with [`MetaError::StorageFull`], it releases the
//! reserve and tries once more. Every other call passes through unchanged. After the caller
//! has deleted the blobs a delete freed, it calls [`Reserve::ensure`] to take the space back.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use coffer_meta::{
    BucketConfig, BucketEncryption, BucketInfo, DeleteRequest, Deleted, MetaError, MetaResult,
    MetaStore, ObjectRecord, ObjectUpdate, PartRecord, Precondition, UploadRecord, VersionEntry,
    Written,
};

/// The reserve file.
pub struct Reserve {
    path: PathBuf,
}

impl Reserve {
    pub const SIZE: usize = 8 << 20;

    /// The reserve at `path`, created now if the disk has room.
    pub fn new(path: PathBuf) -> Reserve {
        let r = Reserve { path };
        r.ensure();
        r
    }

    /// Creates the reserve file if it is missing (best effort: not on a full disk).
    pub fn ensure(&self) {
        if self.path.exists() {
            return;
        }
        let tmp = self.path.with_extension("tmp");
        let ok = std::fs::write(&tmp, vec![0u8; Self::SIZE]).is_ok()
            && std::fs::rename(&tmp, &self.path).is_ok();
        if !ok {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    fn release(&self) -> bool {
        std::fs::remove_file(&self.path).is_ok()
    }

    /// Runs a metadata change; on a full disk, releases the reserve and tries once more.
    async fn run<T, F, Fut>(&self, mut f: F) -> MetaResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = MetaResult<T>>,
    {
        match f().await {
            Err(MetaError::StorageFull) if self.release() => {
                tracing::warn!("disk full: released the space reserve for a delete");
                f().await
            }
            r => r,
        }
    }
}

/// A [`MetaStore`] whose deletes fall back on the [`Reserve`].
pub struct Reserved {
    inner: Arc<dyn MetaStore>,
    reserve: Arc<Reserve>,
}

impl Reserved {
    pub fn new(inner: Arc<dyn MetaStore>, reserve: Arc<Reserve>) -> Reserved {
        Reserved { inner, reserve }
    }
}

#[async_trait]
impl MetaStore for Reserved {
    async fn create_bucket(&self, name: &str, created: i64, owner: &str) -> MetaResult<()> {
        self.inner.create_bucket(name, created, owner).await
    }

    async fn bucket_exists(&self, name: &str) -> MetaResult<bool> {
        self.inner.bucket_exists(name).await
    }

    async fn list_buckets(&self) -> MetaResult<Vec<BucketInfo>> {
        self.inner.list_buckets().await
    }

    async fn delete_bucket(&self, name: &str) -> MetaResult<Vec<PartRecord>> {
        self.inner.delete_bucket(name).await
    }

    async fn bucket_encryption(&self, name: &str) -> MetaResult<Option<BucketEncryption>> {
        self.inner.bucket_encryption(name).await
    }

    async fn set_bucket_encryption(
        &self,
        name: &str,
        encryption: Option<&BucketEncryption>,
    ) -> MetaResult<()> {
        self.inner.set_bucket_encryption(name, encryption).await
    }

    async fn object(&self, bucket: &str, key: &str) -> MetaResult<Option<ObjectRecord>> {
        self.inner.object(bucket, key).await
    }

    async fn bucket_config(&self, bucket: &str, kind: BucketConfig) -> MetaResult<Option<String>> {
        self.inner.bucket_config(bucket, kind).await
    }

    async fn set_bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
        document: Option<&str>,
    ) -> MetaResult<()> {
        self.inner.set_bucket_config(bucket, kind, document).await
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        condition: &Precondition,
    ) -> MetaResult<Written> {
        self.inner.put_object(bucket, key, record, condition).await
    }

    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        request: &DeleteRequest<'_>,
    ) -> MetaResult<Deleted> {
        self.reserve
            .run(|| self.inner.delete_object(bucket, key, request))
            .await
    }

    async fn object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> MetaResult<Option<ObjectRecord>> {
        self.inner.object_version(bucket, key, version_id).await
    }

    async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        update: &ObjectUpdate,
    ) -> MetaResult<ObjectRecord> {
        self.inner
            .update_object(bucket, key, version_id, update)
            .await
    }

    async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: &str,
        version_marker: &str,
        limit: usize,
    ) -> MetaResult<Vec<VersionEntry>> {
        self.inner
            .list_versions(bucket, prefix, key_marker, version_marker, limit)
            .await
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> MetaResult<Vec<(String, ObjectRecord)>> {
        self.inner.list_objects(bucket, prefix, after, limit).await
    }

    async fn referenced_blobs(&self) -> MetaResult<HashSet<String>> {
        self.inner.referenced_blobs().await
    }

    async fn create_upload(&self, upload_id: &str, record: &UploadRecord) -> MetaResult<()> {
        self.inner.create_upload(upload_id, record).await
    }

    async fn upload(&self, upload_id: &str) -> MetaResult<Option<UploadRecord>> {
        self.inner.upload(upload_id).await
    }

    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: &str,
        upload_id_marker: &str,
        limit: usize,
    ) -> MetaResult<Vec<(String, UploadRecord)>> {
        self.inner
            .list_uploads(bucket, prefix, key_marker, upload_id_marker, limit)
            .await
    }

    async fn put_part(
        &self,
        upload_id: &str,
        part_number: u32,
        record: &PartRecord,
    ) -> MetaResult<Option<PartRecord>> {
        self.inner.put_part(upload_id, part_number, record).await
    }

    async fn list_parts(&self, upload_id: &str) -> MetaResult<BTreeMap<u32, PartRecord>> {
        self.inner.list_parts(upload_id).await
    }

    async fn delete_upload(&self, upload_id: &str) -> MetaResult<Vec<PartRecord>> {
        self.reserve
            .run(|| self.inner.delete_upload(upload_id))
            .await
    }

    async fn complete_upload(
        &self,
        upload_id: &str,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        condition: &Precondition,
    ) -> MetaResult<Written> {
        self.inner
            .complete_upload(upload_id, bucket, key, record, condition)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_meta::conformance::{self, Harness, Stores};
    use coffer_meta::MemoryStore;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct ReservedHarness {
        dir: tempfile::TempDir,
        current: Option<Arc<MemoryStore>>,
    }

    impl Harness for ReservedHarness {
        fn fresh(&mut self) -> Stores {
            let store = Arc::new(MemoryStore::new());
            self.current = Some(Arc::clone(&store));
            let reserve = Arc::new(Reserve::new(self.dir.path().join("reserve")));
            Stores {
                meta: Arc::new(Reserved::new(store.clone(), reserve)),
                identity: store,
            }
        }
        fn reopen(&mut self) -> Option<Stores> {
            None
        }
        fn stored_records(&mut self) -> Vec<String> {
            self.current
                .as_ref()
                .map(|s| s.encoded_records())
                .unwrap_or_default()
        }
    }

    /// The decorator changes nothing but the retry: the decorated store passes the suite.
    #[tokio::test]
    async fn reserved_store_passes_the_meta_suite() {
        let mut h = ReservedHarness {
            dir: tempfile::tempdir().unwrap(),
            current: None,
        };
        conformance::run_meta(&mut h).await.unwrap();
    }

    #[tokio::test]
    async fn a_full_disk_releases_the_reserve_once_and_retries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reserve");
        let reserve = Reserve::new(path.clone());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            Reserve::SIZE as u64
        );
        let calls = AtomicU32::new(0);
        let attempt = || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(MetaError::StorageFull)
                } else {
                    Ok(n)
                }
            }
        };
        assert_eq!(reserve.run(attempt).await, Ok(1));
        assert!(!path.exists(), "the reserve was released");
        // With the reserve gone, a second full disk is reported, not retried.
        calls.store(0, Ordering::SeqCst);
        assert_eq!(reserve.run(attempt).await, Err(MetaError::StorageFull));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        reserve.ensure();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            Reserve::SIZE as u64
        );
    }
}
