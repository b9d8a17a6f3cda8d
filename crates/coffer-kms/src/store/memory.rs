//! [`MemoryKeyStore`]: the [`KeyStore`] contract over maps behind one mutex — for tests, and
//! the reference model of the contract (it passes the same conformance suite as the
//! SQLCipher store).
//!
//! Key and grant records are kept in their stored encoding (JSON with `record_version`), so
//! they go through the same serialization and version check as on disk. Each method takes
//! the lock once and checks everything before it changes anything, which makes it atomic;
//! removed wrapped material is wiped. Nothing survives the process.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{
    decode_grant_record, decode_key_record, encode_grant_record, encode_key_record, GrantRecord,
    KeyRecord, KeyStore, RotationType, VersionRecord,
};
use crate::error::{KmsError, Result};

struct StoredVersion {
    created_at: u64,
    rotation_type: Option<RotationType>,
    /// Wiped when the version is removed.
    wrapped_material: Zeroizing<Vec<u8>>,
}

struct StoredKey {
    /// Encoded [`KeyRecord`].
    record: String,
    versions: BTreeMap<u32, StoredVersion>,
    policy: Option<String>,
}

struct StoredGrant {
    key_id: String,
    token_hash: String,
    created_at: u64,
    /// Encoded [`GrantRecord`].
    record: String,
}

#[derive(Default)]
struct State {
    keys: BTreeMap<String, StoredKey>,
    /// Alias → key id.
    aliases: BTreeMap<String, String>,
    /// Grant id → grant.
    grants: BTreeMap<String, StoredGrant>,
}

/// An in-memory [`KeyStore`] (nothing survives the process).
#[derive(Default)]
pub struct MemoryKeyStore {
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryKeyStore").finish_non_exhaustive()
    }
}

impl MemoryKeyStore {
    pub fn new() -> MemoryKeyStore {
        MemoryKeyStore::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every method checks before it mutates, so a panic elsewhere cannot leave a
        // half-made change behind the poisoned lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `key`'s record in place of the old one, after `change` has run on its entry
    /// (`change` checks before it mutates: its error leaves everything as it was).
    fn replace_record(
        &self,
        key: &KeyRecord,
        change: impl FnOnce(&mut StoredKey) -> Result<()>,
    ) -> Result<()> {
        let record = encode_key_record(key)?;
        let mut state = self.state();
        let stored = state
            .keys
            .get_mut(&key.id)
            .ok_or_else(|| key_not_found(&key.id))?;
        change(stored)?;
        stored.record = record;
        Ok(())
    }

    /// Every key and grant record in its stored encoding, for checks of the stored format.
    pub fn encoded_records(&self) -> Vec<String> {
        let state = self.state();
        let keys = state.keys.values().map(|k| k.record.clone());
        let grants = state.grants.values().map(|g| g.record.clone());
        keys.chain(grants).collect()
    }
}

fn version_record(key_id: &str, version: u32, v: &StoredVersion) -> VersionRecord {
    VersionRecord {
        key_id: key_id.to_owned(),
        version,
        created_at: v.created_at,
        rotation_type: v.rotation_type,
        wrapped_material: v.wrapped_material.to_vec(),
    }
}

fn stored_version(v: &VersionRecord) -> StoredVersion {
    StoredVersion {
        created_at: v.created_at,
        rotation_type: v.rotation_type,
        wrapped_material: Zeroizing::new(v.wrapped_material.clone()),
    }
}

fn key_not_found(id: &str) -> KmsError {
    KmsError::NotFound(format!("key {id}"))
}

/// A version is stored under the key it names (a caller bug otherwise; SQLite's foreign key
/// refuses it too).
fn check_belongs(key: &KeyRecord, v: &VersionRecord) -> Result<()> {
    if v.key_id != key.id {
        return Err(KmsError::Store(format!(
            "version {} names key {}, not {}",
            v.version, v.key_id, key.id
        )));
    }
    Ok(())
}

fn version_exists(v: &VersionRecord) -> KmsError {
    KmsError::AlreadyExists(format!("version {} of key {}", v.version, v.key_id))
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn create_key(
        &self,
        key: &KeyRecord,
        first_version: Option<&VersionRecord>,
    ) -> Result<()> {
        let record = encode_key_record(key)?;
        if let Some(v) = first_version {
            check_belongs(key, v)?;
        }
        let mut state = self.state();
        if state.keys.contains_key(&key.id) {
            return Err(KmsError::AlreadyExists(format!("key {}", key.id)));
        }
        let versions = first_version
            .map(|v| (v.version, stored_version(v)))
            .into_iter()
            .collect();
        state.keys.insert(
            key.id.clone(),
            StoredKey {
                record,
                versions,
                policy: None,
            },
        );
        Ok(())
    }

    async fn key(&self, id: &str) -> Result<Option<KeyRecord>> {
        let state = self.state();
        state
            .keys
            .get(id)
            .map(|k| decode_key_record(&k.record))
            .transpose()
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        let state = self.state();
        state
            .keys
            .values()
            .map(|k| decode_key_record(&k.record))
            .collect()
    }

    async fn update_key(&self, key: &KeyRecord) -> Result<()> {
        self.replace_record(key, |_| Ok(()))
    }

    async fn add_version(&self, key: &KeyRecord, version: &VersionRecord) -> Result<()> {
        check_belongs(key, version)?;
        self.replace_record(key, |stored| {
            if stored.versions.contains_key(&version.version) {
                return Err(version_exists(version));
            }
            stored
                .versions
                .insert(version.version, stored_version(version));
            Ok(())
        })
    }

    async fn version(&self, key_id: &str, version: u32) -> Result<Option<VersionRecord>> {
        let state = self.state();
        Ok(state
            .keys
            .get(key_id)
            .and_then(|k| k.versions.get(&version))
            .map(|v| version_record(key_id, version, v)))
    }

    async fn versions(&self, key_id: &str) -> Result<Vec<VersionRecord>> {
        let state = self.state();
        Ok(state
            .keys
            .get(key_id)
            .map(|k| {
                k.versions
                    .iter()
                    .map(|(n, v)| version_record(key_id, *n, v))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn destroy_material(&self, key: &KeyRecord) -> Result<()> {
        self.replace_record(key, |stored| {
            // Dropping a `StoredVersion` wipes its material.
            stored.versions.clear();
            Ok(())
        })
    }

    async fn delete_key(&self, key_id: &str) -> Result<()> {
        let mut state = self.state();
        if state.keys.remove(key_id).is_none() {
            return Err(key_not_found(key_id));
        }
        state.aliases.retain(|_, k| k != key_id);
        state.grants.retain(|_, g| g.key_id != key_id);
        Ok(())
    }

    async fn put_alias(&self, alias: &str, key_id: &str, replace: bool) -> Result<()> {
        let mut state = self.state();
        if !state.keys.contains_key(key_id) {
            return Err(key_not_found(key_id));
        }
        match (state.aliases.get_mut(alias), replace) {
            (Some(target), true) => *target = key_id.to_owned(),
            (None, false) => {
                state.aliases.insert(alias.to_owned(), key_id.to_owned());
            }
            (Some(_), false) => return Err(KmsError::AlreadyExists(format!("alias {alias}"))),
            (None, true) => return Err(KmsError::NotFound(format!("alias {alias}"))),
        }
        Ok(())
    }

    async fn alias(&self, alias: &str) -> Result<Option<String>> {
        Ok(self.state().aliases.get(alias).cloned())
    }

    async fn delete_alias(&self, alias: &str) -> Result<()> {
        match self.state().aliases.remove(alias) {
            Some(_) => Ok(()),
            None => Err(KmsError::NotFound(format!("alias {alias}"))),
        }
    }

    async fn list_aliases(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .state()
            .aliases
            .iter()
            .map(|(a, k)| (a.clone(), k.clone()))
            .collect())
    }

    async fn key_policy(&self, key_id: &str) -> Result<Option<String>> {
        Ok(self.state().keys.get(key_id).and_then(|k| k.policy.clone()))
    }

    async fn put_key_policy(&self, key_id: &str, policy: &str) -> Result<()> {
        let mut state = self.state();
        let stored = state
            .keys
            .get_mut(key_id)
            .ok_or_else(|| key_not_found(key_id))?;
        stored.policy = Some(policy.to_owned());
        Ok(())
    }

    async fn put_grant(&self, grant: &GrantRecord) -> Result<()> {
        let record = encode_grant_record(grant)?;
        let mut state = self.state();
        if !state.keys.contains_key(&grant.key_id) {
            return Err(key_not_found(&grant.key_id));
        }
        if state.grants.contains_key(&grant.grant_id)
            || state
                .grants
                .values()
                .any(|g| g.token_hash == grant.token_hash)
        {
            return Err(KmsError::AlreadyExists(format!("grant {}", grant.grant_id)));
        }
        state.grants.insert(
            grant.grant_id.clone(),
            StoredGrant {
                key_id: grant.key_id.clone(),
                token_hash: grant.token_hash.clone(),
                created_at: grant.created_at,
                record,
            },
        );
        Ok(())
    }

    async fn grants(&self, key_id: &str) -> Result<Vec<GrantRecord>> {
        let state = self.state();
        let mut of_key: Vec<(u64, &String, &StoredGrant)> = state
            .grants
            .iter()
            .filter(|(_, g)| g.key_id == key_id)
            .map(|(id, g)| (g.created_at, id, g))
            .collect();
        of_key.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        of_key
            .into_iter()
            .map(|(_, _, g)| decode_grant_record(&g.record))
            .collect()
    }

    async fn grant_by_token_hash(&self, token_hash: &str) -> Result<Option<GrantRecord>> {
        let state = self.state();
        state
            .grants
            .values()
            .find(|g| g.token_hash == token_hash)
            .map(|g| decode_grant_record(&g.record))
            .transpose()
    }

    async fn delete_grant(&self, key_id: &str, grant_id: &str) -> Result<()> {
        let mut state = self.state();
        match state.grants.get(grant_id) {
            Some(g) if g.key_id == key_id => {
                state.grants.remove(grant_id);
                Ok(())
            }
            _ => Err(KmsError::NotFound(format!("grant {grant_id}"))),
        }
    }
}
