//! Key-file and passphrase sealers: round trips, clear failures that change nothing, and
//! moving between sealers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use coffer_kms::{Kms, KmsConfig, SealedRoot, Sealer};
use common::{ctx, files, passphrase_sealer, Env};

#[tokio::test]
async fn key_file_sealer_round_trips_and_creates_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let kms = env.open().await;
    assert!(kms.warnings().iter().any(|w| w.contains("development")));
    let key = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    let blob = common::encrypt(&kms, &key.key_id, b"hello", &ctx(&[]))
        .await
        .unwrap()
        .ciphertext_blob;
    drop(kms);
    let mode = std::fs::metadata(env.key_file().path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::read(env.key_file().path()).unwrap().len(), 32);
    let kms = env.open().await;
    assert!(common::decrypt(&kms, &blob, &ctx(&[]), None)
        .await
        .unwrap()
        .plaintext
        .ct_eq(b"hello"));
}

#[tokio::test]
async fn missing_or_wrong_key_file_fails_clearly_and_changes_nothing() {
    let env = Env::new();
    drop(env.open().await);
    let before = files(&env.data_dir());
    let moved = env.dir.path().join("elsewhere.key");
    std::fs::rename(env.key_file().path(), &moved).unwrap();
    let err = Kms::builder(KmsConfig::new(env.data_dir()), &env.key_file())
        .clock(env.clock.clone())
        .open()
        .await
        .unwrap_err();
    assert_eq!(err.aws_code(), "KMSInternalException");
    assert!(
        err.to_string().contains("cannot read root key file"),
        "{err}"
    );
    assert!(
        !env.key_file().path().exists(),
        "a missing key file is not silently recreated"
    );
    std::fs::write(env.key_file().path(), [9u8; 32]).unwrap();
    let err = Kms::builder(KmsConfig::new(env.data_dir()), &env.key_file())
        .clock(env.clock.clone())
        .open()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not unseal"), "{err}");
    assert_eq!(
        files(&env.data_dir()),
        before,
        "failed opens changed nothing"
    );
}

#[tokio::test]
async fn passphrase_sealer_round_trips_and_rejects_a_wrong_passphrase() {
    let env = Env::new();
    let kms = env
        .open_with_passphrase("correct horse battery staple")
        .await
        .unwrap();
    assert!(kms.warnings().is_empty() || !kms.warnings()[0].contains("development"));
    let key = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    let blob = common::encrypt(&kms, &key.key_id, b"hello", &ctx(&[]))
        .await
        .unwrap()
        .ciphertext_blob;
    drop(kms);
    // Parameters are stored with the sealed key.
    let sealed = SealedRoot::read(&env.data_dir().join("root.sealed")).unwrap();
    assert_eq!(sealed.sealer, "passphrase");
    assert_eq!(sealed.params["argon2"]["m_kib"], 64);
    assert_eq!(sealed.params["kdf"], "argon2id-v19");

    let before = files(&env.data_dir());
    let err = env.open_with_passphrase("wrong horse").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot unseal the root key: wrong passphrase"
    );
    assert_eq!(
        files(&env.data_dir()),
        before,
        "a wrong passphrase changed nothing"
    );
    // The key-file sealer cannot open a passphrase-sealed directory either.
    let err = Kms::builder(KmsConfig::new(env.data_dir()), &env.key_file())
        .clock(env.clock.clone())
        .open()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("sealed with the passphrase sealer"),
        "{err}"
    );
    assert_eq!(files(&env.data_dir()), before);

    let kms = env
        .open_with_passphrase("correct horse battery staple")
        .await
        .unwrap();
    assert!(common::decrypt(&kms, &blob, &ctx(&[]), None)
        .await
        .unwrap()
        .plaintext
        .ct_eq(b"hello"));
}

#[tokio::test]
async fn default_argon2_parameters_are_strong() {
    let p = coffer_kms::Argon2Params::default();
    assert!(p.m_kib >= 64 * 1024 && p.t >= 3);
}

#[tokio::test]
async fn reseal_moves_between_sealers_without_touching_the_store() {
    let env = Env::new();
    let kms = env.open().await;
    let key = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    let blob = common::encrypt(&kms, &key.key_id, b"hello", &ctx(&[]))
        .await
        .unwrap()
        .ciphertext_blob;
    let root_id = kms.root_key_id().to_owned();
    drop(kms);
    let store_before = std::fs::read(env.data_dir().join("keystore.db")).unwrap();

    let pass = passphrase_sealer("new passphrase");
    Kms::reseal(&env.data_dir(), &env.key_file(), &pass).unwrap();
    assert_eq!(
        std::fs::read(env.data_dir().join("keystore.db")).unwrap(),
        store_before
    );
    assert!(env.open_with_passphrase("new passphrase").await.is_ok());
    assert!(
        Kms::builder(KmsConfig::new(env.data_dir()), &env.key_file())
            .clock(env.clock.clone())
            .open()
            .await
            .is_err()
    );
    // Resealing with the wrong "from" secret fails and keeps the old sealed file.
    let sealed_before = std::fs::read(env.data_dir().join("root.sealed")).unwrap();
    assert!(Kms::reseal(&env.data_dir(), &passphrase_sealer("nope"), &env.key_file()).is_err());
    assert_eq!(
        std::fs::read(env.data_dir().join("root.sealed")).unwrap(),
        sealed_before
    );

    // And back to a (new) key file.
    std::fs::remove_file(env.key_file().path()).unwrap();
    Kms::reseal(&env.data_dir(), &pass, &env.key_file()).unwrap();
    let kms = env.open().await;
    assert_eq!(
        kms.root_key_id(),
        root_id,
        "the root key itself never changed"
    );
    assert!(common::decrypt(&kms, &blob, &ctx(&[]), None)
        .await
        .unwrap()
        .plaintext
        .ct_eq(b"hello"));
    assert_eq!(env.key_file().name(), "key-file");
}

#[tokio::test]
async fn no_key_bytes_in_the_data_directory() {
    let env = Env::new();
    let kms = env.open_with_passphrase("scan me").await.unwrap();
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    let c = ctx(&[("bucket", "b")]);
    for i in 0..5 {
        let key = kms
            .create_key("user/alice", &format!("key {i}"), BTreeMap::new())
            .await
            .unwrap();
        kms.rotate_key_on_demand(&key.key_id).await.unwrap();
        let dk = common::generate_data_key(&kms, &key.key_id, &c)
            .await
            .unwrap();
        secrets.push((format!("data key {i}"), dk.plaintext.expose().to_vec()));
    }
    drop(kms);
    // The root key itself (recovered here through the sealer, as an operator could).
    let sealed = SealedRoot::read(&env.data_dir().join("root.sealed")).unwrap();
    let root = passphrase_sealer("scan me").unseal(&sealed).unwrap();
    secrets.push(("root key".into(), root.expose().to_vec()));
    for (what, secret) in &secrets {
        common::assert_absent(&env.data_dir(), secret, what);
    }
}
