//! The bounded, time-limited cache of key metadata and unwrapped CMK versions.
//!
//! Unwrapped versions sit in [`LockedKey`] pages (mlocked, not dumpable) and are wiped when
//! evicted, expired or invalidated. At most `capacity` versions are held; an entry older than
//! `ttl` is treated as absent, so a state change made by another node reaches this one
//! within `ttl`. Every metadata change made through this process invalidates the key's entry
//! at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::locked::LockedKey;
use crate::store::KeyRecord;

struct CachedKey {
    record: Arc<KeyRecord>,
    loaded_at: SystemTime,
    versions: HashMap<u32, (Arc<LockedKey>, SystemTime)>,
}

/// See the module docs.
pub(crate) struct KeyCache {
    keys: HashMap<String, CachedKey>,
    capacity: usize,
    ttl: Duration,
    material_count: usize,
}

fn fresh(loaded_at: SystemTime, now: SystemTime, ttl: Duration) -> bool {
    // A clock moved backwards also counts as stale.
    matches!(now.duration_since(loaded_at), Ok(age) if age < ttl)
}

impl KeyCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        KeyCache {
            keys: HashMap::new(),
            capacity: capacity.max(1),
            ttl,
            material_count: 0,
        }
    }

    pub(crate) fn record(&self, id: &str, now: SystemTime) -> Option<Arc<KeyRecord>> {
        let entry = self.keys.get(id)?;
        fresh(entry.loaded_at, now, self.ttl).then(|| entry.record.clone())
    }

    pub(crate) fn put_record(&mut self, record: KeyRecord, now: SystemTime) -> Arc<KeyRecord> {
        let record = Arc::new(record);
        self.invalidate(&record.id);
        if self.keys.len() >= self.capacity.saturating_mul(4) {
            self.evict_stale(now);
        }
        self.keys.insert(
            record.id.clone(),
            CachedKey {
                record: record.clone(),
                loaded_at: now,
                versions: HashMap::new(),
            },
        );
        record
    }

    pub(crate) fn material(
        &self,
        id: &str,
        version: u32,
        now: SystemTime,
    ) -> Option<Arc<LockedKey>> {
        let (key, loaded_at) = self.keys.get(id)?.versions.get(&version)?;
        fresh(*loaded_at, now, self.ttl).then(|| key.clone())
    }

    /// Caches a version's material, if the key's record is cached (it always is right after a
    /// lookup); evicts the oldest version when full.
    pub(crate) fn put_material(
        &mut self,
        id: &str,
        version: u32,
        key: Arc<LockedKey>,
        now: SystemTime,
    ) {
        if !self.keys.contains_key(id) {
            return;
        }
        if self.material_count >= self.capacity {
            self.evict_stale(now);
        }
        if self.material_count >= self.capacity {
            self.evict_oldest_material();
        }
        if let Some(entry) = self.keys.get_mut(id) {
            if entry.versions.insert(version, (key, now)).is_none() {
                self.material_count += 1;
            }
        }
    }

    pub(crate) fn invalidate(&mut self, id: &str) {
        if let Some(entry) = self.keys.remove(id) {
            self.material_count -= entry.versions.len();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.material_count = 0;
    }

    /// Number of unwrapped versions held.
    pub(crate) fn material_len(&self) -> usize {
        self.material_count
    }

    fn evict_stale(&mut self, now: SystemTime) {
        let ttl = self.ttl;
        let mut removed = 0;
        self.keys.retain(|_, entry| {
            let before = entry.versions.len();
            entry.versions.retain(|_, (_, at)| fresh(*at, now, ttl));
            removed += before - entry.versions.len();
            fresh(entry.loaded_at, now, ttl) || {
                removed += entry.versions.len();
                false
            }
        });
        self.material_count -= removed;
    }

    fn evict_oldest_material(&mut self) {
        let oldest = self
            .keys
            .iter()
            .flat_map(|(id, e)| {
                e.versions
                    .iter()
                    .map(move |(v, (_, at))| (*at, id.clone(), *v))
            })
            .min();
        if let Some((_, id, version)) = oldest {
            if let Some(entry) = self.keys.get_mut(&id) {
                if entry.versions.remove(&version).is_some() {
                    self.material_count -= 1;
                }
            }
        }
    }
}
