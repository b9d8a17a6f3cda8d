//! The KMS: customer master keys over a sealed root key and a key store.
//!
//! ```text
//! root key (LockedKey; sealed in root.sealed)
//!   ├─ HKDF → SQLCipher page key of keystore.db
//!   ├─ HKDF → fingerprint key for imported material
//!   └─ wraps each CMK version (WrappedKey kind 0x05, context {"key": id, "version": n})
//!        └─ wraps KMS ciphertexts and data keys (kind 0x02, caller's encryption context)
//! ```
//!
//! Every operation first applies what the clock says is due for its key (completing a
//! scheduled deletion, expiring imported material, an automatic rotation), so behaviour does
//! not depend on when [`Kms::run_maintenance`] last ran.
//!
//! A KMS is opened with [`Kms::builder`]: the data directory and sealer are required; the
//! clock and the [`KeyStore`] are pluggable (default: the system clock and the SQLCipher
//! file `keystore.db`). The operations that reach the store are `async`; on a cache hit
//! (the hot path of SSE-KMS) they do not touch it.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hkdf;
use aws_lc_rs::hmac;
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey, OAEP_SHA256_MGF1SHA256,
};
use coffer_format::{Context, KeyKind, KeyReference, SecretBytes, SecretKey, WrappedKey};
use serde::Serialize;
use tokio::sync::{Mutex as AsyncMutex, RwLock, RwLockWriteGuard};
use zeroize::Zeroizing;

use crate::authz::KeyUse;
use crate::cache::KeyCache;
use crate::clock::{from_unix_seconds, unix_seconds, Clock, SystemClock, DAY};
use crate::error::{KmsError, Result};
use crate::locked::LockedKey;
use crate::seal::{SealedRoot, Sealer};
use crate::store::sqlcipher::SqlCipherStore;
use crate::store::{
    GrantRecord, KeyRecord, KeyState, KeyStore, Origin, RotationType, VersionRecord,
    KEY_RECORD_VERSION,
};

/// File names inside the data directory.
pub const SEALED_ROOT_FILE: &str = "root.sealed";
pub const KEY_STORE_FILE: &str = "keystore.db";
/// Default key file of the key-file sealer.
pub const ROOT_KEY_FILE: &str = "root.key";

/// HKDF labels (frozen: changing one makes existing stores unreadable).
const STORE_KEY_INFO: &[u8] = b"coffer-kms/v1/sqlcipher-page-key";
const FINGERPRINT_KEY_INFO: &[u8] = b"coffer-kms/v1/import-fingerprint-key";
const SUBSYSTEM_KEY_INFO: &[u8] = b"coffer-kms/v1/subsystem/";
const HKDF_SALT: &[u8] = b"coffer-kms/v1";

/// AWS KMS limits.
pub const MAX_PLAINTEXT: usize = 4096;
pub const MAX_RANDOM: usize = 1024;
pub const IMPORT_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
pub const MIN_ROTATION_DAYS: u32 = 90;
pub const MAX_ROTATION_DAYS: u32 = 2560;
pub const DEFAULT_ROTATION_DAYS: u32 = 365;
pub const MIN_DELETION_DAYS: u32 = 7;
pub const MAX_DELETION_DAYS: u32 = 30;
const MAX_PENDING_IMPORTS: usize = 1000;
const MAX_DESCRIPTION: usize = 8192;
const MAX_TAGS: usize = 50;

/// How to open a KMS.
#[derive(Debug, Clone)]
pub struct KmsConfig {
    pub data_dir: PathBuf,
    /// Used in ARNs: `arn:aws:kms:<region>:<account>:key/<id>`.
    pub region: String,
    pub account: String,
    /// Maximum number of unwrapped CMK versions held in locked memory.
    pub cache_capacity: usize,
    /// How long cached metadata and unwrapped versions are trusted.
    pub cache_ttl: Duration,
}

impl KmsConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        KmsConfig {
            data_dir: data_dir.into(),
            region: "us-east-1".into(),
            account: "000000000000".into(),
            cache_capacity: 1024,
            cache_ttl: Duration::from_secs(300),
        }
    }
}

/// RSA key size of the import wrapping key (AWS `WrappingKeySpec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrappingKeySpec {
    Rsa3072,
    Rsa4096,
}

impl WrappingKeySpec {
    pub fn as_str(self) -> &'static str {
        match self {
            WrappingKeySpec::Rsa3072 => "RSA_3072",
            WrappingKeySpec::Rsa4096 => "RSA_4096",
        }
    }
}

/// A key's description, as AWS `DescribeKey` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyMetadata {
    pub key_id: String,
    pub arn: String,
    pub owner: String,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    pub creation_date: SystemTime,
    pub enabled: bool,
    pub key_state: KeyState,
    pub origin: Origin,
    /// `SYMMETRIC_DEFAULT` (AES-256-GCM).
    pub key_spec: &'static str,
    /// `ENCRYPT_DECRYPT`.
    pub key_usage: &'static str,
    pub deletion_date: Option<SystemTime>,
    /// When imported material expires.
    pub valid_to: Option<SystemTime>,
    /// `KEY_MATERIAL_EXPIRES` / `KEY_MATERIAL_DOES_NOT_EXPIRE` for imported keys.
    pub expiration_model: Option<&'static str>,
    pub current_version: u32,
    pub min_decryption_version: u32,
    pub rotation_enabled: bool,
    pub rotation_period_days: Option<u32>,
    pub next_rotation_date: Option<SystemTime>,
}

/// One entry of `ListKeyRotations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRotation {
    pub version: u32,
    pub rotation_date: SystemTime,
    pub rotation_type: RotationType,
}

/// `GetParametersForImport` output.
#[derive(Debug, Clone)]
pub struct ImportParameters {
    pub key_id: String,
    /// Opaque; pass back to `import_key_material`.
    pub import_token: Vec<u8>,
    /// DER `SubjectPublicKeyInfo` of the RSA wrapping key.
    pub public_key: Vec<u8>,
    pub parameters_valid_to: SystemTime,
}

/// `Encrypt` / `GenerateDataKeyWithoutPlaintext` output.
#[derive(Debug, Clone)]
pub struct Ciphertext {
    pub ciphertext_blob: Vec<u8>,
    /// ARN of the key that encrypted.
    pub key_id: String,
    /// The key version that encrypted (what the audit trail records).
    pub key_version: u32,
}

/// `Decrypt` output.
pub struct Plaintext {
    pub plaintext: SecretBytes,
    pub key_id: String,
    /// The key version that had encrypted it.
    pub key_version: u32,
}

/// `GenerateDataKey` output.
pub struct DataKey {
    pub plaintext: SecretKey,
    pub ciphertext_blob: Vec<u8>,
    pub key_id: String,
    /// The key version the data key is wrapped under.
    pub key_version: u32,
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plaintext")
            .field(
                "plaintext",
                &format_args!("<{} bytes redacted>", self.plaintext.len()),
            )
            .field("key_id", &self.key_id)
            .field("key_version", &self.key_version)
            .finish()
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("plaintext", &"<redacted>")
            .field("key_id", &self.key_id)
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

/// `ReEncrypt` output.
#[derive(Debug, Clone)]
pub struct ReEncrypted {
    pub ciphertext_blob: Vec<u8>,
    pub source_key_id: String,
    pub source_key_version: u32,
    pub key_id: String,
    pub key_version: u32,
}

/// What [`Kms::run_maintenance`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub deleted: Vec<String>,
    pub rotated: Vec<String>,
    pub expired_material: Vec<String>,
}

struct PendingImport {
    key_id: String,
    private_key: PrivateDecryptingKey,
    expires_at: SystemTime,
}

/// What lifecycle work was done on a record.
enum Lifecycle {
    Unchanged,
    Changed,
    Deleted,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

fn derive(root: &LockedKey, info: &[u8]) -> Result<SecretKey> {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT);
    let mut out = Zeroizing::new([0u8; 32]);
    salt.extract(root.expose())
        .expand(&[info], Len32)
        .and_then(|okm| okm.fill(&mut out[..]))
        .map_err(|_| KmsError::Internal("HKDF failed".into()))?;
    Ok(SecretKey::from_bytes(&mut out))
}

fn version_context(key_id: &str, version: u32) -> Result<Context> {
    Ok(Context::from_pairs([
        ("key", key_id.to_owned()),
        ("version", version.to_string()),
    ])?)
}

/// The KMS. Shareable between threads (`&self` everywhere).
pub struct Kms {
    config: KmsConfig,
    clock: Arc<dyn Clock>,
    root: LockedKey,
    root_reference: KeyReference,
    fingerprint_key: hmac::Key,
    store: Arc<dyn KeyStore>,
    /// Held exclusively by every read-modify-write of a key record (and by lifecycle work),
    /// for its whole length, so two changes never interleave; held shared by a reader that
    /// fills the cache from the store, so nothing read before a change is cached after it.
    /// Cache hits take no lock. Writes that neither read first nor touch cached data (a new
    /// key, aliases, policies, one grant's removal) rely on the store's own atomicity.
    writer: RwLock<()>,
    cache: Mutex<KeyCache>,
    imports: Mutex<HashMap<Vec<u8>, PendingImport>>,
    /// Serialises [`Kms::ensure_managed_key`] so concurrent first uses create one key.
    managed_keys: AsyncMutex<()>,
    warnings: Vec<String>,
    /// Consulted before a key is scheduled for deletion and before a due deletion happens
    /// ([`Kms::set_deletion_guard`]).
    deletion_guard: std::sync::OnceLock<Arc<dyn DeletionGuard>>,
}

/// Something outside the KMS that may forbid deleting a key: the S3 service, for a key that
/// still protects object versions under Object Lock (crypto-shredding must not defeat WORM).
#[async_trait::async_trait]
pub trait DeletionGuard: Send + Sync {
    /// Why key `key_id` must not be deleted now, if it must not (`Err`: the answer could not
    /// be worked out, which refuses too).
    async fn deletion_refusal(&self, key_id: &str) -> std::result::Result<Option<String>, String>;
}

/// How to open a [`Kms`]: made by [`Kms::builder`], finished by [`KmsBuilder::open`].
pub struct KmsBuilder<'a> {
    config: KmsConfig,
    sealer: &'a dyn Sealer,
    clock: Arc<dyn Clock>,
    key_store: Option<Arc<dyn KeyStore>>,
}

impl std::fmt::Debug for KmsBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsBuilder")
            .field("data_dir", &self.config.data_dir)
            .field("sealer", &self.sealer.name())
            .field("key_store", &self.key_store.as_ref().map(|_| "custom"))
            .finish_non_exhaustive()
    }
}

impl<'a> KmsBuilder<'a> {
    /// The clock that lifecycle deadlines (deletion, rotation, material expiry, import
    /// tokens) are measured by. Default: [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where keys persist, instead of the default SQLCipher file
    /// `<data_dir>/keystore.db` (keyed from the root key). The store must follow the
    /// [`KeyStore`] contract and hold only keys made under this data directory's root key:
    /// versions wrapped under another root fail to unwrap (`KMSInternalException`). Opening a
    /// data directory without a sealed root over a store that already holds keys is refused.
    pub fn key_store(mut self, store: Arc<dyn KeyStore>) -> Self {
        self.key_store = Some(store);
        self
    }

    /// Opens the KMS in `config.data_dir`, initialising it (new root key, sealed with the
    /// sealer) if the directory holds no sealed root, and opens the default key store unless
    /// one was given. Unsealing happens before anything is written, so a wrong secret
    /// changes nothing. Unsealing (Argon2id, a PKCS#11 token) and opening the SQLCipher file
    /// run on the calling thread: this is start-up work.
    pub async fn open(self) -> Result<Kms> {
        let KmsBuilder {
            config,
            sealer,
            clock,
            key_store,
        } = self;
        let sealed_path = config.data_dir.join(SEALED_ROOT_FILE);
        let store_path = config.data_dir.join(KEY_STORE_FILE);
        let (root, root_key_id) = if sealed_path.exists() {
            let sealed = SealedRoot::read(&sealed_path)?;
            let root = sealer.unseal(&sealed)?;
            (LockedKey::new(&root)?, sealed.root_key_id)
        } else {
            match &key_store {
                None if store_path.exists() => {
                    return Err(KmsError::Unseal(format!(
                        "{} exists but {} is missing",
                        store_path.display(),
                        sealed_path.display()
                    )))
                }
                Some(store) if !store.list_keys().await?.is_empty() => {
                    return Err(KmsError::Unseal(format!(
                        "the key store holds keys but {} is missing",
                        sealed_path.display()
                    )))
                }
                _ => {}
            }
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&config.data_dir)
                .map_err(|e| KmsError::Internal(format!("create data dir: {e}")))?;
            let root = SecretKey::generate()?;
            let root_key_id = uuid::Uuid::new_v4().to_string();
            let sealed = sealer.seal(&root, &root_key_id)?;
            if !sealer.unseal(&sealed)?.ct_eq(&root) {
                return Err(KmsError::Internal("sealer did not round-trip".into()));
            }
            sealed.write(&sealed_path)?;
            (LockedKey::new(&root)?, root_key_id)
        };
        let store: Arc<dyn KeyStore> = match key_store {
            Some(store) => store,
            None => Arc::new(SqlCipherStore::open(
                &store_path,
                &derive(&root, STORE_KEY_INFO)?,
            )?),
        };
        let fingerprint_key = hmac::Key::new(
            hmac::HMAC_SHA256,
            derive(&root, FINGERPRINT_KEY_INFO)?.expose(),
        );
        let mut warnings = Vec::new();
        if sealer.name() == "key-file" {
            warnings.push(
                "the root key is sealed by a key file: for development only; use a passphrase or \
                 a PKCS#11 token in production"
                    .to_owned(),
            );
        }
        if !root.is_locked() {
            warnings
                .push("mlock failed: key material may be swapped (raise RLIMIT_MEMLOCK)".into());
        }
        Ok(Kms {
            cache: Mutex::new(KeyCache::new(config.cache_capacity, config.cache_ttl)),
            config,
            clock,
            root,
            root_reference: KeyReference::new(KeyKind::Root, root_key_id, 1)?,
            fingerprint_key,
            store,
            writer: RwLock::new(()),
            imports: Mutex::new(HashMap::new()),
            managed_keys: AsyncMutex::new(()),
            warnings,
            deletion_guard: std::sync::OnceLock::new(),
        })
    }
}

/// One key's record, read for a change under the exclusive writer lock ([`Kms::modify`]).
/// Dropping it invalidates the key's cache entry while the lock is still held, so the next
/// reader loads whatever was written.
struct KeyWrite<'a> {
    kms: &'a Kms,
    id: String,
    record: KeyRecord,
    now: SystemTime,
    _exclusive: RwLockWriteGuard<'a, ()>,
}

impl KeyWrite<'_> {
    /// Stores the edited record.
    async fn update(&self) -> Result<()> {
        self.kms.store.update_key(&self.record).await
    }
}

impl Drop for KeyWrite<'_> {
    fn drop(&mut self) {
        // Runs before the fields drop, so before the writer lock is released.
        lock(&self.kms.cache).invalidate(&self.id);
    }
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kms")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl Kms {
    /// How to open the KMS in `config.data_dir` whose root key `sealer` seals (or will seal,
    /// for a new directory); see [`KmsBuilder`].
    ///
    /// ```no_run
    /// # async fn example() -> coffer_kms::Result<()> {
    /// use coffer_kms::{KeyFileSealer, Kms, KmsConfig};
    /// let sealer = KeyFileSealer::new("/var/lib/coffer/root.key");
    /// let kms = Kms::builder(KmsConfig::new("/var/lib/coffer/kms"), &sealer)
    ///     .open()
    ///     .await?;
    /// # drop(kms);
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(config: KmsConfig, sealer: &dyn Sealer) -> KmsBuilder<'_> {
        KmsBuilder {
            config,
            sealer,
            clock: Arc::new(SystemClock),
            key_store: None,
        }
    }

    /// Moves the data directory in `data_dir` from one sealer to another: unseals with `from`,
    /// seals the same root key with `to`, checks the result, and replaces `root.sealed`
    /// atomically. The key store is untouched. The KMS must not be open meanwhile.
    pub fn reseal(data_dir: &Path, from: &dyn Sealer, to: &dyn Sealer) -> Result<()> {
        let path = data_dir.join(SEALED_ROOT_FILE);
        let old = SealedRoot::read(&path)?;
        let root = from.unseal(&old)?;
        let new = to.seal(&root, &old.root_key_id)?;
        if !to.unseal(&new)?.ct_eq(&root) {
            return Err(KmsError::Internal("new sealer did not round-trip".into()));
        }
        new.write(&path)
    }

    /// Start-up warnings for the operator's log (key-file sealer, mlock failure).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn config(&self) -> &KmsConfig {
        &self.config
    }

    /// Id of the root key (not secret).
    pub fn root_key_id(&self) -> &str {
        self.root_reference.key_id_str().unwrap_or_default()
    }

    /// Number of unwrapped CMK versions held in the cache.
    pub fn cached_versions(&self) -> usize {
        lock(&self.cache).material_len()
    }

    /// Drops every cached key (tests; after an external change to the store).
    pub fn clear_cache(&self) {
        lock(&self.cache).clear();
    }

    fn now(&self) -> SystemTime {
        self.clock.now()
    }

    // ---- identifiers ----

    pub fn key_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:kms:{}:{}:key/{id}",
            self.config.region, self.config.account
        )
    }

    /// Resolves a key id, `alias/…`, key ARN or alias ARN to a key id.
    pub async fn resolve(&self, key: &str) -> Result<String> {
        if let Some(rest) = key.strip_prefix("arn:") {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let [partition, service, region, account, resource] = parts[..] else {
                return Err(KmsError::InvalidArn(key.to_owned()));
            };
            if partition != "aws" || service != "kms" {
                return Err(KmsError::InvalidArn(key.to_owned()));
            }
            if region != self.config.region || account != self.config.account {
                return Err(KmsError::NotFound(format!("key {key}")));
            }
            if let Some(id) = resource.strip_prefix("key/") {
                return self.resolve_id(id);
            }
            if resource.starts_with("alias/") {
                return self.resolve_alias(resource).await;
            }
            return Err(KmsError::InvalidArn(key.to_owned()));
        }
        if key.starts_with("alias/") {
            return self.resolve_alias(key).await;
        }
        self.resolve_id(key)
    }

    fn resolve_id(&self, id: &str) -> Result<String> {
        match uuid::Uuid::try_parse(id) {
            Ok(u) if u.hyphenated().to_string() == id => Ok(id.to_owned()),
            _ => Err(KmsError::NotFound(format!("key {id}"))),
        }
    }

    async fn resolve_alias(&self, alias: &str) -> Result<String> {
        self.store
            .alias(alias)
            .await?
            .ok_or_else(|| KmsError::NotFound(format!("alias {alias}")))
    }

    // ---- records, lifecycle, material ----

    /// The key's current record, with due lifecycle work applied. Fast path: the cache.
    async fn record(&self, id: &str) -> Result<Arc<KeyRecord>> {
        let now = self.now();
        let cached = lock(&self.cache).record(id, now);
        if let Some(record) = cached {
            if !lifecycle_due(&record, now) {
                return Ok(record);
            }
        }
        {
            let _shared = self.writer.read().await;
            let record = self
                .store
                .key(id)
                .await?
                .ok_or_else(|| KmsError::NotFound(format!("key {id}")))?;
            if !lifecycle_due(&record, now) {
                return Ok(lock(&self.cache).put_record(record, now));
            }
        }
        // Lifecycle work is due: it writes, so under the exclusive lock, on a fresh read.
        let _exclusive = self.writer.write().await;
        let mut record = self
            .store
            .key(id)
            .await?
            .ok_or_else(|| KmsError::NotFound(format!("key {id}")))?;
        match self.apply_lifecycle(&mut record, now).await? {
            Lifecycle::Deleted => {
                lock(&self.cache).invalidate(id);
                Err(KmsError::NotFound(format!("key {id}")))
            }
            Lifecycle::Changed | Lifecycle::Unchanged => {
                Ok(lock(&self.cache).put_record(record, now))
            }
        }
    }

    /// Completes deletions, expires imported material and rotates, as the clock says. The
    /// caller holds the exclusive writer lock.
    async fn apply_lifecycle(&self, record: &mut KeyRecord, now: SystemTime) -> Result<Lifecycle> {
        let now_s = unix_seconds(now);
        if record.state == KeyState::PendingDeletion {
            if record.deletion_at.is_some_and(|at| at <= now_s) {
                // A version locked since the deletion was scheduled (retention set on an
                // existing object) still keeps the key: the deletion waits, the key stays
                // unusable and recoverable.
                if let Err(e) = self.check_deletion_guard(&record.id).await {
                    tracing::warn!("due deletion of key {} postponed: {e}", record.id);
                    return Ok(Lifecycle::Unchanged);
                }
                // Crypto-shredding: every version goes, so everything under the key is lost.
                self.store.delete_key(&record.id).await?;
                return Ok(Lifecycle::Deleted);
            }
            return Ok(Lifecycle::Unchanged);
        }
        let mut changed = false;
        if record.origin == Origin::External
            && record.state != KeyState::PendingImport
            && record.material_expires_at.is_some_and(|at| at <= now_s)
        {
            record.state = KeyState::PendingImport;
            record.material_expires_at = None;
            self.store.destroy_material(record).await?;
            changed = true;
        }
        if record.state == KeyState::Enabled
            && record.next_rotation_at.is_some_and(|at| at <= now_s)
        {
            let period = u64::from(record.rotation_period_days.unwrap_or(DEFAULT_ROTATION_DAYS));
            record.next_rotation_at = Some(now_s + period * DAY.as_secs());
            self.add_generated_version(record, Some(RotationType::Automatic), now)
                .await?;
            changed = true;
        }
        Ok(if changed {
            Lifecycle::Changed
        } else {
            Lifecycle::Unchanged
        })
    }

    fn wrap_version(&self, key_id: &str, version: u32, material: &SecretKey) -> Result<Vec<u8>> {
        let wrapped = WrappedKey::wrap(
            self.root_reference.clone(),
            &self.root.to_secret_key(),
            material.expose(),
            &version_context(key_id, version)?,
        )?;
        Ok(wrapped.encode())
    }

    /// Generates version `current + 1`, stores it with `record` (updated), in one transaction.
    /// The caller holds the exclusive writer lock.
    async fn add_generated_version(
        &self,
        record: &mut KeyRecord,
        rotation_type: Option<RotationType>,
        now: SystemTime,
    ) -> Result<u32> {
        let version = record.current_version.checked_add(1).ok_or_else(|| {
            KmsError::LimitExceeded("key has reached the maximum number of versions".into())
        })?;
        let material = SecretKey::generate()?;
        let wrapped_material = self.wrap_version(&record.id, version, &material)?;
        record.current_version = version;
        let stored = VersionRecord {
            key_id: record.id.clone(),
            version,
            created_at: unix_seconds(now),
            rotation_type,
            wrapped_material,
        };
        self.store.add_version(record, &stored).await?;
        Ok(version)
    }

    /// The unwrapped material of a version, from the cache or unwrapped from the store.
    /// `None` if the version does not exist.
    async fn material(&self, id: &str, version: u32) -> Result<Option<Arc<LockedKey>>> {
        let now = self.now();
        let cached = lock(&self.cache).material(id, version, now);
        if let Some(key) = cached {
            return Ok(Some(key));
        }
        // Shared: a version destroyed meanwhile is not cached after its destruction.
        let _shared = self.writer.read().await;
        let Some(stored) = self.store.version(id, version).await? else {
            return Ok(None);
        };
        let wrapped = WrappedKey::decode(&stored.wrapped_material)
            .map_err(|e| KmsError::Store(format!("corrupt version {version} of {id}: {e}")))?;
        if wrapped.reference() != &self.root_reference {
            return Err(KmsError::Store(format!(
                "version {version} of {id} is not under this root key"
            )));
        }
        let plain = wrapped
            .unwrap(&self.root.to_secret_key(), &version_context(id, version)?)
            .map_err(|_| KmsError::Store(format!("version {version} of {id} fails to unwrap")))?;
        let bytes: &[u8; 32] = plain
            .expose()
            .try_into()
            .map_err(|_| KmsError::Store(format!("version {version} of {id} has a bad length")))?;
        let key = Arc::new(LockedKey::from_bytes(bytes)?);
        lock(&self.cache).put_material(id, version, key.clone(), now);
        Ok(Some(key))
    }

    /// Resolves `key`, takes the exclusive writer lock, loads the record and applies due
    /// lifecycle work: the caller then edits the record and writes it (or versions) to the
    /// store itself; dropping the [`KeyWrite`] invalidates the cache and releases the lock.
    async fn modify(&self, key: &str) -> Result<KeyWrite<'_>> {
        let id = self.resolve(key).await?;
        let exclusive = self.writer.write().await;
        let now = self.now();
        let mut record = self
            .store
            .key(&id)
            .await?
            .ok_or_else(|| KmsError::NotFound(format!("key {id}")))?;
        let lifecycle = self.apply_lifecycle(&mut record, now).await;
        lock(&self.cache).invalidate(&id);
        if let Lifecycle::Deleted = lifecycle? {
            return Err(KmsError::NotFound(format!("key {id}")));
        }
        Ok(KeyWrite {
            kms: self,
            id,
            record,
            now,
            _exclusive: exclusive,
        })
    }

    fn metadata(&self, r: &KeyRecord) -> KeyMetadata {
        KeyMetadata {
            key_id: r.id.clone(),
            arn: self.key_arn(&r.id),
            owner: r.owner.clone(),
            description: r.description.clone(),
            tags: r.tags.clone(),
            creation_date: from_unix_seconds(r.created_at),
            enabled: r.state == KeyState::Enabled,
            key_state: r.state,
            origin: r.origin,
            key_spec: "SYMMETRIC_DEFAULT",
            key_usage: "ENCRYPT_DECRYPT",
            deletion_date: r.deletion_at.map(from_unix_seconds),
            valid_to: r.material_expires_at.map(from_unix_seconds),
            expiration_model: (r.origin == Origin::External && r.state != KeyState::PendingImport)
                .then_some(if r.material_expires_at.is_some() {
                    "KEY_MATERIAL_EXPIRES"
                } else {
                    "KEY_MATERIAL_DOES_NOT_EXPIRE"
                }),
            current_version: r.current_version,
            min_decryption_version: r.min_decryption_version,
            rotation_enabled: r.rotation_period_days.is_some(),
            rotation_period_days: r.rotation_period_days,
            next_rotation_date: r.next_rotation_at.map(from_unix_seconds),
        }
    }

    // ---- key management ----

    /// Creates a key with generated material (`Origin::Generated`, state Enabled).
    pub async fn create_key(
        &self,
        owner: &str,
        description: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<KeyMetadata> {
        self.create_key_with_origin(owner, description, tags, Origin::Generated)
            .await
    }

    /// Creates a key; `Origin::External` keys start in PendingImport without material.
    pub async fn create_key_with_origin(
        &self,
        owner: &str,
        description: &str,
        tags: BTreeMap<String, String>,
        origin: Origin,
    ) -> Result<KeyMetadata> {
        if owner.is_empty() {
            return Err(KmsError::Validation("owner must not be empty".into()));
        }
        if description.len() > MAX_DESCRIPTION {
            return Err(KmsError::Validation(
                "description longer than 8192 bytes".into(),
            ));
        }
        check_tags(&tags)?;
        let now = self.now();
        let mut record = KeyRecord {
            record_version: KEY_RECORD_VERSION,
            id: uuid::Uuid::new_v4().to_string(),
            owner: owner.to_owned(),
            description: description.to_owned(),
            tags,
            created_at: unix_seconds(now),
            state: KeyState::Enabled,
            origin,
            current_version: 1,
            min_decryption_version: 1,
            rotation_period_days: None,
            next_rotation_at: None,
            deletion_at: None,
            material_expires_at: None,
            material_fingerprint: None,
        };
        // A fresh id: nothing to serialise with (the store refuses a duplicate), nothing cached.
        match origin {
            Origin::Generated => {
                let material = SecretKey::generate()?;
                let version = VersionRecord {
                    key_id: record.id.clone(),
                    version: 1,
                    created_at: record.created_at,
                    rotation_type: None,
                    wrapped_material: self.wrap_version(&record.id, 1, &material)?,
                };
                self.store.create_key(&record, Some(&version)).await?;
            }
            Origin::External => {
                record.state = KeyState::PendingImport;
                self.store.create_key(&record, None).await?;
            }
        }
        Ok(self.metadata(&record))
    }

    /// The AWS-managed key behind a reserved alias (`alias/aws/s3` for SSE-KMS without a key
    /// id, as AWS creates on first use): resolved if it exists, else created, owned by
    /// `owner` (a service principal), with the alias pointing at it. Returns the key id.
    pub async fn ensure_managed_key(
        &self,
        alias: &str,
        owner: &str,
        description: &str,
    ) -> Result<String> {
        if !alias.starts_with("alias/aws/") {
            return Err(KmsError::InvalidAliasName(format!(
                "{alias} is not an AWS-managed alias"
            )));
        }
        let _guard = self.managed_keys.lock().await;
        match self.resolve(alias).await {
            Ok(id) => return Ok(id),
            Err(KmsError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let meta = self.create_key(owner, description, BTreeMap::new()).await?;
        self.store.put_alias(alias, &meta.key_id, false).await?;
        Ok(meta.key_id)
    }

    /// A 256-bit key for another subsystem (e.g. the server's metadata database page key),
    /// derived from the root key with HKDF-SHA256 and `label` as info: it follows the root
    /// key through reseals and is never stored.
    pub fn derive_subsystem_key(&self, label: &str) -> Result<SecretKey> {
        let mut info = SUBSYSTEM_KEY_INFO.to_vec();
        info.extend_from_slice(label.as_bytes());
        derive(&self.root, &info)
    }

    /// Whether the KMS serves: its key store answers a read (the managed S3 key's alias; not
    /// having one yet is an answer). A KMS whose root key is not unsealed does not exist (the
    /// server does not start without it), so this is the runtime part of readiness.
    pub async fn ready(&self) -> Result<()> {
        self.store.alias("alias/aws/s3").await.map(drop)
    }

    pub async fn describe_key(&self, key: &str) -> Result<KeyMetadata> {
        let id = self.resolve(key).await?;
        let record = self.record(&id).await?;
        Ok(self.metadata(&record))
    }

    /// Every key, ordered by id (completing due deletions first).
    pub async fn list_keys(&self) -> Result<Vec<KeyMetadata>> {
        self.run_maintenance().await?;
        let keys = self.store.list_keys().await?;
        Ok(keys.iter().map(|r| self.metadata(r)).collect())
    }

    pub async fn update_key_description(&self, key: &str, description: &str) -> Result<()> {
        if description.len() > MAX_DESCRIPTION {
            return Err(KmsError::Validation(
                "description longer than 8192 bytes".into(),
            ));
        }
        let mut w = self.modify(key).await?;
        w.record.description = description.to_owned();
        w.update().await
    }

    pub async fn enable_key(&self, key: &str) -> Result<()> {
        self.set_enabled(key, KeyState::Enabled).await
    }

    pub async fn disable_key(&self, key: &str) -> Result<()> {
        self.set_enabled(key, KeyState::Disabled).await
    }

    /// Enables or disables (`state`) a key that is one or the other.
    async fn set_enabled(&self, key: &str, state: KeyState) -> Result<()> {
        let mut w = self.modify(key).await?;
        match w.record.state {
            KeyState::Enabled | KeyState::Disabled => {
                w.record.state = state;
                w.update().await
            }
            s => Err(KmsError::InvalidState(format!(
                "key {} is {}",
                w.id,
                s.as_str()
            ))),
        }
    }

    /// Installs the [`DeletionGuard`] (once; later calls are ignored and return `false`).
    pub fn set_deletion_guard(&self, guard: Arc<dyn DeletionGuard>) -> bool {
        self.deletion_guard.set(guard).is_ok()
    }

    /// The guard's refusal to delete `key_id`, as an InvalidState error.
    async fn check_deletion_guard(&self, key_id: &str) -> Result<()> {
        let Some(guard) = self.deletion_guard.get() else {
            return Ok(());
        };
        match guard.deletion_refusal(key_id).await {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(KmsError::InvalidState(why)),
            Err(e) => Err(KmsError::InvalidState(format!(
                "key {key_id}: could not check whether it protects locked objects ({e}); not deleted"
            ))),
        }
    }

    /// Schedules deletion after `pending_window_days` (7..=30, default 30); returns the
    /// deletion date. Until then the key is unusable but recoverable. Refused while the
    /// [`DeletionGuard`] forbids it (a key protecting object versions under Object Lock).
    pub async fn schedule_key_deletion(
        &self,
        key: &str,
        pending_window_days: Option<u32>,
    ) -> Result<SystemTime> {
        let days = pending_window_days.unwrap_or(MAX_DELETION_DAYS);
        if !(MIN_DELETION_DAYS..=MAX_DELETION_DAYS).contains(&days) {
            return Err(KmsError::Validation(
                "PendingWindowInDays must be 7..=30".into(),
            ));
        }
        // Checked before the writer lock is taken: the guard may scan a lot of metadata.
        let id = self.resolve(key).await?;
        self.check_deletion_guard(&id).await?;
        let mut w = self.modify(key).await?;
        if w.record.state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "key {} is PendingDeletion",
                w.id
            )));
        }
        let at = unix_seconds(w.now) + u64::from(days) * DAY.as_secs();
        w.record.state = KeyState::PendingDeletion;
        w.record.deletion_at = Some(at);
        w.update().await?;
        Ok(from_unix_seconds(at))
    }

    /// Cancels a scheduled deletion. As in AWS KMS the key comes back Disabled (or
    /// PendingImport if it is an imported key without material).
    pub async fn cancel_key_deletion(&self, key: &str) -> Result<()> {
        let mut w = self.modify(key).await?;
        if w.record.state != KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "key {} is not PendingDeletion",
                w.id
            )));
        }
        w.record.deletion_at = None;
        let has_material = self
            .store
            .version(&w.id, w.record.current_version)
            .await?
            .is_some();
        w.record.state = if has_material {
            KeyState::Disabled
        } else {
            KeyState::PendingImport
        };
        w.update().await
    }

    // ---- aliases ----

    fn check_alias_name(alias: &str) -> Result<()> {
        let Some(name) = alias.strip_prefix("alias/") else {
            return Err(KmsError::InvalidAliasName(format!(
                "{alias} does not start with alias/"
            )));
        };
        if alias.starts_with("alias/aws/") {
            return Err(KmsError::InvalidAliasName("alias/aws/ is reserved".into()));
        }
        if name.is_empty()
            || alias.len() > 256
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
        {
            return Err(KmsError::InvalidAliasName(format!(
                "{alias}: 1..=250 characters of a-z A-Z 0-9 / _ -"
            )));
        }
        Ok(())
    }

    async fn alias_target(&self, key: &str) -> Result<String> {
        if key.starts_with("alias/") || key.contains(":alias/") {
            return Err(KmsError::Validation(
                "an alias must point at a key id or key ARN".into(),
            ));
        }
        let id = self.resolve(key).await?;
        self.record(&id).await?;
        Ok(id)
    }

    pub async fn create_alias(&self, alias: &str, target_key: &str) -> Result<()> {
        Self::check_alias_name(alias)?;
        let id = self.alias_target(target_key).await?;
        self.store.put_alias(alias, &id, false).await
    }

    pub async fn update_alias(&self, alias: &str, target_key: &str) -> Result<()> {
        Self::check_alias_name(alias)?;
        let id = self.alias_target(target_key).await?;
        self.store.put_alias(alias, &id, true).await
    }

    pub async fn delete_alias(&self, alias: &str) -> Result<()> {
        Self::check_alias_name(alias)?;
        self.store.delete_alias(alias).await
    }

    /// `(alias, key id)` pairs, optionally only those of one key.
    pub async fn list_aliases(&self, key: Option<&str>) -> Result<Vec<(String, String)>> {
        let id = match key {
            Some(k) => Some(self.resolve(k).await?),
            None => None,
        };
        let all = self.store.list_aliases().await?;
        Ok(all
            .into_iter()
            .filter(|(_, k)| id.as_ref().is_none_or(|id| id == k))
            .collect())
    }

    // ---- tags, key policies, grants (the KMS API's authorization data) ----

    /// Adds or replaces tags (at most 50 in all; keys 1..=128 bytes, values ≤ 256).
    pub async fn tag_key(&self, key: &str, tags: &BTreeMap<String, String>) -> Result<()> {
        let mut w = self.modify(key).await?;
        let mut merged = w.record.tags.clone();
        merged.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        check_tags(&merged)?;
        w.record.tags = merged;
        w.update().await
    }

    /// Removes the named tags (absent ones are ignored, as in AWS).
    pub async fn untag_key(&self, key: &str, tag_keys: &[String]) -> Result<()> {
        let mut w = self.modify(key).await?;
        for k in tag_keys {
            w.record.tags.remove(k);
        }
        w.update().await
    }

    /// The key's stored policy document; `None` when none was ever stored (keys created
    /// before key policies existed, and the AWS-managed keys): the caller applies a default.
    pub async fn key_policy(&self, key: &str) -> Result<Option<String>> {
        let id = self.resolve(key).await?;
        self.record(&id).await?;
        self.store.key_policy(&id).await
    }

    /// Stores the key's policy document. Validation is the caller's (the policy language is
    /// the API layer's concern); this only enforces AWS's 32 KiB limit.
    pub async fn put_key_policy(&self, key: &str, policy: &str) -> Result<()> {
        if policy.is_empty() || policy.len() > 32 * 1024 {
            return Err(KmsError::Validation(
                "Policy must be 1..=32768 bytes".into(),
            ));
        }
        let id = self.resolve(key).await?;
        self.record(&id).await?;
        self.store.put_key_policy(&id, policy).await
    }

    /// Stores a new grant on `grant.key_id` (at most 50000 per key, as AWS).
    pub async fn put_grant(&self, grant: &GrantRecord) -> Result<()> {
        self.record(&grant.key_id).await?;
        // Exclusive, so concurrent grants cannot both pass the count.
        let _exclusive = self.writer.write().await;
        if self.store.grants(&grant.key_id).await?.len() >= 50_000 {
            return Err(KmsError::LimitExceeded("too many grants on the key".into()));
        }
        self.store.put_grant(grant).await
    }

    /// The key's grants, oldest first.
    pub async fn grants(&self, key: &str) -> Result<Vec<GrantRecord>> {
        let id = self.resolve(key).await?;
        self.record(&id).await?;
        self.store.grants(&id).await
    }

    /// The grant whose token hashes (SHA-256, hex) to `token_hash`.
    pub async fn grant_by_token_hash(&self, token_hash: &str) -> Result<Option<GrantRecord>> {
        self.store.grant_by_token_hash(token_hash).await
    }

    /// Removes a grant (retired or revoked).
    pub async fn delete_grant(&self, key_id: &str, grant_id: &str) -> Result<()> {
        self.store.delete_grant(key_id, grant_id).await
    }

    // ---- rotation ----

    /// Turns on automatic rotation every `period_days` (90..=2560, default 365).
    pub async fn enable_key_rotation(&self, key: &str, period_days: Option<u32>) -> Result<()> {
        let days = period_days.unwrap_or(DEFAULT_ROTATION_DAYS);
        if !(MIN_ROTATION_DAYS..=MAX_ROTATION_DAYS).contains(&days) {
            return Err(KmsError::Validation(
                "RotationPeriodInDays must be 90..=2560".into(),
            ));
        }
        let mut w = self.modify(key).await?;
        check_rotatable(&w.record)?;
        w.record.rotation_period_days = Some(days);
        w.record.next_rotation_at = Some(unix_seconds(w.now) + u64::from(days) * DAY.as_secs());
        w.update().await
    }

    pub async fn disable_key_rotation(&self, key: &str) -> Result<()> {
        let mut w = self.modify(key).await?;
        check_rotatable(&w.record)?;
        w.record.rotation_period_days = None;
        w.record.next_rotation_at = None;
        w.update().await
    }

    /// Rotates now; returns the new version.
    pub async fn rotate_key_on_demand(&self, key: &str) -> Result<u32> {
        let mut w = self.modify(key).await?;
        check_rotatable(&w.record)?;
        let now = w.now;
        self.add_generated_version(&mut w.record, Some(RotationType::OnDemand), now)
            .await
    }

    /// Versions made by rotation, oldest first.
    pub async fn list_key_rotations(&self, key: &str) -> Result<Vec<KeyRotation>> {
        let id = self.resolve(key).await?;
        self.record(&id).await?;
        let versions = self.store.versions(&id).await?;
        Ok(versions
            .into_iter()
            .filter_map(|v| {
                v.rotation_type.map(|rotation_type| KeyRotation {
                    version: v.version,
                    rotation_date: from_unix_seconds(v.created_at),
                    rotation_type,
                })
            })
            .collect())
    }

    /// Refuses ciphertexts made under versions older than `version` (1..=current).
    pub async fn set_min_decryption_version(&self, key: &str, version: u32) -> Result<()> {
        let mut w = self.modify(key).await?;
        if version == 0 || version > w.record.current_version {
            return Err(KmsError::Validation(format!(
                "minimum decryption version must be 1..={}",
                w.record.current_version
            )));
        }
        w.record.min_decryption_version = version;
        w.update().await
    }

    // ---- import (BYOK) ----

    /// An RSA wrapping key and an import token valid 24 h, for a key with `Origin::External`.
    pub async fn get_parameters_for_import(
        &self,
        key: &str,
        spec: WrappingKeySpec,
    ) -> Result<ImportParameters> {
        let id = self.resolve(key).await?;
        let record = self.record(&id).await?;
        check_importable(&record)?;
        let private_key = PrivateDecryptingKey::generate(match spec {
            WrappingKeySpec::Rsa3072 => KeySize::Rsa3072,
            WrappingKeySpec::Rsa4096 => KeySize::Rsa4096,
        })
        .map_err(|_| KmsError::Internal("RSA key generation failed".into()))?;
        let public_key = private_key
            .public_key()
            .as_der()
            .map_err(|_| KmsError::Internal("RSA public key encoding failed".into()))?
            .as_ref()
            .to_vec();
        let mut token = vec![0u8; 32];
        coffer_format::secret::random_fill(&mut token)?;
        let now = self.now();
        let expires_at = now + IMPORT_TOKEN_LIFETIME;
        let mut imports = lock(&self.imports);
        imports.retain(|_, p| p.expires_at > now);
        if imports.len() >= MAX_PENDING_IMPORTS {
            return Err(KmsError::LimitExceeded("too many pending imports".into()));
        }
        imports.insert(
            token.clone(),
            PendingImport {
                key_id: id.clone(),
                private_key,
                expires_at,
            },
        );
        Ok(ImportParameters {
            key_id: id,
            import_token: token,
            public_key,
            parameters_valid_to: expires_at,
        })
    }

    /// Imports 32 bytes of AES key material wrapped with RSAES-OAEP-SHA-256 under the wrapping
    /// key of `import_token`. `valid_to`: when the material expires (`None`: never).
    pub async fn import_key_material(
        &self,
        key: &str,
        import_token: &[u8],
        encrypted_key_material: &[u8],
        valid_to: Option<SystemTime>,
    ) -> Result<()> {
        let id = self.resolve(key).await?;
        let now = self.now();
        if valid_to.is_some_and(|t| t <= now) {
            return Err(KmsError::Validation("ValidTo must be in the future".into()));
        }
        // A token stays valid (24 h) until an import with it succeeds, as in AWS KMS.
        let private_key = {
            let mut imports = lock(&self.imports);
            match imports.get(import_token) {
                None => return Err(KmsError::InvalidImportToken),
                Some(p) if p.key_id != id => return Err(KmsError::InvalidImportToken),
                Some(p) if p.expires_at <= now => {
                    imports.remove(import_token);
                    return Err(KmsError::ExpiredImportToken);
                }
                Some(p) => p.private_key.clone(),
            }
        };
        let oaep = OaepPrivateDecryptingKey::new(private_key)
            .map_err(|_| KmsError::Internal("OAEP key".into()))?;
        let mut out = Zeroizing::new(vec![0u8; oaep.min_output_size()]);
        // RSAES-OAEP with SHA-256 and MGF1-SHA-256 (AWS `RSAES_OAEP_SHA_256`), no label.
        let material = oaep
            .decrypt(
                &OAEP_SHA256_MGF1SHA256,
                encrypted_key_material,
                &mut out,
                None,
            )
            .map_err(|_| KmsError::InvalidCiphertext)?;
        let material =
            SecretKey::from_slice(material).map_err(|_| KmsError::IncorrectKeyMaterial)?;
        let fingerprint =
            hex::encode(hmac::sign(&self.fingerprint_key, material.expose()).as_ref());
        let mut w = self.modify(&id).await?;
        check_importable(&w.record)?;
        if let Some(previous) = &w.record.material_fingerprint {
            if !coffer_format::secret::ct_eq(previous.as_bytes(), fingerprint.as_bytes()) {
                return Err(KmsError::IncorrectKeyMaterial);
            }
        }
        w.record.state = KeyState::Enabled;
        w.record.current_version = 1;
        w.record.material_expires_at = valid_to.map(unix_seconds);
        w.record.material_fingerprint = Some(fingerprint);
        let version = VersionRecord {
            key_id: w.id.clone(),
            version: 1,
            created_at: unix_seconds(w.now),
            rotation_type: None,
            wrapped_material: self.wrap_version(&w.id, 1, &material)?,
        };
        self.store.add_version(&w.record, &version).await?;
        drop(w);
        lock(&self.imports).remove(import_token);
        Ok(())
    }

    /// Deletes imported material: the key goes to PendingImport and everything encrypted
    /// under it is unreadable until the same material is imported again.
    pub async fn delete_imported_key_material(&self, key: &str) -> Result<()> {
        let mut w = self.modify(key).await?;
        if w.record.origin != Origin::External {
            return Err(KmsError::UnsupportedOperation(
                "the key's material was not imported".into(),
            ));
        }
        if w.record.state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "key {} is PendingDeletion",
                w.id
            )));
        }
        w.record.state = KeyState::PendingImport;
        w.record.material_expires_at = None;
        self.store.destroy_material(&w.record).await
    }

    // ---- cryptographic operations ----

    /// The record and material for a new ciphertext under the key `proof` allows `action`
    /// on: enabled, current version.
    async fn encryption_key(
        &self,
        proof: &KeyUse,
        action: &str,
    ) -> Result<(Arc<KeyRecord>, Arc<LockedKey>)> {
        proof.check_action(action)?;
        let id = proof.key_id();
        let record = self.record(id).await?;
        check_usable(&record)?;
        let material = self
            .material(id, record.current_version)
            .await?
            .ok_or_else(|| KmsError::InvalidState(format!("key {id} has no material")))?;
        Ok((record, material))
    }

    fn seal(
        &self,
        record: &KeyRecord,
        material: &LockedKey,
        plaintext: &[u8],
        context: &Context,
    ) -> Result<Vec<u8>> {
        let reference =
            KeyReference::new(KeyKind::Kms, record.id.as_bytes(), record.current_version)?;
        let wrapped = WrappedKey::wrap(reference, &material.to_secret_key(), plaintext, context)?;
        Ok(wrapped.encode())
    }

    /// Encrypts up to 4096 bytes, binding `context` as associated data. Needs a proof for
    /// `kms:Encrypt`.
    pub async fn encrypt(
        &self,
        proof: &KeyUse,
        plaintext: &[u8],
        context: &Context,
    ) -> Result<Ciphertext> {
        self.encrypt_as(proof, "kms:Encrypt", plaintext, context)
            .await
    }

    async fn encrypt_as(
        &self,
        proof: &KeyUse,
        action: &str,
        plaintext: &[u8],
        context: &Context,
    ) -> Result<Ciphertext> {
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
            return Err(KmsError::Validation(
                "plaintext must be 1..=4096 bytes".into(),
            ));
        }
        let (record, material) = self.encryption_key(proof, action).await?;
        let ciphertext_blob = self.seal(&record, &material, plaintext, context)?;
        Ok(Ciphertext {
            ciphertext_blob,
            key_id: self.key_arn(&record.id),
            key_version: record.current_version,
        })
    }

    /// The key id and key version a ciphertext blob names (`InvalidCiphertextException` if
    /// it names none): what a caller authorizes `kms:Decrypt` on before calling
    /// [`Kms::decrypt`]. With `expected` (Decrypt's `KeyId`, ReEncrypt's `SourceKeyId`), the
    /// key that id, alias or ARN resolves to must be the one the blob names
    /// (`IncorrectKeyException` otherwise).
    pub async fn ciphertext_key(
        &self,
        blob: &[u8],
        expected: Option<&str>,
    ) -> Result<(String, u32)> {
        let wrapped = WrappedKey::decode(blob).map_err(|_| KmsError::InvalidCiphertext)?;
        let (id, version) = kms_reference(&wrapped)?;
        if let Some(expected) = expected {
            if self.resolve(expected).await? != id {
                return Err(KmsError::IncorrectKey);
            }
        }
        Ok((id.to_owned(), version))
    }

    /// Decrypts a blob made by `encrypt`/`generate_data_key*`. Needs a proof for
    /// `kms:Decrypt` on the key the blob names (`IncorrectKeyException` for another key).
    pub async fn decrypt(
        &self,
        proof: &KeyUse,
        blob: &[u8],
        context: &Context,
    ) -> Result<Plaintext> {
        self.decrypt_as(proof, "kms:Decrypt", blob, context).await
    }

    async fn decrypt_as(
        &self,
        proof: &KeyUse,
        action: &str,
        blob: &[u8],
        context: &Context,
    ) -> Result<Plaintext> {
        let wrapped = WrappedKey::decode(blob).map_err(|_| KmsError::InvalidCiphertext)?;
        let (id, version) = kms_reference(&wrapped)?;
        proof.check(action, id)?;
        let record = self.record(id).await?;
        check_usable(&record)?;
        if version < record.min_decryption_version {
            return Err(KmsError::InvalidState(format!(
                "version {version} of key {id} is below the minimum decryption version {}",
                record.min_decryption_version
            )));
        }
        if version > record.current_version {
            return Err(KmsError::InvalidCiphertext);
        }
        let material = self
            .material(id, version)
            .await?
            .ok_or(KmsError::InvalidCiphertext)?;
        let plaintext = wrapped
            .unwrap(&material.to_secret_key(), context)
            .map_err(|_| KmsError::InvalidCiphertext)?;
        Ok(Plaintext {
            plaintext,
            key_id: self.key_arn(id),
            key_version: version,
        })
    }

    /// Decrypts under the source key and context, encrypts under the destination; the
    /// plaintext never leaves the KMS. Needs `kms:ReEncryptFrom` on the source key and
    /// `kms:ReEncryptTo` on the destination.
    pub async fn re_encrypt(
        &self,
        from: &KeyUse,
        blob: &[u8],
        source_context: &Context,
        to: &KeyUse,
        destination_context: &Context,
    ) -> Result<ReEncrypted> {
        let source = self
            .decrypt_as(from, "kms:ReEncryptFrom", blob, source_context)
            .await?;
        let out = self
            .encrypt_as(
                to,
                "kms:ReEncryptTo",
                source.plaintext.expose(),
                destination_context,
            )
            .await?;
        Ok(ReEncrypted {
            ciphertext_blob: out.ciphertext_blob,
            source_key_id: source.key_id,
            source_key_version: source.key_version,
            key_id: out.key_id,
            key_version: out.key_version,
        })
    }

    /// A fresh 256-bit data key, in clear and wrapped under the key bound to `context`.
    /// Needs a proof for `kms:GenerateDataKey`.
    pub async fn generate_data_key(&self, proof: &KeyUse, context: &Context) -> Result<DataKey> {
        let (record, material) = self.encryption_key(proof, "kms:GenerateDataKey").await?;
        let plaintext = SecretKey::generate()?;
        let ciphertext_blob = self.seal(&record, &material, plaintext.expose(), context)?;
        Ok(DataKey {
            plaintext,
            ciphertext_blob,
            key_id: self.key_arn(&record.id),
            key_version: record.current_version,
        })
    }

    /// A data key of `len` (1..=1024) bytes: random bytes, returned in clear and encrypted
    /// under the key. Needs a proof for `kms:GenerateDataKey`.
    pub async fn generate_data_key_bytes(
        &self,
        proof: &KeyUse,
        len: usize,
        context: &Context,
    ) -> Result<(SecretBytes, Ciphertext)> {
        let bytes = self.generate_random(len)?;
        let ciphertext = self
            .encrypt_as(proof, "kms:GenerateDataKey", bytes.expose(), context)
            .await?;
        Ok((bytes, ciphertext))
    }

    /// A fresh data key wrapped under the key, without its plaintext. Needs a proof for
    /// `kms:GenerateDataKeyWithoutPlaintext`; `len` as in [`Kms::generate_data_key_bytes`].
    pub async fn generate_data_key_without_plaintext(
        &self,
        proof: &KeyUse,
        len: usize,
        context: &Context,
    ) -> Result<Ciphertext> {
        let bytes = self.generate_random(len)?;
        self.encrypt_as(
            proof,
            "kms:GenerateDataKeyWithoutPlaintext",
            bytes.expose(),
            context,
        )
        .await
    }

    /// 1..=1024 random bytes from the CSPRNG.
    pub fn generate_random(&self, len: usize) -> Result<SecretBytes> {
        if len == 0 || len > MAX_RANDOM {
            return Err(KmsError::Validation(
                "NumberOfBytes must be 1..=1024".into(),
            ));
        }
        let mut bytes = Zeroizing::new(vec![0u8; len]);
        coffer_format::secret::random_fill(&mut bytes)?;
        Ok(SecretBytes::from_zeroizing(bytes))
    }

    // ---- maintenance ----

    /// Applies everything the clock says is due, for every key. The server calls this
    /// periodically (e.g. hourly); operations also apply it to their own key.
    pub async fn run_maintenance(&self) -> Result<MaintenanceReport> {
        let now = self.now();
        let mut report = MaintenanceReport::default();
        let _exclusive = self.writer.write().await;
        for mut record in self.store.list_keys().await? {
            if !lifecycle_due(&record, now) {
                continue;
            }
            let before = (record.state, record.current_version);
            let outcome = self.apply_lifecycle(&mut record, now).await?;
            lock(&self.cache).invalidate(&record.id);
            match outcome {
                Lifecycle::Deleted => report.deleted.push(record.id),
                Lifecycle::Changed => {
                    if record.current_version != before.1 {
                        report.rotated.push(record.id.clone());
                    }
                    if record.state == KeyState::PendingImport
                        && before.0 != KeyState::PendingImport
                    {
                        report.expired_material.push(record.id);
                    }
                }
                Lifecycle::Unchanged => {}
            }
        }
        lock(&self.imports).retain(|_, p| p.expires_at > now);
        Ok(report)
    }
}

fn lifecycle_due(r: &KeyRecord, now: SystemTime) -> bool {
    let now = unix_seconds(now);
    let due = |t: Option<u64>| t.is_some_and(|t| t <= now);
    (r.state == KeyState::PendingDeletion && due(r.deletion_at))
        || (r.state != KeyState::PendingDeletion
            && r.state != KeyState::PendingImport
            && due(r.material_expires_at))
        || (r.state == KeyState::Enabled && due(r.next_rotation_at))
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.len() > MAX_TAGS
        || tags
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 128 || v.len() > 256)
    {
        return Err(KmsError::Validation(
            "at most 50 tags, keys 1..=128 bytes, values ≤ 256 bytes".into(),
        ));
    }
    Ok(())
}

/// The KMS key id (a UUID) and version a wrapped key names; anything else is not a KMS
/// ciphertext.
fn kms_reference(wrapped: &WrappedKey) -> Result<(&str, u32)> {
    let reference = wrapped.reference();
    if reference.kind != KeyKind::Kms {
        return Err(KmsError::InvalidCiphertext);
    }
    let id = reference.key_id_str().ok_or(KmsError::InvalidCiphertext)?;
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(KmsError::InvalidCiphertext);
    }
    Ok((id, reference.version))
}

fn check_usable(r: &KeyRecord) -> Result<()> {
    match r.state {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(KmsError::Disabled(r.id.clone())),
        s => Err(KmsError::InvalidState(format!(
            "key {} is {}",
            r.id,
            s.as_str()
        ))),
    }
}

fn check_rotatable(r: &KeyRecord) -> Result<()> {
    if r.origin == Origin::External {
        return Err(KmsError::UnsupportedOperation(
            "keys with imported material cannot rotate".into(),
        ));
    }
    check_usable(r)
}

fn check_importable(r: &KeyRecord) -> Result<()> {
    if r.origin != Origin::External {
        return Err(KmsError::UnsupportedOperation(
            "the key's origin is not EXTERNAL".into(),
        ));
    }
    if r.state != KeyState::PendingImport {
        return Err(KmsError::InvalidState(format!(
            "key {} is {}; delete its material before importing again",
            r.id,
            r.state.as_str()
        )));
    }
    Ok(())
}
