//! Both key stores pass the KeyStore conformance suite; the SQLCipher one is opaque on disk
//! and refuses records of an unknown version; a KMS runs over either.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use coffer_format::SecretKey;
use coffer_kms::store::conformance::{self, Harness};
use coffer_kms::store::memory::MemoryKeyStore;
use coffer_kms::store::sqlcipher::{SqlCipherStore, SCHEMA_VERSION};
use coffer_kms::store::KeyStore;
use coffer_kms::{Kms, KmsConfig};
use common::{ctx, decrypt, encrypt, Env};

struct SqlCipherHarness {
    dir: tempfile::TempDir,
    key: SecretKey,
    count: usize,
}

impl SqlCipherHarness {
    fn path(&self) -> PathBuf {
        self.dir.path().join(format!("store-{}.db", self.count))
    }
}

impl Harness for SqlCipherHarness {
    fn fresh(&mut self) -> Arc<dyn KeyStore> {
        self.count += 1;
        Arc::new(SqlCipherStore::open(&self.path(), &self.key).unwrap())
    }

    fn reopen(&mut self) -> Option<Arc<dyn KeyStore>> {
        Some(Arc::new(
            SqlCipherStore::open(&self.path(), &self.key).unwrap(),
        ))
    }

    fn stored_records(&mut self) -> Vec<String> {
        let conn = raw_connection(&self.path(), &self.key);
        let mut out = Vec::new();
        for sql in ["SELECT record FROM keys", "SELECT record FROM grants"] {
            let mut stmt = conn.prepare(sql).unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
            out.extend(rows.map(Result::unwrap));
        }
        out
    }
}

/// A plain rusqlite connection to the file, keyed as the store keys it.
fn raw_connection(path: &Path, key: &SecretKey) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA key = \"x'{}'\";",
        hex::encode(key.expose())
    ))
    .unwrap();
    conn
}

#[derive(Default)]
struct MemoryHarness {
    current: Option<Arc<MemoryKeyStore>>,
}

impl Harness for MemoryHarness {
    fn fresh(&mut self) -> Arc<dyn KeyStore> {
        let store = Arc::new(MemoryKeyStore::new());
        self.current = Some(Arc::clone(&store));
        store
    }

    fn reopen(&mut self) -> Option<Arc<dyn KeyStore>> {
        None
    }

    fn stored_records(&mut self) -> Vec<String> {
        self.current.as_ref().unwrap().encoded_records()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlcipher_store_passes_the_conformance_suite() {
    let mut harness = SqlCipherHarness {
        dir: tempfile::tempdir().unwrap(),
        key: SecretKey::generate().unwrap(),
        count: 0,
    };
    conformance::run(&mut harness).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_conformance_suite() {
    conformance::run(&mut MemoryHarness::default())
        .await
        .unwrap();
}

/// Outside a Tokio runtime the SQLCipher store works on the calling thread.
#[test]
fn sqlcipher_store_works_without_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SqlCipherStore::open(&dir.path().join("k.db"), &SecretKey::generate().unwrap()).unwrap();
    let key = conformance::sample_key("k");
    futures::executor::block_on(store.create_key(&key, None)).unwrap();
    assert_eq!(
        futures::executor::block_on(store.key("k")).unwrap(),
        Some(key)
    );
}

#[tokio::test]
async fn stored_records_of_an_unknown_version_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let key = SecretKey::generate().unwrap();
    let store = SqlCipherStore::open(&path, &key).unwrap();
    store
        .create_key(&conformance::sample_key("k"), None)
        .await
        .unwrap();
    store
        .put_grant(&conformance::sample_grant("k", "g", 1))
        .await
        .unwrap();
    let conn = raw_connection(&path, &key);
    for table in ["keys", "grants"] {
        conn.execute(
            &format!(
                "UPDATE {table} SET record = replace(record, '\"record_version\":1', '\"record_version\":99')"
            ),
            [],
        )
        .unwrap();
    }
    drop(conn);
    let err = store.key("k").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("unsupported key record version 99"),
        "{err}"
    );
    let err = store.grants("k").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("unsupported grant record version 99"),
        "{err}"
    );
    assert_eq!(err.aws_code(), "KMSInternalException");
}

#[tokio::test]
async fn store_file_is_not_plain_sqlite_and_needs_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let key = SecretKey::generate().unwrap();
    {
        let store = SqlCipherStore::open(&path, &key).unwrap();
        assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
        store
            .create_key(&conformance::sample_key("recognisable-key-id"), None)
            .await
            .unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() >= 4096);
    assert_ne!(
        &bytes[..16],
        b"SQLite format 3\0",
        "the header is encrypted too"
    );
    assert!(
        !bytes.windows(19).any(|w| w == b"recognisable-key-id"),
        "record contents are not visible on disk"
    );
    assert!(
        !bytes.windows(12).any(|w| w == b"CREATE TABLE"),
        "the schema is not visible"
    );

    // Plain SQLite (no key) cannot read it.
    let plain = rusqlite::Connection::open(&path).unwrap();
    assert!(plain
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r
            .get::<_, i64>(0))
        .is_err());
    drop(plain);
    // Nor can a wrong key; and the failed attempt leaves the file as it was.
    let err = SqlCipherStore::open(&path, &SecretKey::generate().unwrap()).unwrap_err();
    assert_eq!(err.aws_code(), "KMSInternalException");
    assert!(err.to_string().contains("wrong root key"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // The right key still works.
    let store = SqlCipherStore::open(&path, &key).unwrap();
    assert!(store.key("recognisable-key-id").await.unwrap().is_some());
}

/// The builder's `key_store`: a KMS over the in-memory store works end to end and writes no
/// key store file; a data directory without a sealed root is refused over a store that
/// already holds keys.
#[tokio::test]
async fn a_kms_runs_over_a_plugged_in_store() {
    let env = Env::new();
    let store = Arc::new(MemoryKeyStore::new());
    let kms = Kms::builder(KmsConfig::new(env.data_dir()), &env.key_file())
        .clock(env.clock.clone())
        .key_store(store.clone())
        .open()
        .await
        .unwrap();
    let key = kms
        .create_key("user/alice", "in memory", Default::default())
        .await
        .unwrap();
    kms.create_alias("alias/mem", &key.key_id).await.unwrap();
    let c = ctx(&[("a", "1")]);
    let ct = encrypt(&kms, "alias/mem", b"hello", &c).await.unwrap();
    kms.clear_cache();
    let pt = decrypt(&kms, &ct.ciphertext_blob, &c, None).await.unwrap();
    assert_eq!(pt.plaintext.expose(), b"hello");
    assert_eq!(
        store.list_keys().await.unwrap().len(),
        1,
        "the key is in the plugged-in store"
    );
    assert!(
        !env.data_dir()
            .join(coffer_kms::kms::KEY_STORE_FILE)
            .exists(),
        "no keystore.db is made"
    );
    drop(kms);

    // Another data directory (no sealed root) over the same, non-empty store.
    let other = Env::new();
    let err = Kms::builder(KmsConfig::new(other.data_dir()), &other.key_file())
        .key_store(store)
        .open()
        .await
        .unwrap_err();
    assert_eq!(err.aws_code(), "KMSInternalException");
    assert!(err.to_string().contains("holds keys"), "{err}");
    assert!(!other.data_dir().exists(), "nothing is written");
}
