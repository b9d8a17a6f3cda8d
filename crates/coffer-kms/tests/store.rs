//! The SQLCipher key store passes the KeyStore conformance suite and is opaque on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use coffer_format::SecretKey;
use coffer_kms::store::conformance::{self, Harness};
use coffer_kms::store::sqlcipher::{SqlCipherStore, SCHEMA_VERSION};
use coffer_kms::store::KeyStore;

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
    fn fresh(&mut self) -> Box<dyn KeyStore> {
        self.count += 1;
        Box::new(SqlCipherStore::open(&self.path(), &self.key).unwrap())
    }

    fn reopen(&mut self) -> Box<dyn KeyStore> {
        Box::new(SqlCipherStore::open(&self.path(), &self.key).unwrap())
    }
}

#[test]
fn sqlcipher_store_passes_the_conformance_suite() {
    let mut harness = SqlCipherHarness {
        dir: tempfile::tempdir().unwrap(),
        key: SecretKey::generate().unwrap(),
        count: 0,
    };
    conformance::run(&mut harness).unwrap();
}

#[test]
fn store_file_is_not_plain_sqlite_and_needs_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let key = SecretKey::generate().unwrap();
    {
        let mut store = SqlCipherStore::open(&path, &key).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        store
            .create_key(&conformance::sample_key("recognisable-key-id"), None)
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
    assert!(store.key("recognisable-key-id").unwrap().is_some());
}
