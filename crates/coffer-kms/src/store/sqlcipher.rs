//! [`KeyStore`] on an embedded SQLite database encrypted page by page with SQLCipher.
//!
//! The page key is a raw 256-bit key derived from the root key (see `crate::kms`), passed as
//! `PRAGMA key = "x'…'"` so SQLCipher's own passphrase KDF is skipped. The schema version is
//! SQLite's `user_version`; [`MIGRATIONS`] brings an older file up to date.
//!
//! One connection behind an async mutex serves every call; each method is one SQLite
//! transaction (writes `BEGIN IMMEDIATE`, so a writer in another process makes it wait for
//! SQLite's lock or fail, never interleave). SQLite calls block, so inside a Tokio runtime
//! each method runs on the blocking pool (`spawn_blocking`); outside one it runs on the
//! calling thread. The connection is locked before the work is handed over and the guard
//! goes with it, so calls run in the order they took the lock, and a call whose future is
//! dropped after that still completes before any later call reads.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use coffer_format::SecretKey;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use super::{
    decode_grant_record, decode_key_record, encode_grant_record, encode_key_record, GrantRecord,
    KeyRecord, KeyStore, RotationType, VersionRecord,
};
use crate::error::{KmsError, Result};

/// Schema migrations; `MIGRATIONS[i]` moves `user_version` from `i` to `i + 1`. Append only.
pub const MIGRATIONS: &[&str] = &[
    // 1: keys, versions, aliases.
    "CREATE TABLE keys (
        id TEXT PRIMARY KEY NOT NULL,
        record TEXT NOT NULL
    );
    CREATE TABLE key_versions (
        key_id TEXT NOT NULL REFERENCES keys(id),
        version INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        rotation_type TEXT,
        material BLOB NOT NULL,
        PRIMARY KEY (key_id, version)
    );
    CREATE TABLE aliases (
        name TEXT PRIMARY KEY NOT NULL,
        key_id TEXT NOT NULL REFERENCES keys(id)
    );",
    // 2: key policies and grants (the KMS API's authorization data).
    "CREATE TABLE IF NOT EXISTS key_policies (
        key_id TEXT PRIMARY KEY NOT NULL REFERENCES keys(id),
        policy TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS grants (
        grant_id TEXT PRIMARY KEY NOT NULL,
        key_id TEXT NOT NULL REFERENCES keys(id),
        token_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS grants_by_key ON grants (key_id, created_at, grant_id);",
];

/// The schema version this code writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// A SQLCipher-encrypted key store file.
pub struct SqlCipherStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqlCipherStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlCipherStore").finish_non_exhaustive()
    }
}

fn constraint_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// An insert's error: a constraint violation means `what` exists already.
fn exists_or(e: rusqlite::Error, what: impl FnOnce() -> String) -> KmsError {
    if constraint_violation(&e) {
        KmsError::AlreadyExists(what())
    } else {
        e.into()
    }
}

fn rotation_type_str(t: Option<RotationType>) -> Option<&'static str> {
    t.map(|t| match t {
        RotationType::Automatic => "AUTOMATIC",
        RotationType::OnDemand => "ON_DEMAND",
    })
}

fn parse_rotation_type(s: Option<String>) -> Result<Option<RotationType>> {
    match s.as_deref() {
        None => Ok(None),
        Some("AUTOMATIC") => Ok(Some(RotationType::Automatic)),
        Some("ON_DEMAND") => Ok(Some(RotationType::OnDemand)),
        Some(other) => Err(KmsError::Store(format!("unknown rotation type {other}"))),
    }
}

impl SqlCipherStore {
    /// Opens (creating if absent) the store at `path`, keyed with `page_key`, and migrates it
    /// to [`SCHEMA_VERSION`]. A wrong key or a file that is not a Coffer store fails with
    /// [`KmsError::Store`] and leaves the file untouched.
    pub fn open(path: &Path, page_key: &SecretKey) -> Result<Self> {
        let conn = Connection::open(path)?;
        let pragma = Zeroizing::new(format!(
            "PRAGMA key = \"x'{}'\";",
            hex::encode(page_key.expose())
        ));
        conn.execute_batch(&pragma)?;
        // The first read decrypts page 1: this is where a wrong key shows.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|_| {
            KmsError::Store(format!(
                "cannot read key store {}: wrong root key or not a Coffer key store",
                path.display()
            ))
        })?;
        // secure_delete: freed pages are overwritten, so destroyed material does not linger.
        conn.execute_batch(
            "PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON; PRAGMA journal_mode = DELETE;",
        )?;
        let mut conn = conn;
        migrate(&mut conn)?;
        Ok(SqlCipherStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The file's schema version.
    pub async fn schema_version(&self) -> Result<u32> {
        self.run(|conn| schema_version(conn)).await
    }

    /// Runs `work` with the connection, locked first (in call order): on Tokio's blocking
    /// pool when inside a runtime, else on this thread. A transaction interrupted by a panic
    /// is rolled back when it drops, so the connection stays consistent.
    async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let mut conn = Arc::clone(&self.conn).lock_owned().await;
        let job = move || work(&mut conn);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(job)
                .await
                .map_err(|e| KmsError::Store(format!("key store worker: {e}")))?,
            Err(_) => job(),
        }
    }
}

fn schema_version(conn: &Connection) -> Result<u32> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let current = schema_version(conn)?;
    if current > SCHEMA_VERSION {
        return Err(KmsError::Store(format!(
            "key store schema {current} is newer than this build ({SCHEMA_VERSION})"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
        tx.commit()?;
    }
    Ok(())
}

/// A write transaction: `BEGIN IMMEDIATE` takes SQLite's write lock up front, so a
/// transaction that reads before it writes cannot be overtaken by another process.
fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

fn key_exists(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM keys WHERE id = ?1", [id], |_| Ok(()))
        .optional()?
        .is_some())
}

fn insert_version(conn: &Connection, v: &VersionRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO key_versions (key_id, version, created_at, rotation_type, material)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            v.key_id,
            v.version,
            v.created_at as i64,
            rotation_type_str(v.rotation_type),
            v.wrapped_material
        ],
    )
    .map_err(|e| exists_or(e, || format!("version {} of key {}", v.version, v.key_id)))?;
    Ok(())
}

fn update_record(conn: &Connection, key: &KeyRecord) -> Result<()> {
    let n = conn.execute(
        "UPDATE keys SET record = ?2 WHERE id = ?1",
        params![key.id, encode_key_record(key)?],
    )?;
    if n == 0 {
        return Err(KmsError::NotFound(format!("key {}", key.id)));
    }
    Ok(())
}

fn version_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(VersionRecord, Option<String>)> {
    Ok((
        VersionRecord {
            key_id: row.get(0)?,
            version: row.get(1)?,
            created_at: row.get::<_, i64>(2)?.max(0) as u64,
            rotation_type: None,
            wrapped_material: row.get(4)?,
        },
        row.get(3)?,
    ))
}

#[async_trait]
impl KeyStore for SqlCipherStore {
    async fn create_key(
        &self,
        key: &KeyRecord,
        first_version: Option<&VersionRecord>,
    ) -> Result<()> {
        let stored = encode_key_record(key)?;
        let id = key.id.clone();
        let first_version = first_version.cloned();
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            tx.execute(
                "INSERT INTO keys (id, record) VALUES (?1, ?2)",
                params![id, stored],
            )
            .map_err(|e| exists_or(e, || format!("key {id}")))?;
            if let Some(v) = &first_version {
                insert_version(&tx, v)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn key(&self, id: &str) -> Result<Option<KeyRecord>> {
        let id = id.to_owned();
        self.run(move |conn| {
            let stored: Option<String> = conn
                .query_row("SELECT record FROM keys WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            stored.as_deref().map(decode_key_record).transpose()
        })
        .await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        self.run(|conn| {
            let mut stmt = conn.prepare("SELECT record FROM keys ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for stored in rows {
                out.push(decode_key_record(&stored?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn update_key(&self, key: &KeyRecord) -> Result<()> {
        let key = key.clone();
        self.run(move |conn| update_record(conn, &key)).await
    }

    async fn add_version(&self, key: &KeyRecord, version: &VersionRecord) -> Result<()> {
        let (key, version) = (key.clone(), version.clone());
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            update_record(&tx, &key)?;
            insert_version(&tx, &version)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn version(&self, key_id: &str, version: u32) -> Result<Option<VersionRecord>> {
        let key_id = key_id.to_owned();
        self.run(move |conn| {
            let row = conn
                .query_row(
                    "SELECT key_id, version, created_at, rotation_type, material
                     FROM key_versions WHERE key_id = ?1 AND version = ?2",
                    params![key_id, version],
                    version_from_row,
                )
                .optional()?;
            row.map(|(mut v, t)| {
                v.rotation_type = parse_rotation_type(t)?;
                Ok(v)
            })
            .transpose()
        })
        .await
    }

    async fn versions(&self, key_id: &str) -> Result<Vec<VersionRecord>> {
        let key_id = key_id.to_owned();
        self.run(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT key_id, version, created_at, rotation_type, material
                 FROM key_versions WHERE key_id = ?1 ORDER BY version",
            )?;
            let rows = stmt.query_map([key_id], version_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                let (mut v, t) = row?;
                v.rotation_type = parse_rotation_type(t)?;
                out.push(v);
            }
            Ok(out)
        })
        .await
    }

    async fn destroy_material(&self, key: &KeyRecord) -> Result<()> {
        let key = key.clone();
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            update_record(&tx, &key)?;
            tx.execute("DELETE FROM key_versions WHERE key_id = ?1", [&key.id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_key(&self, key_id: &str) -> Result<()> {
        let key_id = key_id.to_owned();
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            if !key_exists(&tx, &key_id)? {
                return Err(KmsError::NotFound(format!("key {key_id}")));
            }
            for sql in [
                "DELETE FROM key_versions WHERE key_id = ?1",
                "DELETE FROM aliases WHERE key_id = ?1",
                "DELETE FROM key_policies WHERE key_id = ?1",
                "DELETE FROM grants WHERE key_id = ?1",
                "DELETE FROM keys WHERE id = ?1",
            ] {
                tx.execute(sql, [&key_id])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn put_alias(&self, alias: &str, key_id: &str, replace: bool) -> Result<()> {
        let (alias, key_id) = (alias.to_owned(), key_id.to_owned());
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            if !key_exists(&tx, &key_id)? {
                return Err(KmsError::NotFound(format!("key {key_id}")));
            }
            if replace {
                let n = tx.execute(
                    "UPDATE aliases SET key_id = ?2 WHERE name = ?1",
                    params![alias, key_id],
                )?;
                if n == 0 {
                    return Err(KmsError::NotFound(format!("alias {alias}")));
                }
            } else {
                tx.execute(
                    "INSERT INTO aliases (name, key_id) VALUES (?1, ?2)",
                    params![alias, key_id],
                )
                .map_err(|e| exists_or(e, || format!("alias {alias}")))?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn alias(&self, alias: &str) -> Result<Option<String>> {
        let alias = alias.to_owned();
        self.run(move |conn| {
            Ok(conn
                .query_row("SELECT key_id FROM aliases WHERE name = ?1", [alias], |r| {
                    r.get(0)
                })
                .optional()?)
        })
        .await
    }

    async fn delete_alias(&self, alias: &str) -> Result<()> {
        let alias = alias.to_owned();
        self.run(move |conn| {
            let n = conn.execute("DELETE FROM aliases WHERE name = ?1", [&alias])?;
            if n == 0 {
                return Err(KmsError::NotFound(format!("alias {alias}")));
            }
            Ok(())
        })
        .await
    }

    async fn list_aliases(&self) -> Result<Vec<(String, String)>> {
        self.run(|conn| {
            let mut stmt = conn.prepare("SELECT name, key_id FROM aliases ORDER BY name")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn key_policy(&self, key_id: &str) -> Result<Option<String>> {
        let key_id = key_id.to_owned();
        self.run(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT policy FROM key_policies WHERE key_id = ?1",
                    [key_id],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn put_key_policy(&self, key_id: &str, policy: &str) -> Result<()> {
        let (key_id, policy) = (key_id.to_owned(), policy.to_owned());
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            if !key_exists(&tx, &key_id)? {
                return Err(KmsError::NotFound(format!("key {key_id}")));
            }
            tx.execute(
                "INSERT INTO key_policies (key_id, policy) VALUES (?1, ?2)
                 ON CONFLICT (key_id) DO UPDATE SET policy = excluded.policy",
                params![key_id, policy],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn put_grant(&self, grant: &GrantRecord) -> Result<()> {
        let stored = encode_grant_record(grant)?;
        let grant = grant.clone();
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            if !key_exists(&tx, &grant.key_id)? {
                return Err(KmsError::NotFound(format!("key {}", grant.key_id)));
            }
            tx.execute(
                "INSERT INTO grants (grant_id, key_id, token_hash, created_at, record)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    grant.grant_id,
                    grant.key_id,
                    grant.token_hash,
                    grant.created_at as i64,
                    stored
                ],
            )
            .map_err(|e| exists_or(e, || format!("grant {}", grant.grant_id)))?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn grants(&self, key_id: &str) -> Result<Vec<GrantRecord>> {
        let key_id = key_id.to_owned();
        self.run(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT record FROM grants WHERE key_id = ?1 ORDER BY created_at, grant_id",
            )?;
            let rows = stmt.query_map([key_id], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for stored in rows {
                out.push(decode_grant_record(&stored?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn grant_by_token_hash(&self, token_hash: &str) -> Result<Option<GrantRecord>> {
        let token_hash = token_hash.to_owned();
        self.run(move |conn| {
            let stored: Option<String> = conn
                .query_row(
                    "SELECT record FROM grants WHERE token_hash = ?1",
                    [token_hash],
                    |r| r.get(0),
                )
                .optional()?;
            stored.as_deref().map(decode_grant_record).transpose()
        })
        .await
    }

    async fn delete_grant(&self, key_id: &str, grant_id: &str) -> Result<()> {
        let (key_id, grant_id) = (key_id.to_owned(), grant_id.to_owned());
        self.run(move |conn| {
            let n = conn.execute(
                "DELETE FROM grants WHERE key_id = ?1 AND grant_id = ?2",
                params![key_id, grant_id],
            )?;
            if n == 0 {
                return Err(KmsError::NotFound(format!("grant {grant_id}")));
            }
            Ok(())
        })
        .await
    }
}
