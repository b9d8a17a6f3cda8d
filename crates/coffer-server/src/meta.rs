//! Bucket, object and multipart-upload metadata in a page-encrypted SQLite database
//! (SQLCipher, keyed with a key derived from the KMS root key).
//!
//! Every object row is a JSON [`ObjectRecord`]; the database is the commit point of a write:
//! blobs are written first (atomically, by object_store), then the row is inserted in one
//! transaction, and only then is the object visible.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use coffer_format::SecretKey;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{ServerError, ServerResult};

const SCHEMA_VERSION: i64 = 1;

/// How a segment's data key is protected (and what responses report).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "mode")]
pub enum SseRecord {
    /// SSE-S3: the data key is wrapped by the service key.
    #[serde(rename = "AES256")]
    S3,
    /// SSE-KMS: wrapped by a CMK of Coffer's KMS under `context` (which includes
    /// `aws:s3:arn`).
    #[serde(rename = "aws:kms")]
    Kms {
        key_arn: String,
        context: BTreeMap<String, String>,
    },
    /// SSE-C: wrapped by a key derived from the customer's key; only a keyed fingerprint of
    /// that key is stored.
    #[serde(rename = "SSE-C")]
    C { fingerprint: String },
}

/// One encrypted blob of an object: the whole object, or one multipart part.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Segment {
    /// Blob name under the blob store.
    pub blob: String,
    /// The C2SP context's `version` (object version id or upload id).
    pub version: String,
    pub part_number: u32,
    pub plain_len: u64,
    pub blob_len: u64,
    pub header_len: u64,
    /// MD5 of the part's plaintext, hex (the part ETag).
    pub etag: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checksums {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crc32: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crc32c: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crc64nvme: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha1: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
    /// `FULL_OBJECT` or `COMPOSITE`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kind: Option<String>,
}

/// Standard headers stored with an object.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ObjectHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    /// RFC 7231 date string, as received.
    pub expires: Option<String>,
    pub website_redirect_location: Option<String>,
    pub user_metadata: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub version_id: String,
    pub size: u64,
    /// Without quotes.
    pub etag: String,
    /// Unix milliseconds.
    pub last_modified: i64,
    pub headers: ObjectHeaders,
    pub checksums: Checksums,
    pub sse: SseRecord,
    pub bucket_key_enabled: bool,
    pub segments: Vec<Segment>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadRecord {
    pub bucket: String,
    pub key: String,
    pub initiated: i64,
    pub headers: ObjectHeaders,
    pub sse: SseRecord,
    pub bucket_key_enabled: bool,
    pub checksum_algorithm: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartRecord {
    pub segment: Segment,
    pub last_modified: i64,
    pub checksums: Checksums,
}

/// A bucket's default encryption.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BucketEncryption {
    /// `AES256` or `aws:kms`.
    pub algorithm: String,
    pub kms_key_id: Option<String>,
    pub bucket_key_enabled: bool,
}

pub struct MetaStore {
    conn: Mutex<Connection>,
}

fn db_err(e: rusqlite::Error) -> ServerError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.code == rusqlite::ErrorCode::DiskFull {
            return ServerError::S3(
                s3s::S3ErrorCode::Custom("InsufficientStorage".into()),
                "The server has no space left to record this change; existing objects are unaffected.".into(),
            );
        }
    }
    ServerError::Internal(format!("metadata database: {e}"))
}

fn json_err(e: serde_json::Error) -> ServerError {
    ServerError::Internal(format!("metadata record: {e}"))
}

impl MetaStore {
    /// Opens (creating if needed) the database at `path`, keyed with `page_key`.
    pub fn open(path: &Path, page_key: &SecretKey) -> ServerResult<MetaStore> {
        let conn = Connection::open(path).map_err(db_err)?;
        let pragma = Zeroizing::new(format!(
            "PRAGMA key = \"x'{}'\";",
            hex::encode(page_key.expose())
        ));
        conn.execute_batch(&pragma).map_err(db_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
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
             CREATE TABLE IF NOT EXISTS bucket_policies (bucket TEXT PRIMARY KEY, document TEXT NOT NULL);",
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
                ServerError::Internal(format!(
                    "{} cannot be opened with this root key (wrong key, or not a Coffer database)",
                    path.display()
                ))
            }
            e => db_err(e),
        })?;
        // Every page's HMAC, before anything is trusted: damage anywhere in the file (even in
        // pages no request would read) stops the start with a clear message.
        let problems: Vec<String> = {
            let mut stmt = conn
                .prepare("PRAGMA cipher_integrity_check")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)?
        };
        if !problems.is_empty() {
            return Err(ServerError::Internal(format!(
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
            Some(v) => {
                return Err(ServerError::Internal(format!(
                    "metadata schema version {v} is not supported (expected {SCHEMA_VERSION})"
                )))
            }
        }
        Ok(MetaStore {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- credentials ----

    pub fn credentials(&self) -> ServerResult<Vec<(String, Zeroizing<String>)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT access_key, secret FROM credentials")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Zeroizing::new(r.get::<_, String>(1)?),
                ))
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    pub fn put_credentials(&self, access_key: &str, secret: &str, name: &str) -> ServerResult<()> {
        self.conn()
            .execute(
                "INSERT INTO credentials (access_key, secret, name) VALUES (?1, ?2, ?3)",
                params![access_key, secret, name],
            )
            .map_err(db_err)?;
        Ok(())
    }

    // ---- buckets ----

    /// Creates a bucket owned by the identity `owner`; `Err(existing owner)` if it already
    /// exists.
    pub fn create_bucket(
        &self,
        name: &str,
        now: i64,
        owner: &str,
    ) -> ServerResult<Result<(), String>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        let n = tx
            .execute(
                "INSERT OR IGNORE INTO buckets (name, created) VALUES (?1, ?2)",
                params![name, now],
            )
            .map_err(db_err)?;
        if n == 0 {
            let owner: Option<String> = tx
                .query_row(
                    "SELECT owner FROM bucket_owners WHERE bucket = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            return Ok(Err(owner.unwrap_or_else(|| "root".to_owned())));
        }
        tx.execute(
            "INSERT OR REPLACE INTO bucket_owners (bucket, owner) VALUES (?1, ?2)",
            params![name, owner],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(Ok(()))
    }

    pub fn bucket_exists(&self, name: &str) -> ServerResult<bool> {
        let found: Option<i64> = self
            .conn()
            .query_row("SELECT 1 FROM buckets WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)?;
        Ok(found.is_some())
    }

    pub fn list_buckets(&self) -> ServerResult<Vec<(String, i64)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, created FROM buckets ORDER BY name")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    /// Deletes an empty bucket. Errors: NoSuchBucket, BucketNotEmpty.
    pub fn delete_bucket(&self, name: &str) -> ServerResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM buckets WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)?;
        if exists.is_none() {
            return Err(ServerError::NoSuchBucket);
        }
        let used: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM objects WHERE bucket = ?1 UNION ALL SELECT 1 FROM uploads WHERE bucket = ?1 LIMIT 1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        if used.is_some() {
            return Err(ServerError::BucketNotEmpty);
        }
        tx.execute("DELETE FROM buckets WHERE name = ?1", [name])
            .map_err(db_err)?;
        tx.execute("DELETE FROM bucket_owners WHERE bucket = ?1", [name])
            .map_err(db_err)?;
        tx.execute("DELETE FROM bucket_policies WHERE bucket = ?1", [name])
            .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    pub fn bucket_encryption(&self, name: &str) -> ServerResult<Option<BucketEncryption>> {
        let enc: Option<Option<String>> = self
            .conn()
            .query_row(
                "SELECT encryption FROM buckets WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        match enc {
            None => Err(ServerError::NoSuchBucket),
            Some(None) => Ok(None),
            Some(Some(json)) => Ok(Some(serde_json::from_str(&json).map_err(json_err)?)),
        }
    }

    pub fn set_bucket_encryption(
        &self,
        name: &str,
        enc: Option<&BucketEncryption>,
    ) -> ServerResult<()> {
        let json = enc
            .map(serde_json::to_string)
            .transpose()
            .map_err(json_err)?;
        let n = self
            .conn()
            .execute(
                "UPDATE buckets SET encryption = ?2 WHERE name = ?1",
                params![name, json],
            )
            .map_err(db_err)?;
        if n == 0 {
            return Err(ServerError::NoSuchBucket);
        }
        Ok(())
    }

    // ---- objects ----

    pub fn get_object(&self, bucket: &str, key: &str) -> ServerResult<Option<ObjectRecord>> {
        let json: Option<String> = self
            .conn()
            .query_row(
                "SELECT record FROM objects WHERE bucket = ?1 AND key = ?2",
                params![bucket, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        json.map(|j| serde_json::from_str(&j).map_err(json_err))
            .transpose()
    }

    /// Inserts or replaces an object; returns the record it replaced (whose blobs the caller
    /// deletes). `check` sees the current record first and may refuse the write (conditional
    /// PUT), atomically with it.
    pub fn put_object(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        check: impl FnOnce(Option<&ObjectRecord>) -> ServerResult<()>,
    ) -> ServerResult<Option<ObjectRecord>> {
        let json = serde_json::to_string(record).map_err(json_err)?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM buckets WHERE name = ?1", [bucket], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)?;
        if exists.is_none() {
            return Err(ServerError::NoSuchBucket);
        }
        let old: Option<String> = tx
            .query_row(
                "SELECT record FROM objects WHERE bucket = ?1 AND key = ?2",
                params![bucket, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        let old: Option<ObjectRecord> = old
            .map(|j| serde_json::from_str(&j).map_err(json_err))
            .transpose()?;
        check(old.as_ref())?;
        tx.execute(
            "INSERT OR REPLACE INTO objects (bucket, key, record) VALUES (?1, ?2, ?3)",
            params![bucket, key, json],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(old)
    }

    /// Removes an object; returns its record.
    pub fn delete_object(&self, bucket: &str, key: &str) -> ServerResult<Option<ObjectRecord>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        let old: Option<String> = tx
            .query_row(
                "SELECT record FROM objects WHERE bucket = ?1 AND key = ?2",
                params![bucket, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        tx.execute(
            "DELETE FROM objects WHERE bucket = ?1 AND key = ?2",
            params![bucket, key],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        old.map(|j| serde_json::from_str(&j).map_err(json_err))
            .transpose()
    }

    /// Up to `limit` objects with key > `after` and key starting with `prefix`, in key order.
    pub fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> ServerResult<Vec<(String, ObjectRecord)>> {
        let conn = self.conn();
        // Keys >= prefix in binary order; stop at the first key that does not start with it.
        let start = if after >= prefix { after } else { prefix };
        let op = if after >= prefix { ">" } else { ">=" };
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT key, record FROM objects WHERE bucket = ?1 AND key {op} ?2 ORDER BY key LIMIT ?3"
            ))
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![bucket, start, limit as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (key, json) = row.map_err(db_err)?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key, serde_json::from_str(&json).map_err(json_err)?));
        }
        Ok(out)
    }

    /// Every blob any object or part references (for the start-up sweep).
    pub fn referenced_blobs(&self) -> ServerResult<std::collections::HashSet<String>> {
        let conn = self.conn();
        let mut out = std::collections::HashSet::new();
        let mut stmt = conn.prepare("SELECT record FROM objects").map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db_err)?;
        for row in rows {
            let rec: ObjectRecord =
                serde_json::from_str(&row.map_err(db_err)?).map_err(json_err)?;
            out.extend(rec.segments.into_iter().map(|s| s.blob));
        }
        let mut stmt = conn.prepare("SELECT record FROM parts").map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db_err)?;
        for row in rows {
            let rec: PartRecord = serde_json::from_str(&row.map_err(db_err)?).map_err(json_err)?;
            out.insert(rec.segment.blob);
        }
        Ok(out)
    }

    // ---- multipart uploads ----

    pub fn create_upload(&self, upload_id: &str, record: &UploadRecord) -> ServerResult<()> {
        let json = serde_json::to_string(record).map_err(json_err)?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM buckets WHERE name = ?1",
                [&record.bucket],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        if exists.is_none() {
            return Err(ServerError::NoSuchBucket);
        }
        tx.execute(
            "INSERT INTO uploads (upload_id, bucket, key, record) VALUES (?1, ?2, ?3, ?4)",
            params![upload_id, record.bucket, record.key, json],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    pub fn get_upload(&self, upload_id: &str) -> ServerResult<Option<UploadRecord>> {
        let json: Option<String> = self
            .conn()
            .query_row(
                "SELECT record FROM uploads WHERE upload_id = ?1",
                [upload_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        json.map(|j| serde_json::from_str(&j).map_err(json_err))
            .transpose()
    }

    /// Uploads of a bucket in (key, upload id) order, after the given markers.
    pub fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: &str,
        upload_id_marker: &str,
        limit: usize,
    ) -> ServerResult<Vec<(String, UploadRecord)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
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
            let (id, key, json) = row.map_err(db_err)?;
            if !key.starts_with(prefix) {
                continue;
            }
            out.push((id, serde_json::from_str(&json).map_err(json_err)?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Records a part, returning the part it replaced (same number).
    pub fn put_part(
        &self,
        upload_id: &str,
        part_number: u32,
        record: &PartRecord,
    ) -> ServerResult<Option<PartRecord>> {
        let json = serde_json::to_string(record).map_err(json_err)?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM uploads WHERE upload_id = ?1",
                [upload_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        if exists.is_none() {
            return Err(ServerError::NoSuchUpload);
        }
        let old: Option<String> = tx
            .query_row(
                "SELECT record FROM parts WHERE upload_id = ?1 AND part_number = ?2",
                params![upload_id, part_number],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        tx.execute(
            "INSERT OR REPLACE INTO parts (upload_id, part_number, record) VALUES (?1, ?2, ?3)",
            params![upload_id, part_number, json],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        old.map(|j| serde_json::from_str(&j).map_err(json_err))
            .transpose()
    }

    pub fn list_parts(&self, upload_id: &str) -> ServerResult<BTreeMap<u32, PartRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT part_number, record FROM parts WHERE upload_id = ?1 ORDER BY part_number",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([upload_id], |r| {
                Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(db_err)?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (n, json) = row.map_err(db_err)?;
            out.insert(n, serde_json::from_str(&json).map_err(json_err)?);
        }
        Ok(out)
    }

    /// Removes an upload and its parts; returns the parts (whose blobs the caller deletes).
    pub fn delete_upload(&self, upload_id: &str) -> ServerResult<Vec<PartRecord>> {
        let parts = self.list_parts(upload_id)?;
        let n = self
            .conn()
            .execute("DELETE FROM uploads WHERE upload_id = ?1", [upload_id])
            .map_err(db_err)?;
        if n == 0 {
            return Err(ServerError::NoSuchUpload);
        }
        Ok(parts.into_values().collect())
    }

    /// Completes an upload: in one transaction, inserts the object and removes the upload.
    /// Returns the replaced object record, if any.
    pub fn complete_upload(
        &self,
        upload_id: &str,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        check: impl FnOnce(Option<&ObjectRecord>) -> ServerResult<()>,
    ) -> ServerResult<Option<ObjectRecord>> {
        let json = serde_json::to_string(record).map_err(json_err)?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err)?;
        let n = tx
            .execute("DELETE FROM uploads WHERE upload_id = ?1", [upload_id])
            .map_err(db_err)?;
        if n == 0 {
            return Err(ServerError::NoSuchUpload);
        }
        let old: Option<String> = tx
            .query_row(
                "SELECT record FROM objects WHERE bucket = ?1 AND key = ?2",
                params![bucket, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        let old: Option<ObjectRecord> = old
            .map(|j| serde_json::from_str(&j).map_err(json_err))
            .transpose()?;
        check(old.as_ref())?;
        tx.execute(
            "INSERT OR REPLACE INTO objects (bucket, key, record) VALUES (?1, ?2, ?3)",
            params![bucket, key, json],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(old)
    }
}
