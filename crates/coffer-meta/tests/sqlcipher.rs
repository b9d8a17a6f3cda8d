//! The SQLCipher store passes both conformance suites, needs its page key, refuses damage
//! and unknown versions, and opens databases written by the server before this crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use coffer_format::SecretKey;
use coffer_meta::conformance::{self, Harness, Stores};
use coffer_meta::{
    IdentityStore, MetaError, MetaStore, Precondition, SqlCipherStore, SCHEMA_VERSION,
};
use rusqlite::Connection;

struct SqlCipherHarness {
    dir: tempfile::TempDir,
    key: SecretKey,
    count: usize,
}

impl SqlCipherHarness {
    fn new() -> SqlCipherHarness {
        SqlCipherHarness {
            dir: tempfile::tempdir().unwrap(),
            key: SecretKey::generate().unwrap(),
            count: 0,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join(format!("server-{}.db", self.count))
    }

    fn open(&self) -> Stores {
        let store = Arc::new(SqlCipherStore::open(&self.path(), &self.key).unwrap());
        Stores {
            meta: store.clone(),
            identity: store,
        }
    }
}

impl Harness for SqlCipherHarness {
    fn fresh(&mut self) -> Stores {
        self.count += 1;
        self.open()
    }

    fn reopen(&mut self) -> Option<Stores> {
        Some(self.open())
    }

    fn stored_records(&mut self) -> Vec<String> {
        let conn = raw_connection(&self.path(), &self.key);
        let mut out = Vec::new();
        for sql in [
            "SELECT encryption FROM buckets WHERE encryption IS NOT NULL",
            "SELECT record FROM objects",
            "SELECT record FROM uploads",
            "SELECT record FROM parts",
        ] {
            let mut stmt = conn.prepare(sql).unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
            out.extend(rows.map(Result::unwrap));
        }
        out
    }
}

/// A plain rusqlite connection to the file, keyed as the store keys it.
fn raw_connection(path: &Path, key: &SecretKey) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA key = \"x'{}'\";",
        hex::encode(key.expose())
    ))
    .unwrap();
    conn
}

#[tokio::test]
async fn sqlcipher_store_passes_the_meta_suite() {
    conformance::run_meta(&mut SqlCipherHarness::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn sqlcipher_store_passes_the_identity_suite() {
    conformance::run_identity(&mut SqlCipherHarness::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_page_key_is_required_and_the_file_is_opaque() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.db");
    let key = SecretKey::generate().unwrap();
    {
        let store = SqlCipherStore::open(&path, &key).unwrap();
        store
            .create_bucket("recognisable-bucket-name", 1, "root")
            .await
            .unwrap();
        store
            .put_object(
                "recognisable-bucket-name",
                "k",
                &conformance::sample_object("k"),
                &Precondition::NONE,
            )
            .await
            .unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() >= 4096, "the database was written");
    assert_ne!(&bytes[..16], b"SQLite format 3\0", "no plain SQLite header");
    for plain in [&b"recognisable-bucket-name"[..], b"text/plain", b"etag-k"] {
        assert!(
            !bytes.windows(plain.len()).any(|w| w == plain),
            "{:?} appears in the file",
            String::from_utf8_lossy(plain)
        );
    }
    let wrong = SecretKey::generate().unwrap();
    match SqlCipherStore::open(&path, &wrong) {
        Err(MetaError::KeyRejected(msg)) => assert!(msg.contains("wrong key"), "{msg}"),
        Err(e) => panic!("a wrong key must be KeyRejected, got {e:?}"),
        Ok(_) => panic!("a wrong key must not open the database"),
    }
    let store = SqlCipherStore::open(&path, &key).unwrap();
    assert!(
        store
            .bucket_exists("recognisable-bucket-name")
            .await
            .unwrap(),
        "the right key still opens it after a refused attempt"
    );
}

#[tokio::test]
async fn damage_and_unknown_versions_are_refused_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();

    let path = dir.path().join("future-schema.db");
    drop(SqlCipherStore::open(&path, &key).unwrap());
    raw_connection(&path, &key)
        .execute("UPDATE schema SET version = ?1", [SCHEMA_VERSION + 1])
        .unwrap();
    assert!(
        matches!(SqlCipherStore::open(&path, &key), Err(MetaError::Corrupt(m)) if m.contains("schema version")),
        "an unknown schema version is refused"
    );

    let path = dir.path().join("future-record.db");
    let store = SqlCipherStore::open(&path, &key).unwrap();
    store.create_bucket("b", 1, "root").await.unwrap();
    raw_connection(&path, &key)
        .execute_batch(
            "INSERT INTO objects (bucket, key, record) VALUES ('b', 'future', '{\"v\":99}');
             INSERT INTO objects (bucket, key, record) VALUES ('b', 'garbage', 'not json');",
        )
        .unwrap();
    for key in ["future", "garbage"] {
        assert!(
            matches!(store.object("b", key).await, Err(MetaError::Corrupt(_))),
            "record {key} must read as Corrupt"
        );
        assert!(
            matches!(
                store
                    .delete_object(
                        "b",
                        key,
                        &coffer_meta::DeleteRequest {
                            version_id: None,
                            marker_version: "m",
                            now: 0,
                            bypass_governance: false
                        }
                    )
                    .await,
                Err(MetaError::Corrupt(_))
            ),
            "deleting unreadable record {key} reports it"
        );
    }
    assert!(
        matches!(store.referenced_blobs().await, Err(MetaError::Corrupt(_))),
        "the blob sweep refuses to run over an unreadable record (it could delete live blobs)"
    );
    drop(store);

    let path = dir.path().join("damaged.db");
    let store = SqlCipherStore::open(&path, &key).unwrap();
    store.create_bucket("b", 1, "root").await.unwrap();
    drop(store);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert!(
        matches!(SqlCipherStore::open(&path, &key), Err(MetaError::Corrupt(m)) if m.contains("integrity")),
        "a damaged page stops the open"
    );
}

/// The schema and rows exactly as coffer-server's meta.rs wrote them before this crate
/// existed (schema version 1, records without "v", credentials without identity rows).
const OLD_SCHEMA: &str = "PRAGMA journal_mode = WAL;
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
     CREATE TABLE IF NOT EXISTS bucket_policies (bucket TEXT PRIMARY KEY, document TEXT NOT NULL);
     INSERT INTO schema (version) VALUES (1);";

const OLD_OBJECT: &str = r#"{"version_id":"v1","size":5,"etag":"5d41402abc4b2a76b9719d911017c592","last_modified":1700000000000,"headers":{"content_type":"text/plain","content_encoding":null,"content_disposition":null,"content_language":null,"cache_control":null,"expires":null,"website_redirect_location":null,"user_metadata":{"a":"b"}},"checksums":{"crc32c":"abc="},"sse":{"mode":"AES256"},"bucket_key_enabled":false,"segments":[{"blob":"old-blob","version":"v1","part_number":1,"plain_len":5,"blob_len":60,"header_len":40,"etag":"5d41402abc4b2a76b9719d911017c592"}]}"#;
const OLD_UPLOAD: &str = r#"{"bucket":"legacy","key":"big","initiated":1700000000000,"headers":{"content_type":null,"content_encoding":null,"content_disposition":null,"content_language":null,"cache_control":null,"expires":null,"website_redirect_location":null,"user_metadata":{}},"sse":{"mode":"aws:kms","key_arn":"arn:k","context":{"aws:s3:arn":"arn:aws:s3:::legacy/big"}},"bucket_key_enabled":true,"checksum_algorithm":null}"#;
const OLD_PART: &str = r#"{"segment":{"blob":"old-part","version":"u1","part_number":1,"plain_len":5,"blob_len":60,"header_len":40,"etag":"e"},"last_modified":1700000000000,"checksums":{}}"#;
const OLD_ENCRYPTION: &str =
    r#"{"algorithm":"aws:kms","kms_key_id":"alias/old","bucket_key_enabled":true}"#;

#[tokio::test]
async fn databases_written_by_the_old_server_code_open_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.db");
    let key = SecretKey::generate().unwrap();
    {
        let conn = raw_connection(&path, &key);
        conn.execute_batch(OLD_SCHEMA).unwrap();
        conn.execute(
            "INSERT INTO buckets (name, created, encryption) VALUES ('legacy', 42, ?1)",
            [OLD_ENCRYPTION],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO objects (bucket, key, record) VALUES ('legacy', 'hello', ?1)",
            [OLD_OBJECT],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO uploads (upload_id, bucket, key, record) VALUES ('u1', 'legacy', 'big', ?1)",
            [OLD_UPLOAD],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO parts (upload_id, part_number, record) VALUES ('u1', 1, ?1)",
            [OLD_PART],
        )
        .unwrap();
        conn.execute_batch(
            "INSERT INTO credentials (access_key, secret, name) VALUES ('ROOTKEY', 'root-secret', 'root');
             INSERT INTO credentials (access_key, secret, name) VALUES ('CAROLKEY', 'carol-secret', 'carol');",
        )
        .unwrap();
    }
    let store = SqlCipherStore::open(&path, &key).unwrap();
    let object = store.object("legacy", "hello").await.unwrap().unwrap();
    assert_eq!(object.etag, "5d41402abc4b2a76b9719d911017c592");
    assert_eq!(object.headers.user_metadata["a"], "b");
    assert_eq!(object.segments[0].blob, "old-blob");
    assert_eq!(
        store
            .bucket_encryption("legacy")
            .await
            .unwrap()
            .unwrap()
            .kms_key_id
            .as_deref(),
        Some("alias/old")
    );
    assert!(
        store
            .upload("u1")
            .await
            .unwrap()
            .unwrap()
            .bucket_key_enabled
    );
    let blobs = store.referenced_blobs().await.unwrap();
    assert!(
        blobs.contains("old-blob") && blobs.contains("old-part"),
        "{blobs:?}"
    );
    assert_eq!(
        store.create_bucket("legacy", 1, "carol").await,
        Err(MetaError::BucketAlreadyExists {
            owner: "root".into()
        }),
        "a bucket from before ownership belongs to root"
    );
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.identities["root"].kind, "root", "root adopted as root");
    assert_eq!(
        snap.identities["carol"].kind, "user",
        "others adopted as users"
    );
    assert_eq!(snap.access_keys["ROOTKEY"].secret.expose(), "root-secret");
    // Old records stay readable after a new write beside them; the new one carries "v".
    store
        .put_object(
            "legacy",
            "new",
            &conformance::sample_object("n"),
            &Precondition::NONE,
        )
        .await
        .unwrap();
    let stored: String = raw_connection(&path, &key)
        .query_row("SELECT record FROM objects WHERE key = 'new'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(coffer_meta::record::stored_version(&stored), Some(1));
    assert_eq!(
        store
            .put_object(
                "legacy",
                "hello",
                &conformance::sample_object("h"),
                &Precondition::NONE
            )
            .await
            .unwrap()
            .replaced
            .into_iter()
            .map(|o| o.version_id)
            .collect::<Vec<_>>(),
        ["v1"],
        "replacing an old record returns it decoded"
    );
    drop(store);
    let version: i64 = raw_connection(&path, &key)
        .query_row("SELECT version FROM schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        version, SCHEMA_VERSION,
        "a version-1 database is upgraded at open"
    );
    let store = SqlCipherStore::open(&path, &key).unwrap();
    store
        .set_bucket_config(
            "legacy",
            coffer_meta::BucketConfig::Versioning,
            Some("Enabled"),
        )
        .await
        .unwrap();
    store
        .put_object(
            "legacy",
            "hello",
            &conformance::sample_object("h2"),
            &Precondition::NONE,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .list_versions("legacy", "hello", "", "", 10)
            .await
            .unwrap()
            .len(),
        2,
        "the upgraded database keeps versions"
    );
}

#[test]
fn the_store_works_outside_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let store = SqlCipherStore::open(&dir.path().join("s.db"), &key).unwrap();
    let created = block_on(store.create_bucket("b", 1, "root"));
    assert_eq!(created, Ok(()));
    assert!(block_on(store.bucket_exists("b")).unwrap());
}

/// Polls a future to completion on this thread (no Tokio runtime exists here).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}
