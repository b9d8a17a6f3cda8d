//! [`SqlCipherStore`]: both traits on one SQLite database encrypted page by page with
//! SQLCipher (the server's `server.db`).
//!
//! The page key is a raw 256-bit key from the caller (the server derives it from the KMS
//! root key), passed as `PRAGMA key = "x'…'"` so SQLCipher's passphrase KDF is skipped.
//! Opening checks every page's HMAC before anything is trusted.
//!
//! Versioning: the `schema` table holds the layout version of the tables and their columns
//! ([`SCHEMA_VERSION`]; an unknown version is refused at open), and every JSON record
//! column carries its own `"v"` marker ([`crate::record`]). The schema is the one the
//! server has always written, so existing data directories open unchanged.
//!
//! SQLite calls block, so inside a Tokio runtime each method runs on the blocking pool
//! (`spawn_blocking`); outside one it runs on the calling thread.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use coffer_format::SecretKey;
use rusqlite::{
    params, Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior,
};
use zeroize::Zeroizing;

use crate::error::{MetaError, MetaResult};
use crate::identity::{
    AccessKey, IdentityRecord, IdentitySnapshot, IdentityStore, SecretAccessKey,
};
use crate::meta::{
    BucketConfig, DeleteRequest, Deleted, MetaStore, ObjectUpdate, Precondition, VersionEntry,
    Versioning, Written,
};
use crate::record::{
    decode, encode, BucketEncryption, BucketInfo, ObjectRecord, PartRecord, UploadRecord,
};
use crate::versions::{self, History};

/// The layout version of the tables. 1: the server's schema from the start; 2 adds
/// `versions` (older object versions and delete markers) and `bucket_config` (bucket
/// sub-resources). A version-1 database is upgraded at open (the new tables are created,
/// nothing else changes); code that knows only version 1 refuses a version-2 database.
pub const SCHEMA_VERSION: i64 = 2;

/// The tables of [`SCHEMA_VERSION`]; the first eleven are exactly schema version 1's. Every
/// statement is idempotent.
pub const SCHEMA_SQL: &str = "
    CREATE TABLE IF NOT EXISTS schema (version INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS credentials (access_key TEXT PRIMARY KEY, secret TEXT NOT NULL, name TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, created INTEGER NOT NULL, encryption TEXT);
    CREATE TABLE IF NOT EXISTS objects (bucket TEXT NOT NULL REFERENCES buckets(name), key TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (bucket, key)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS uploads (upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL REFERENCES buckets(name), key TEXT NOT NULL, record TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key, upload_id);
    CREATE TABLE IF NOT EXISTS parts (upload_id TEXT NOT NULL REFERENCES uploads(upload_id) ON DELETE CASCADE, part_number INTEGER NOT NULL, record TEXT NOT NULL, PRIMARY KEY (upload_id, part_number)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS identities (name TEXT PRIMARY KEY, kind TEXT NOT NULL, enabled INTEGER NOT NULL, created INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS identity_policies (identity TEXT NOT NULL, policy_name TEXT NOT NULL, document TEXT NOT NULL, PRIMARY KEY (identity, policy_name)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS bucket_owners (bucket TEXT PRIMARY KEY, owner TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS bucket_policies (bucket TEXT PRIMARY KEY, document TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS versions (bucket TEXT NOT NULL REFERENCES buckets(name), key TEXT NOT NULL, seq INTEGER NOT NULL, vid TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (bucket, key, seq)) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS versions_by_id ON versions (bucket, key, vid);
    CREATE TABLE IF NOT EXISTS bucket_config (bucket TEXT NOT NULL REFERENCES buckets(name), kind TEXT NOT NULL, document TEXT NOT NULL, PRIMARY KEY (bucket, kind)) WITHOUT ROWID;";

/// A SQLCipher metadata database implementing [`MetaStore`] and [`IdentityStore`].
pub struct SqlCipherStore {
    conn: Arc<Mutex<Connection>>,
}

fn db_err(e: rusqlite::Error) -> MetaError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.code {
            ErrorCode::DiskFull => return MetaError::StorageFull,
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                return MetaError::Corrupt(format!("metadata database: {e}"))
            }
            _ => {}
        }
    }
    MetaError::Backend(format!("metadata database: {e}"))
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn write_tx(conn: &mut Connection) -> MetaResult<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)
}

fn bucket_exists(conn: &Connection, name: &str) -> MetaResult<bool> {
    let found: Option<i64> = conn
        .query_row("SELECT 1 FROM buckets WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db_err)?;
    Ok(found.is_some())
}

fn stored_object(conn: &Connection, bucket: &str, key: &str) -> MetaResult<Option<ObjectRecord>> {
    let stored: Option<String> = conn
        .query_row(
            "SELECT record FROM objects WHERE bucket = ?1 AND key = ?2",
            params![bucket, key],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?;
    stored.as_deref().map(decode).transpose()
}

fn stored_parts(conn: &Connection, upload_id: &str) -> MetaResult<BTreeMap<u32, PartRecord>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT part_number, record FROM parts WHERE upload_id = ?1 ORDER BY part_number",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([upload_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(db_err)?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (n, stored) = row.map_err(db_err)?;
        let n = u32::try_from(n)
            .map_err(|_| MetaError::Corrupt(format!("part number {n} out of range")))?;
        out.insert(n, decode(&stored)?);
    }
    Ok(out)
}

/// Every value of one TEXT column of a query with no parameters.
fn strings(conn: &Connection, sql: &str) -> MetaResult<Vec<String>> {
    let mut stmt = conn.prepare(sql).map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

/// One key's history (crate::versions) over a connection inside a write transaction.
struct SqlHistory<'c> {
    conn: &'c Connection,
    bucket: &'c str,
    key: &'c str,
}

fn config_document(
    conn: &Connection,
    bucket: &str,
    kind: BucketConfig,
) -> MetaResult<Option<String>> {
    conn.query_row(
        "SELECT document FROM bucket_config WHERE bucket = ?1 AND kind = ?2",
        params![bucket, kind.as_str()],
        |r| r.get(0),
    )
    .optional()
    .map_err(db_err)
}

fn older_row(row: Option<(i64, String)>) -> MetaResult<Option<(i64, ObjectRecord)>> {
    row.map(|(seq, stored)| Ok((seq, decode(&stored)?)))
        .transpose()
}

impl History for SqlHistory<'_> {
    fn versioning(&mut self) -> MetaResult<Versioning> {
        Versioning::from_document(
            config_document(self.conn, self.bucket, BucketConfig::Versioning)?.as_deref(),
        )
    }

    fn current(&mut self) -> MetaResult<Option<ObjectRecord>> {
        stored_object(self.conn, self.bucket, self.key)
    }

    fn set_current(&mut self, record: Option<&ObjectRecord>) -> MetaResult<()> {
        match record {
            Some(r) => self.conn.execute(
                "INSERT OR REPLACE INTO objects (bucket, key, record) VALUES (?1, ?2, ?3)",
                params![self.bucket, self.key, encode(r)?],
            ),
            None => self.conn.execute(
                "DELETE FROM objects WHERE bucket = ?1 AND key = ?2",
                params![self.bucket, self.key],
            ),
        }
        .map_err(db_err)?;
        Ok(())
    }

    fn newest_older(&mut self) -> MetaResult<Option<(i64, ObjectRecord)>> {
        older_row(
            self.conn
                .query_row(
                    "SELECT seq, record FROM versions WHERE bucket = ?1 AND key = ?2 ORDER BY seq DESC LIMIT 1",
                    params![self.bucket, self.key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_err)?,
        )
    }

    fn find_older(&mut self, s3_version_id: &str) -> MetaResult<Option<(i64, ObjectRecord)>> {
        older_row(
            self.conn
                .query_row(
                    "SELECT seq, record FROM versions WHERE bucket = ?1 AND key = ?2 AND vid = ?3",
                    params![self.bucket, self.key, s3_version_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_err)?,
        )
    }

    fn push_older(&mut self, record: &ObjectRecord) -> MetaResult<()> {
        self.conn
            .execute(
                "INSERT INTO versions (bucket, key, seq, vid, record) VALUES (?1, ?2,
                 (SELECT COALESCE(MAX(seq), 0) + 1 FROM versions WHERE bucket = ?1 AND key = ?2), ?3, ?4)",
                params![self.bucket, self.key, record.s3_version_id(), encode(record)?],
            )
            .map_err(db_err)?;
        Ok(())
    }

    fn replace_older(&mut self, seq: i64, record: &ObjectRecord) -> MetaResult<()> {
        self.conn
            .execute(
                "UPDATE versions SET vid = ?4, record = ?5 WHERE bucket = ?1 AND key = ?2 AND seq = ?3",
                params![self.bucket, self.key, seq, record.s3_version_id(), encode(record)?],
            )
            .map_err(db_err)?;
        Ok(())
    }

    fn remove_older(&mut self, seq: i64) -> MetaResult<()> {
        self.conn
            .execute(
                "DELETE FROM versions WHERE bucket = ?1 AND key = ?2 AND seq = ?3",
                params![self.bucket, self.key, seq],
            )
            .map_err(db_err)?;
        Ok(())
    }
}

impl SqlCipherStore {
    /// Opens (creating if needed) the database at `path`, keyed with `page_key`.
    ///
    /// [`MetaError::KeyRejected`] if the file cannot be read with this key (wrong key, or
    /// not a Coffer database); [`MetaError::Corrupt`] if a page fails its integrity check or
    /// the schema version is unknown. A database from before identities existed gets an
    /// identity row for every access key's owner (`root` of kind `root`, others `user`).
    pub fn open(path: &Path, page_key: &SecretKey) -> MetaResult<SqlCipherStore> {
        let conn = Connection::open(path).map_err(db_err)?;
        let pragma = Zeroizing::new(format!(
            "PRAGMA key = \"x'{}'\";",
            hex::encode(page_key.expose())
        ));
        conn.execute_batch(&pragma).map_err(db_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .and_then(|()| conn.execute_batch(SCHEMA_SQL))
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::NotADatabase => {
                MetaError::KeyRejected(format!(
                    "{} cannot be opened with this key (wrong key, or not a Coffer database)",
                    path.display()
                ))
            }
            e => db_err(e),
        })?;
        // Every page's HMAC, before anything is trusted: damage anywhere in the file (even in
        // pages no request would read) stops the open with a clear message.
        let problems = strings(&conn, "PRAGMA cipher_integrity_check")?;
        if !problems.is_empty() {
            return Err(MetaError::Corrupt(format!(
                "{} failed its integrity check ({} damaged page(s): {}); restore it from a backup",
                path.display(),
                problems.len(),
                problems
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        let version: Option<i64> = conn
            .query_row("SELECT version FROM schema", [], |r| r.get(0))
            .optional()
            .map_err(db_err)?;
        match version {
            None => {
                conn.execute("INSERT INTO schema (version) VALUES (?1)", [SCHEMA_VERSION])
                    .map_err(db_err)?;
            }
            Some(SCHEMA_VERSION) => {}
            // The new tables were created above by SCHEMA_SQL.
            Some(1) => {
                conn.execute("UPDATE schema SET version = ?1", [SCHEMA_VERSION])
                    .map_err(db_err)?;
            }
            Some(v) => {
                return Err(MetaError::Corrupt(format!(
                    "metadata schema version {v} is not supported (expected {SCHEMA_VERSION})"
                )))
            }
        }
        // Data directories from before identities existed: each key's owner becomes one.
        conn.execute(
            "INSERT OR IGNORE INTO identities (name, kind, enabled, created)
             SELECT DISTINCT name, CASE name WHEN 'root' THEN 'root' ELSE 'user' END, 1, ?1
             FROM credentials",
            [now_ms()],
        )
        .map_err(db_err)?;
        Ok(SqlCipherStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `work` with the connection: on Tokio's blocking pool when inside a runtime, else
    /// on this thread.
    async fn run<T, F>(&self, work: F) -> MetaResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> MetaResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let job = move || {
            // A transaction interrupted by a panic was rolled back when it dropped, so the
            // connection behind a poisoned lock is still consistent.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut conn)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(job)
                .await
                .map_err(|e| MetaError::Backend(format!("metadata worker: {e}")))?,
            Err(_) => job(),
        }
    }
}

#[async_trait]
impl MetaStore for SqlCipherStore {
    async fn create_bucket(&self, name: &str, created: i64, owner: &str) -> MetaResult<()> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO buckets (name, created) VALUES (?1, ?2)",
                    params![name, created],
                )
                .map_err(db_err)?;
            if n == 0 {
                let owner: Option<String> = tx
                    .query_row(
                        "SELECT owner FROM bucket_owners WHERE bucket = ?1",
                        [&name],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_err)?;
                return Err(MetaError::BucketAlreadyExists {
                    owner: owner.unwrap_or_else(|| "root".to_owned()),
                });
            }
            tx.execute(
                "INSERT OR REPLACE INTO bucket_owners (bucket, owner) VALUES (?1, ?2)",
                params![name, owner],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn bucket_exists(&self, name: &str) -> MetaResult<bool> {
        let name = name.to_owned();
        self.run(move |conn| bucket_exists(conn, &name)).await
    }

    async fn list_buckets(&self) -> MetaResult<Vec<BucketInfo>> {
        self.run(|conn| {
            let mut stmt = conn
                .prepare("SELECT name, created FROM buckets ORDER BY name")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(BucketInfo {
                        name: r.get(0)?,
                        created: r.get(1)?,
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn delete_bucket(&self, name: &str) -> MetaResult<Vec<PartRecord>> {
        let name = name.to_owned();
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            if !bucket_exists(&tx, &name)? {
                return Err(MetaError::NoSuchBucket);
            }
            let used: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM objects WHERE bucket = ?1 UNION ALL SELECT 1 FROM versions WHERE bucket = ?1 LIMIT 1",
                    [&name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            if used.is_some() {
                return Err(MetaError::BucketNotEmpty);
            }
            let uploads: Vec<String> = {
                let mut stmt = tx
                    .prepare("SELECT upload_id FROM uploads WHERE bucket = ?1 ORDER BY upload_id")
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map([&name], |r| r.get(0))
                    .map_err(db_err)?
                    .collect::<Result<_, _>>()
                    .map_err(db_err)?;
                rows
            };
            let mut parts = Vec::new();
            for id in &uploads {
                parts.extend(stored_parts(&tx, id)?.into_values());
            }
            for sql in [
                // Their parts go with them (ON DELETE CASCADE).
                "DELETE FROM uploads WHERE bucket = ?1",
                "DELETE FROM bucket_config WHERE bucket = ?1",
                "DELETE FROM buckets WHERE name = ?1",
                "DELETE FROM bucket_owners WHERE bucket = ?1",
                "DELETE FROM bucket_policies WHERE bucket = ?1",
            ] {
                tx.execute(sql, [&name]).map_err(db_err)?;
            }
            tx.commit().map_err(db_err)?;
            Ok(parts)
        })
        .await
    }

    async fn bucket_encryption(&self, name: &str) -> MetaResult<Option<BucketEncryption>> {
        let name = name.to_owned();
        self.run(move |conn| {
            let stored: Option<Option<String>> = conn
                .query_row(
                    "SELECT encryption FROM buckets WHERE name = ?1",
                    [&name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            match stored {
                None => Err(MetaError::NoSuchBucket),
                Some(None) => Ok(None),
                Some(Some(stored)) => decode(&stored).map(Some),
            }
        })
        .await
    }

    async fn set_bucket_encryption(
        &self,
        name: &str,
        encryption: Option<&BucketEncryption>,
    ) -> MetaResult<()> {
        let name = name.to_owned();
        let encoded = encryption.map(encode).transpose()?;
        self.run(move |conn| {
            let n = conn
                .execute(
                    "UPDATE buckets SET encryption = ?2 WHERE name = ?1",
                    params![name, encoded],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(MetaError::NoSuchBucket);
            }
            Ok(())
        })
        .await
    }

    async fn object(&self, bucket: &str, key: &str) -> MetaResult<Option<ObjectRecord>> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.run(move |conn| stored_object(conn, &bucket, &key))
            .await
    }

    async fn bucket_config(&self, bucket: &str, kind: BucketConfig) -> MetaResult<Option<String>> {
        let bucket = bucket.to_owned();
        self.run(move |conn| {
            if !bucket_exists(conn, &bucket)? {
                return Err(MetaError::NoSuchBucket);
            }
            config_document(conn, &bucket, kind)
        })
        .await
    }

    async fn set_bucket_config(
        &self,
        bucket: &str,
        kind: BucketConfig,
        document: Option<&str>,
    ) -> MetaResult<()> {
        let (bucket, document) = (bucket.to_owned(), document.map(str::to_owned));
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            if !bucket_exists(&tx, &bucket)? {
                return Err(MetaError::NoSuchBucket);
            }
            match document {
                Some(d) => tx.execute(
                    "INSERT OR REPLACE INTO bucket_config (bucket, kind, document) VALUES (?1, ?2, ?3)",
                    params![bucket, kind.as_str(), d],
                ),
                None => tx.execute(
                    "DELETE FROM bucket_config WHERE bucket = ?1 AND kind = ?2",
                    params![bucket, kind.as_str()],
                ),
            }
            .map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        condition: &Precondition,
    ) -> MetaResult<Written> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let (record, condition) = (record.clone(), condition.clone());
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            if !bucket_exists(&tx, &bucket)? {
                return Err(MetaError::NoSuchBucket);
            }
            let written = versions::put(
                &mut SqlHistory {
                    conn: &tx,
                    bucket: &bucket,
                    key: &key,
                },
                &record,
                &condition,
            )?;
            tx.commit().map_err(db_err)?;
            Ok(written)
        })
        .await
    }

    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        request: &DeleteRequest<'_>,
    ) -> MetaResult<Deleted> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let version_id = request.version_id.map(str::to_owned);
        let marker_version = request.marker_version.to_owned();
        let (now, bypass_governance) = (request.now, request.bypass_governance);
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            if !bucket_exists(&tx, &bucket)? {
                return Ok(Deleted::default());
            }
            // Records are decoded before anything changes: a corrupt one is reported and
            // left in place.
            let deleted = versions::delete(
                &mut SqlHistory {
                    conn: &tx,
                    bucket: &bucket,
                    key: &key,
                },
                &DeleteRequest {
                    version_id: version_id.as_deref(),
                    marker_version: &marker_version,
                    now,
                    bypass_governance,
                },
            )?;
            tx.commit().map_err(db_err)?;
            Ok(deleted)
        })
        .await
    }

    async fn object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> MetaResult<Option<ObjectRecord>> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let version_id = version_id.map(str::to_owned);
        self.run(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            versions::get(
                &mut SqlHistory {
                    conn: &tx,
                    bucket: &bucket,
                    key: &key,
                },
                version_id.as_deref(),
            )
        })
        .await
    }

    async fn update_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        update: &ObjectUpdate,
    ) -> MetaResult<ObjectRecord> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let (version_id, update) = (version_id.map(str::to_owned), update.clone());
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            if !bucket_exists(&tx, &bucket)? {
                return Err(MetaError::NoSuchBucket);
            }
            let record = versions::update(
                &mut SqlHistory {
                    conn: &tx,
                    bucket: &bucket,
                    key: &key,
                },
                version_id.as_deref(),
                &update,
            )?;
            tx.commit().map_err(db_err)?;
            Ok(record)
        })
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
        let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
        let (key_marker, version_marker) = (key_marker.to_owned(), version_marker.to_owned());
        self.run(move |conn| {
            let tx = conn.transaction().map_err(db_err)?;
            let mut page = Vec::new();
            // The first key: the key marker itself when resuming inside it.
            let (mut from, mut op) = if !version_marker.is_empty() {
                (key_marker.clone(), ">=")
            } else if key_marker >= prefix {
                (key_marker.clone(), ">")
            } else {
                (prefix.clone(), ">=")
            };
            if from < prefix {
                (from, op) = (prefix.clone(), ">=");
            }
            'keys: while page.len() < limit {
                let keys: Vec<String> = {
                    let mut stmt = tx
                        .prepare_cached(&format!(
                            "SELECT key FROM objects WHERE bucket = ?1 AND key {op} ?2
                             UNION SELECT key FROM versions WHERE bucket = ?1 AND key {op} ?2
                             ORDER BY key LIMIT 100"
                        ))
                        .map_err(db_err)?;
                    let rows = stmt
                        .query_map(params![bucket, from], |r| r.get(0))
                        .map_err(db_err)?
                        .collect::<Result<_, _>>()
                        .map_err(db_err)?;
                    rows
                };
                let n = keys.len();
                for key in keys {
                    if !key.starts_with(prefix.as_str()) {
                        break 'keys;
                    }
                    let current = stored_object(&tx, &bucket, &key)?;
                    let mut older = Vec::new();
                    {
                        let mut stmt = tx
                            .prepare_cached(
                                "SELECT record FROM versions WHERE bucket = ?1 AND key = ?2 ORDER BY seq DESC",
                            )
                            .map_err(db_err)?;
                        let rows = stmt
                            .query_map(params![bucket, key], |r| r.get::<_, String>(0))
                            .map_err(db_err)?;
                        for row in rows {
                            older.push(decode(&row.map_err(db_err)?)?);
                        }
                    }
                    let skip = (key == key_marker && !version_marker.is_empty())
                        .then_some(version_marker.as_str());
                    let entries = versions::key_entries(&key, current, older);
                    versions::take_after(&mut page, entries, skip, limit);
                    if page.len() >= limit {
                        break 'keys;
                    }
                    from = key;
                    op = ">";
                }
                if n < 100 {
                    break;
                }
            }
            Ok(page)
        })
        .await
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> MetaResult<Vec<(String, ObjectRecord)>> {
        let (bucket, prefix, after) = (bucket.to_owned(), prefix.to_owned(), after.to_owned());
        self.run(move |conn| {
            // Keys >= prefix in binary order; stop at the first key that does not start
            // with it.
            let (start, op) = if after >= prefix {
                (&after, ">")
            } else {
                (&prefix, ">=")
            };
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT key, record FROM objects WHERE bucket = ?1 AND key {op} ?2 ORDER BY key LIMIT ?3"
                ))
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![bucket, start, sql_limit(limit)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (key, stored) = row.map_err(db_err)?;
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                out.push((key, decode(&stored)?));
            }
            Ok(out)
        })
        .await
    }

    async fn referenced_blobs(&self) -> MetaResult<HashSet<String>> {
        self.run(|conn| {
            let mut out = HashSet::new();
            for stored in strings(
                conn,
                "SELECT record FROM objects UNION ALL SELECT record FROM versions",
            )? {
                let record: ObjectRecord = decode(&stored)?;
                out.extend(record.segments.into_iter().map(|s| s.blob));
            }
            for stored in strings(conn, "SELECT record FROM parts")? {
                let part: PartRecord = decode(&stored)?;
                out.insert(part.segment.blob);
            }
            Ok(out)
        })
        .await
    }

    async fn create_upload(&self, upload_id: &str, record: &UploadRecord) -> MetaResult<()> {
        let upload_id = upload_id.to_owned();
        let (bucket, key) = (record.bucket.clone(), record.key.clone());
        let encoded = encode(record)?;
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            if !bucket_exists(&tx, &bucket)? {
                return Err(MetaError::NoSuchBucket);
            }
            tx.execute(
                "INSERT INTO uploads (upload_id, bucket, key, record) VALUES (?1, ?2, ?3, ?4)",
                params![upload_id, bucket, key, encoded],
            )
            .map_err(|e| {
                if is_constraint(&e) {
                    MetaError::AlreadyExists(format!("upload {upload_id}"))
                } else {
                    db_err(e)
                }
            })?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn upload(&self, upload_id: &str) -> MetaResult<Option<UploadRecord>> {
        let upload_id = upload_id.to_owned();
        self.run(move |conn| {
            let stored: Option<String> = conn
                .query_row(
                    "SELECT record FROM uploads WHERE upload_id = ?1",
                    [&upload_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            stored.as_deref().map(decode).transpose()
        })
        .await
    }

    async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: &str,
        upload_id_marker: &str,
        limit: usize,
    ) -> MetaResult<Vec<(String, UploadRecord)>> {
        let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
        let (key_marker, upload_id_marker) = (key_marker.to_owned(), upload_id_marker.to_owned());
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT upload_id, key, record FROM uploads WHERE bucket = ?1 AND (key > ?2 OR (key = ?2 AND upload_id > ?3)) ORDER BY key, upload_id",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![bucket, key_marker, upload_id_marker], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                if out.len() >= limit {
                    break;
                }
                let (id, key, stored) = row.map_err(db_err)?;
                if key.starts_with(prefix.as_str()) {
                    out.push((id, decode(&stored)?));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn put_part(
        &self,
        upload_id: &str,
        part_number: u32,
        record: &PartRecord,
    ) -> MetaResult<Option<PartRecord>> {
        let upload_id = upload_id.to_owned();
        let encoded = encode(record)?;
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM uploads WHERE upload_id = ?1",
                    [&upload_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            if exists.is_none() {
                return Err(MetaError::NoSuchUpload);
            }
            let old: Option<String> = tx
                .query_row(
                    "SELECT record FROM parts WHERE upload_id = ?1 AND part_number = ?2",
                    params![upload_id, part_number],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            let old: Option<PartRecord> = old.as_deref().map(decode).transpose()?;
            tx.execute(
                "INSERT OR REPLACE INTO parts (upload_id, part_number, record) VALUES (?1, ?2, ?3)",
                params![upload_id, part_number, encoded],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(old)
        })
        .await
    }

    async fn list_parts(&self, upload_id: &str) -> MetaResult<BTreeMap<u32, PartRecord>> {
        let upload_id = upload_id.to_owned();
        self.run(move |conn| stored_parts(conn, &upload_id)).await
    }

    async fn delete_upload(&self, upload_id: &str) -> MetaResult<Vec<PartRecord>> {
        let upload_id = upload_id.to_owned();
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            let parts = stored_parts(&tx, &upload_id)?;
            // The parts go with it (ON DELETE CASCADE).
            let n = tx
                .execute("DELETE FROM uploads WHERE upload_id = ?1", [&upload_id])
                .map_err(db_err)?;
            if n == 0 {
                return Err(MetaError::NoSuchUpload);
            }
            tx.commit().map_err(db_err)?;
            Ok(parts.into_values().collect())
        })
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
        let (upload_id, bucket, key) = (upload_id.to_owned(), bucket.to_owned(), key.to_owned());
        let (record, condition) = (record.clone(), condition.clone());
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            let n = tx
                .execute(
                    "DELETE FROM uploads WHERE upload_id = ?1 AND bucket = ?2 AND key = ?3",
                    params![upload_id, bucket, key],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(MetaError::NoSuchUpload);
            }
            let written = versions::put(
                &mut SqlHistory {
                    conn: &tx,
                    bucket: &bucket,
                    key: &key,
                },
                &record,
                &condition,
            )?;
            tx.commit().map_err(db_err)?;
            Ok(written)
        })
        .await
    }
}

fn identity_exists(conn: &Connection, name: &str) -> MetaResult<bool> {
    let found: Option<i64> = conn
        .query_row("SELECT 1 FROM identities WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db_err)?;
    Ok(found.is_some())
}

fn insert_access_key(tx: &Transaction<'_>, key: (&str, &str, &str)) -> MetaResult<()> {
    let (access_key, secret, identity) = key;
    tx.execute(
        "INSERT INTO credentials (access_key, secret, name) VALUES (?1, ?2, ?3)",
        params![access_key, secret, identity],
    )
    .map_err(|e| {
        if is_constraint(&e) {
            MetaError::AlreadyExists(format!("access key {access_key}"))
        } else {
            db_err(e)
        }
    })?;
    Ok(())
}

#[async_trait]
impl IdentityStore for SqlCipherStore {
    async fn snapshot(&self) -> MetaResult<IdentitySnapshot> {
        self.run(|conn| {
            // One read transaction: every table as of the same moment.
            let tx = conn.transaction().map_err(db_err)?;
            let mut s = IdentitySnapshot::default();
            let mut st = tx
                .prepare("SELECT access_key, secret, name FROM credentials")
                .map_err(db_err)?;
            let rows = st
                .query_map([], |r| {
                    Ok(AccessKey {
                        access_key: r.get(0)?,
                        secret: SecretAccessKey::new(Zeroizing::new(r.get(1)?)),
                        identity: r.get(2)?,
                    })
                })
                .map_err(db_err)?;
            for row in rows {
                let key = row.map_err(db_err)?;
                s.access_keys.insert(key.access_key.clone(), key);
            }
            drop(st);
            let mut st = tx
                .prepare("SELECT name, kind, enabled, created FROM identities")
                .map_err(db_err)?;
            let rows = st
                .query_map([], |r| {
                    Ok(IdentityRecord {
                        name: r.get(0)?,
                        kind: r.get(1)?,
                        enabled: r.get::<_, i64>(2)? != 0,
                        created: r.get(3)?,
                    })
                })
                .map_err(db_err)?;
            for row in rows {
                let identity = row.map_err(db_err)?;
                s.identities.insert(identity.name.clone(), identity);
            }
            drop(st);
            let mut st = tx
                .prepare("SELECT identity, policy_name, document FROM identity_policies")
                .map_err(db_err)?;
            let rows = st
                .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
                .map_err(db_err)?;
            s.identity_policies = rows.collect::<Result<_, _>>().map_err(db_err)?;
            drop(st);
            for (sql, map) in [
                (
                    "SELECT bucket, owner FROM bucket_owners",
                    &mut s.bucket_owners,
                ),
                (
                    "SELECT bucket, document FROM bucket_policies",
                    &mut s.bucket_policies,
                ),
            ] {
                let mut st = tx.prepare(sql).map_err(db_err)?;
                let rows = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(db_err)?;
                *map = rows.collect::<Result<_, _>>().map_err(db_err)?;
            }
            Ok(s)
        })
        .await
    }

    async fn create_identity(&self, identity: &IdentityRecord) -> MetaResult<()> {
        let identity = identity.clone();
        self.run(move |conn| {
            let n = conn
                .execute(
                    "INSERT OR IGNORE INTO identities (name, kind, enabled, created) VALUES (?1, ?2, ?3, ?4)",
                    params![
                        identity.name,
                        identity.kind,
                        i64::from(identity.enabled),
                        identity.created
                    ],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(MetaError::AlreadyExists(format!("identity {}", identity.name)));
            }
            Ok(())
        })
        .await
    }

    async fn set_identity_enabled(&self, name: &str, enabled: bool) -> MetaResult<()> {
        let name = name.to_owned();
        self.run(move |conn| {
            let n = conn
                .execute(
                    "UPDATE identities SET enabled = ?2 WHERE name = ?1",
                    params![name, i64::from(enabled)],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(MetaError::NoSuchIdentity(name));
            }
            Ok(())
        })
        .await
    }

    async fn delete_identity(&self, name: &str) -> MetaResult<()> {
        let name = name.to_owned();
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            if !identity_exists(&tx, &name)? {
                return Err(MetaError::NoSuchIdentity(name));
            }
            let owned: Option<String> = tx
                .query_row(
                    "SELECT bucket FROM bucket_owners WHERE owner = ?1 ORDER BY bucket LIMIT 1",
                    [&name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            if let Some(bucket) = owned {
                return Err(MetaError::IdentityOwnsBucket { bucket });
            }
            for sql in [
                "DELETE FROM credentials WHERE name = ?1",
                "DELETE FROM identity_policies WHERE identity = ?1",
                "DELETE FROM identities WHERE name = ?1",
            ] {
                tx.execute(sql, [&name]).map_err(db_err)?;
            }
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn put_access_key(&self, key: &AccessKey) -> MetaResult<()> {
        let key = key.duplicate();
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            if !identity_exists(&tx, &key.identity)? {
                return Err(MetaError::NoSuchIdentity(key.identity.clone()));
            }
            insert_access_key(&tx, (&key.access_key, key.secret.expose(), &key.identity))?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn delete_access_key(&self, identity: &str, access_key: &str) -> MetaResult<()> {
        let (identity, access_key) = (identity.to_owned(), access_key.to_owned());
        self.run(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM credentials WHERE access_key = ?1 AND name = ?2",
                    params![access_key, identity],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(MetaError::NoSuchAccessKey);
            }
            Ok(())
        })
        .await
    }

    async fn replace_access_key(&self, old_access_key: &str, new: &AccessKey) -> MetaResult<()> {
        let old_access_key = old_access_key.to_owned();
        let new = new.duplicate();
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            let n = tx
                .execute(
                    "DELETE FROM credentials WHERE access_key = ?1 AND name = ?2",
                    params![old_access_key, new.identity],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(MetaError::NoSuchAccessKey);
            }
            insert_access_key(&tx, (&new.access_key, new.secret.expose(), &new.identity))?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn put_identity_policy(
        &self,
        identity: &str,
        policy_name: &str,
        document: &str,
    ) -> MetaResult<()> {
        let (identity, policy_name, document) = (
            identity.to_owned(),
            policy_name.to_owned(),
            document.to_owned(),
        );
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            if !identity_exists(&tx, &identity)? {
                return Err(MetaError::NoSuchIdentity(identity));
            }
            tx.execute(
                "INSERT OR REPLACE INTO identity_policies (identity, policy_name, document) VALUES (?1, ?2, ?3)",
                params![identity, policy_name, document],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn delete_identity_policy(&self, identity: &str, policy_name: &str) -> MetaResult<()> {
        let (identity, policy_name) = (identity.to_owned(), policy_name.to_owned());
        self.run(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM identity_policies WHERE identity = ?1 AND policy_name = ?2",
                    params![identity, policy_name],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(MetaError::NoSuchPolicy);
            }
            Ok(())
        })
        .await
    }

    async fn put_bucket_policy(&self, bucket: &str, document: &str) -> MetaResult<()> {
        let (bucket, document) = (bucket.to_owned(), document.to_owned());
        self.run(move |conn| {
            let tx = write_tx(conn)?;
            if !bucket_exists(&tx, &bucket)? {
                return Err(MetaError::NoSuchBucket);
            }
            tx.execute(
                "INSERT OR REPLACE INTO bucket_policies (bucket, document) VALUES (?1, ?2)",
                params![bucket, document],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn delete_bucket_policy(&self, bucket: &str) -> MetaResult<()> {
        let bucket = bucket.to_owned();
        self.run(move |conn| {
            conn.execute("DELETE FROM bucket_policies WHERE bucket = ?1", [&bucket])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }
}
