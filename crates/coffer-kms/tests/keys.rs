//! CMK lifecycle and cryptographic operations through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use coffer_kms::{KeyState, KmsError};
use common::{ctx, Env, DAY};

fn code<T>(r: Result<T, KmsError>) -> &'static str {
    match r {
        Ok(_) => "Ok",
        Err(e) => e.aws_code(),
    }
}

#[tokio::test]
async fn create_describe_list_and_aliases() {
    let env = Env::new();
    let kms = env.open().await;
    let tags = BTreeMap::from([("team".to_owned(), "photos".to_owned())]);
    let meta = kms
        .create_key("user/alice", "photo bucket key", tags.clone())
        .await
        .unwrap();
    assert_eq!(meta.key_state, KeyState::Enabled);
    assert_eq!(meta.owner, "user/alice");
    assert_eq!(meta.tags, tags);
    assert_eq!(meta.current_version, 1);
    assert_eq!(
        meta.arn,
        format!("arn:aws:kms:us-east-1:000000000000:key/{}", meta.key_id)
    );
    assert!(uuid::Uuid::parse_str(&meta.key_id).is_ok());

    kms.create_alias("alias/photos", &meta.key_id)
        .await
        .unwrap();
    assert_eq!(
        code(kms.create_alias("alias/photos", &meta.key_id).await),
        "AlreadyExistsException"
    );
    assert_eq!(
        code(kms.create_alias("alias/aws/s3", &meta.key_id).await),
        "InvalidAliasNameException"
    );
    assert_eq!(
        code(kms.create_alias("photos", &meta.key_id).await),
        "InvalidAliasNameException"
    );
    // All four ways of naming the key reach it.
    for name in [
        meta.key_id.clone(),
        meta.arn.clone(),
        "alias/photos".to_owned(),
        "arn:aws:kms:us-east-1:000000000000:alias/photos".to_owned(),
    ] {
        assert_eq!(
            kms.describe_key(&name).await.unwrap().key_id,
            meta.key_id,
            "{name}"
        );
    }
    assert_eq!(
        code(kms.describe_key("alias/nope").await),
        "NotFoundException"
    );
    assert_eq!(
        code(kms.describe_key("not-a-uuid").await),
        "NotFoundException"
    );
    assert_eq!(
        code(kms.describe_key("arn:aws:s3:::bucket").await),
        "InvalidArnException"
    );
    assert_eq!(
        code(
            kms.describe_key(&format!(
                "arn:aws:kms:eu-west-1:000000000000:key/{}",
                meta.key_id
            ))
            .await
        ),
        "NotFoundException"
    );

    let other = kms
        .create_key("user/bob", "", BTreeMap::new())
        .await
        .unwrap();
    kms.update_alias("alias/photos", &other.key_id)
        .await
        .unwrap();
    assert_eq!(
        kms.describe_key("alias/photos").await.unwrap().key_id,
        other.key_id
    );
    assert_eq!(
        kms.list_aliases(Some(&other.key_id)).await.unwrap(),
        vec![("alias/photos".to_owned(), other.key_id.clone())]
    );
    assert!(kms
        .list_aliases(Some(&meta.key_id))
        .await
        .unwrap()
        .is_empty());
    kms.delete_alias("alias/photos").await.unwrap();
    assert_eq!(
        code(kms.delete_alias("alias/photos").await),
        "NotFoundException"
    );

    let mut ids: Vec<_> = kms
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    let mut expected = vec![meta.key_id.clone(), other.key_id.clone()];
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected);

    // Everything survives a restart.
    drop(kms);
    let kms = env.open().await;
    assert_eq!(kms.describe_key(&meta.key_id).await.unwrap(), meta);
}

#[tokio::test]
async fn encrypt_decrypt_and_data_keys_bind_the_context() {
    let env = Env::new();
    let kms = env.open().await;
    let key = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    let c = ctx(&[("bucket", "photos"), ("key", "cat.jpg")]);

    let ct = common::encrypt(&kms, &key.key_id, b"attack at dawn", &c)
        .await
        .unwrap();
    assert_eq!(ct.key_id, key.arn);
    let pt = common::decrypt(&kms, &ct.ciphertext_blob, &c, None)
        .await
        .unwrap();
    assert!(pt.plaintext.ct_eq(b"attack at dawn"));
    assert_eq!(pt.key_id, key.arn);
    // Naming the right key works, naming another fails.
    assert!(
        common::decrypt(&kms, &ct.ciphertext_blob, &c, Some(&key.arn))
            .await
            .is_ok()
    );
    let other = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        code(common::decrypt(&kms, &ct.ciphertext_blob, &c, Some(&other.key_id)).await),
        "IncorrectKeyException"
    );
    // Wrong or missing context.
    assert_eq!(
        code(
            common::decrypt(
                &kms,
                &ct.ciphertext_blob,
                &ctx(&[("bucket", "photos"), ("key", "dog.jpg")]),
                None
            )
            .await
        ),
        "InvalidCiphertextException"
    );
    assert_eq!(
        code(common::decrypt(&kms, &ct.ciphertext_blob, &ctx(&[]), None).await),
        "InvalidCiphertextException"
    );

    // Sizes.
    assert!(common::encrypt(&kms, &key.key_id, &[7u8; 4096], &c)
        .await
        .is_ok());
    assert_eq!(
        code(common::encrypt(&kms, &key.key_id, &[7u8; 4097], &c).await),
        "ValidationException"
    );
    assert_eq!(
        code(common::encrypt(&kms, &key.key_id, b"", &c).await),
        "ValidationException"
    );

    // Data keys.
    let dk = common::generate_data_key(&kms, &key.key_id, &c)
        .await
        .unwrap();
    let back = common::decrypt(&kms, &dk.ciphertext_blob, &c, None)
        .await
        .unwrap();
    assert!(back.plaintext.ct_eq(dk.plaintext.expose()));
    let dk2 = common::generate_data_key(&kms, &key.key_id, &c)
        .await
        .unwrap();
    assert!(!dk2.plaintext.ct_eq(&dk.plaintext), "data keys are fresh");
    let wp = common::generate_data_key_without_plaintext(&kms, &key.key_id, &c)
        .await
        .unwrap();
    assert_eq!(
        common::decrypt(&kms, &wp.ciphertext_blob, &c, None)
            .await
            .unwrap()
            .plaintext
            .len(),
        32
    );

    // ReEncrypt to another key and context.
    let c2 = ctx(&[("purpose", "archive")]);
    let re = common::re_encrypt(&kms, &ct.ciphertext_blob, &c, &other.key_id, &c2)
        .await
        .unwrap();
    assert_eq!(re.source_key_id, key.arn);
    assert_eq!(re.key_id, other.arn);
    assert!(common::decrypt(&kms, &re.ciphertext_blob, &c2, None)
        .await
        .unwrap()
        .plaintext
        .ct_eq(b"attack at dawn"));
    assert_eq!(
        code(common::decrypt(&kms, &re.ciphertext_blob, &c, None).await),
        "InvalidCiphertextException"
    );

    // GenerateRandom.
    let r = kms.generate_random(1024).unwrap();
    assert_eq!(r.len(), 1024);
    assert!(r.expose().iter().any(|&b| b != 0));
    assert_eq!(code(kms.generate_random(0)), "ValidationException");
    assert_eq!(code(kms.generate_random(1025)), "ValidationException");
}

#[tokio::test]
async fn altered_and_truncated_blobs_are_rejected_without_panic() {
    let env = Env::new();
    let kms = env.open().await;
    let key = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    let c = ctx(&[("bucket", "b")]);
    let blob = common::encrypt(&kms, &key.key_id, b"secret", &c)
        .await
        .unwrap()
        .ciphertext_blob;
    for i in 0..blob.len() * 8 {
        let mut t = blob.clone();
        t[i / 8] ^= 1 << (i % 8);
        let r = common::decrypt(&kms, &t, &c, None).await;
        assert!(r.is_err(), "bit {i} flip accepted");
    }
    for len in 0..blob.len() {
        assert_eq!(
            code(common::decrypt(&kms, &blob[..len], &c, None).await),
            "InvalidCiphertextException",
            "len {len}"
        );
    }
    let mut long = blob.clone();
    long.push(0);
    assert_eq!(
        code(common::decrypt(&kms, &long, &c, None).await),
        "InvalidCiphertextException"
    );
    assert_eq!(
        code(common::decrypt(&kms, b"garbage", &c, None).await),
        "InvalidCiphertextException"
    );
    // A blob for a key that never existed.
    let mut forged = blob.clone();
    let id_at = 6;
    forged[id_at..id_at + 36].copy_from_slice(uuid::Uuid::new_v4().to_string().as_bytes());
    assert!(common::decrypt(&kms, &forged, &c, None).await.is_err());
}

#[tokio::test]
async fn disabled_keys_refuse_every_operation() {
    let env = Env::new();
    let kms = env.open().await;
    let key = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    let other = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    let c = ctx(&[]);
    let blob = common::encrypt(&kms, &key.key_id, b"x", &c)
        .await
        .unwrap()
        .ciphertext_blob;
    let other_blob = common::encrypt(&kms, &other.key_id, b"y", &c)
        .await
        .unwrap()
        .ciphertext_blob;
    kms.disable_key(&key.key_id).await.unwrap();
    assert_eq!(
        kms.describe_key(&key.key_id).await.unwrap().key_state,
        KeyState::Disabled
    );
    let id = key.key_id.as_str();
    assert_eq!(
        code(common::encrypt(&kms, id, b"x", &c).await),
        "DisabledException"
    );
    assert_eq!(
        code(common::decrypt(&kms, &blob, &c, None).await),
        "DisabledException"
    );
    assert_eq!(
        code(common::generate_data_key(&kms, id, &c).await),
        "DisabledException"
    );
    assert_eq!(
        code(common::generate_data_key_without_plaintext(&kms, id, &c).await),
        "DisabledException"
    );
    assert_eq!(
        code(common::re_encrypt(&kms, &blob, &c, &other.key_id, &c).await),
        "DisabledException"
    );
    assert_eq!(
        code(common::re_encrypt(&kms, &other_blob, &c, id, &c).await),
        "DisabledException"
    );
    assert_eq!(
        code(kms.rotate_key_on_demand(id).await),
        "DisabledException"
    );
    assert_eq!(
        code(kms.enable_key_rotation(id, None).await),
        "DisabledException"
    );
    kms.enable_key(id).await.unwrap();
    assert!(common::decrypt(&kms, &blob, &c, None)
        .await
        .unwrap()
        .plaintext
        .ct_eq(b"x"));
}

#[tokio::test]
async fn rotation_keeps_old_versions_and_honours_the_minimum() {
    let env = Env::new();
    let kms = env.open().await;
    let key = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    let id = key.key_id.as_str();
    let c = ctx(&[("k", "v")]);
    let version_of = |blob: &[u8]| {
        coffer_format::WrappedKey::decode(blob)
            .unwrap()
            .reference()
            .version
    };
    let mut blobs = vec![
        common::encrypt(&kms, id, b"v1", &c)
            .await
            .unwrap()
            .ciphertext_blob,
    ];
    assert_eq!(kms.rotate_key_on_demand(id).await.unwrap(), 2);
    blobs.push(
        common::encrypt(&kms, id, b"v2", &c)
            .await
            .unwrap()
            .ciphertext_blob,
    );
    // Automatic rotation: every 90 days.
    kms.enable_key_rotation(id, Some(90)).await.unwrap();
    assert_eq!(
        code(kms.enable_key_rotation(id, Some(89)).await),
        "ValidationException"
    );
    env.clock.advance(DAY * 89);
    assert_eq!(
        version_of(
            &common::encrypt(&kms, id, b"x", &c)
                .await
                .unwrap()
                .ciphertext_blob
        ),
        2
    );
    env.clock.advance(DAY * 2);
    blobs.push(
        common::encrypt(&kms, id, b"v3", &c)
            .await
            .unwrap()
            .ciphertext_blob,
    );
    assert_eq!(
        version_of(&blobs[2]),
        3,
        "new ciphertexts use the newest version"
    );
    // Maintenance rotates keys nobody uses.
    env.clock.advance(DAY * 91);
    let report = kms.run_maintenance().await.unwrap();
    assert_eq!(report.rotated, vec![key.key_id.clone()]);
    blobs.push(
        common::encrypt(&kms, id, b"v4", &c)
            .await
            .unwrap()
            .ciphertext_blob,
    );
    assert_eq!(version_of(&blobs[3]), 4);

    let rotations = kms.list_key_rotations(id).await.unwrap();
    let kinds: Vec<_> = rotations
        .iter()
        .map(|r| (r.version, r.rotation_type))
        .collect();
    use coffer_kms::RotationType::{Automatic, OnDemand};
    assert_eq!(kinds, vec![(2, OnDemand), (3, Automatic), (4, Automatic)]);

    // Every old version still decrypts, also after a restart (cache cold).
    drop(kms);
    let kms = env.open().await;
    for (i, blob) in blobs.iter().enumerate() {
        let expected = format!("v{}", i + 1);
        assert!(common::decrypt(&kms, blob, &c, None)
            .await
            .unwrap()
            .plaintext
            .ct_eq(expected.as_bytes()));
    }
    // Below the minimum decryption version: refused.
    assert_eq!(
        code(kms.set_min_decryption_version(id, 5).await),
        "ValidationException"
    );
    kms.set_min_decryption_version(id, 3).await.unwrap();
    for blob in &blobs[..2] {
        assert_eq!(
            code(common::decrypt(&kms, blob, &c, None).await),
            "KMSInvalidStateException"
        );
    }
    for blob in &blobs[2..] {
        assert!(common::decrypt(&kms, blob, &c, None).await.is_ok());
    }
    assert_eq!(
        kms.describe_key(id).await.unwrap().min_decryption_version,
        3
    );
    kms.disable_key_rotation(id).await.unwrap();
    assert!(!kms.describe_key(id).await.unwrap().rotation_enabled);
}

#[tokio::test]
async fn scheduled_deletion_shreds_and_cancellation_restores() {
    let env = Env::new();
    let kms = env.open().await;
    let c = ctx(&[]);
    let doomed = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    let saved = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    kms.create_alias("alias/doomed", &doomed.key_id)
        .await
        .unwrap();
    let doomed_blob = common::encrypt(&kms, &doomed.key_id, b"gone", &c)
        .await
        .unwrap()
        .ciphertext_blob;
    let saved_blob = common::encrypt(&kms, &saved.key_id, b"kept", &c)
        .await
        .unwrap()
        .ciphertext_blob;

    assert_eq!(
        code(kms.schedule_key_deletion(&doomed.key_id, Some(6)).await),
        "ValidationException"
    );
    assert_eq!(
        code(kms.schedule_key_deletion(&doomed.key_id, Some(31)).await),
        "ValidationException"
    );
    let when = kms
        .schedule_key_deletion(&doomed.key_id, Some(7))
        .await
        .unwrap();
    assert_eq!(when, env.clock_now() + DAY * 7);
    kms.schedule_key_deletion(&saved.key_id, None)
        .await
        .unwrap();
    let meta = kms.describe_key(&doomed.key_id).await.unwrap();
    assert_eq!(meta.key_state, KeyState::PendingDeletion);
    assert_eq!(meta.deletion_date, Some(when));
    assert_eq!(
        code(common::decrypt(&kms, &doomed_blob, &c, None).await),
        "KMSInvalidStateException"
    );
    assert_eq!(
        code(common::encrypt(&kms, &saved.key_id, b"x", &c).await),
        "KMSInvalidStateException"
    );
    assert_eq!(
        code(kms.enable_key(&saved.key_id).await),
        "KMSInvalidStateException"
    );

    // Cancel within the window: the key comes back (Disabled, as in AWS), then works.
    env.clock.advance(DAY * 6);
    kms.cancel_key_deletion(&saved.key_id).await.unwrap();
    assert_eq!(
        kms.describe_key(&saved.key_id).await.unwrap().key_state,
        KeyState::Disabled
    );
    kms.enable_key(&saved.key_id).await.unwrap();
    assert!(common::decrypt(&kms, &saved_blob, &c, None)
        .await
        .unwrap()
        .plaintext
        .ct_eq(b"kept"));

    // After the window, the key and its material are gone for good, also after restart.
    env.clock.advance(DAY + std::time::Duration::from_secs(1));
    assert_eq!(
        code(common::decrypt(&kms, &doomed_blob, &c, None).await),
        "NotFoundException"
    );
    assert_eq!(
        code(kms.describe_key(&doomed.key_id).await),
        "NotFoundException"
    );
    assert_eq!(
        code(kms.describe_key("alias/doomed").await),
        "NotFoundException"
    );
    assert_eq!(
        code(kms.cancel_key_deletion(&doomed.key_id).await),
        "NotFoundException"
    );
    drop(kms);
    let kms = env.open().await;
    assert_eq!(
        code(common::decrypt(&kms, &doomed_blob, &c, None).await),
        "NotFoundException"
    );
    assert_eq!(kms.list_keys().await.unwrap().len(), 1);
}

#[tokio::test]
async fn maintenance_completes_deletions_nobody_touches() {
    let env = Env::new();
    let kms = env.open().await;
    let key = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    kms.schedule_key_deletion(&key.key_id, Some(7))
        .await
        .unwrap();
    env.clock.advance(DAY * 8);
    let report = kms.run_maintenance().await.unwrap();
    assert_eq!(report.deleted, vec![key.key_id]);
    assert!(kms.list_keys().await.unwrap().is_empty());
}

#[tokio::test]
async fn cache_is_bounded() {
    let env = Env::new();
    let mut config = coffer_kms::KmsConfig::new(env.data_dir());
    config.cache_capacity = 3;
    let kms = coffer_kms::Kms::builder(config, &env.key_file())
        .clock(env.clock.clone())
        .open()
        .await
        .unwrap();
    let c = ctx(&[]);
    let mut blobs = Vec::new();
    for _ in 0..6 {
        let key = kms
            .create_key("user/alice", "", BTreeMap::new())
            .await
            .unwrap();
        blobs.push(
            common::encrypt(&kms, &key.key_id, b"x", &c)
                .await
                .unwrap()
                .ciphertext_blob,
        );
        assert!(kms.cached_versions() <= 3);
    }
    for blob in &blobs {
        assert!(common::decrypt(&kms, blob, &c, None).await.is_ok());
        assert!(kms.cached_versions() <= 3);
    }
    assert_eq!(kms.cached_versions(), 3);
}

trait ClockNow {
    fn clock_now(&self) -> std::time::SystemTime;
}
impl ClockNow for Env {
    fn clock_now(&self) -> std::time::SystemTime {
        use coffer_kms::Clock;
        self.clock.now()
    }
}

/// Key material is reached only through a `KeyUse` made by `Kms::authorize` (the compile-time
/// half is the `compile_fail` examples in `authz`): a proof for one action does not serve
/// another, a proof for one key does not open another key's ciphertext, and a caller the
/// key policy does not name gets no proof at all.
#[tokio::test]
async fn cryptographic_operations_need_a_proof_for_that_action_and_key() {
    use coffer_kms::{CallContext, Principal};
    let env = Env::new();
    let kms = env.open().await;
    let c = ctx(&[("purpose", "proof")]);
    let key = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    let other = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();

    let decrypt_only = common::allow(&kms, &key.key_id, "kms:Decrypt")
        .await
        .unwrap();
    assert_eq!(decrypt_only.key_id(), key.key_id);
    assert_eq!(decrypt_only.key_arn(), key.arn);
    assert_eq!(
        code(kms.generate_data_key(&decrypt_only, &c).await),
        "AccessDeniedException"
    );
    assert_eq!(
        code(kms.encrypt(&decrypt_only, b"x", &c).await),
        "AccessDeniedException"
    );
    let describe = common::allow(&kms, &key.key_id, "kms:DescribeKey")
        .await
        .unwrap();
    assert_eq!(
        code(
            kms.generate_data_key_without_plaintext(&describe, 32, &c)
                .await
        ),
        "AccessDeniedException"
    );

    // The right proof works, and says which version it used.
    let generate = common::allow(&kms, &key.key_id, "kms:GenerateDataKey")
        .await
        .unwrap();
    let dk = kms.generate_data_key(&generate, &c).await.unwrap();
    assert_eq!(dk.key_version, 1);
    let pt = kms
        .decrypt(&decrypt_only, &dk.ciphertext_blob, &c)
        .await
        .unwrap();
    assert!(pt.plaintext.ct_eq(dk.plaintext.expose()));
    assert_eq!(pt.key_version, 1);
    kms.rotate_key_on_demand(&key.key_id).await.unwrap();
    assert_eq!(
        kms.generate_data_key(&generate, &c)
            .await
            .unwrap()
            .key_version,
        2
    );

    // A proof for another key does not open this key's ciphertext.
    let other_decrypt = common::allow(&kms, &other.key_id, "kms:Decrypt")
        .await
        .unwrap();
    assert_eq!(
        code(kms.decrypt(&other_decrypt, &dk.ciphertext_blob, &c).await),
        "IncorrectKeyException"
    );

    // A caller the key policy does not name gets no proof (the owner is root here).
    let alice = Principal::authenticated("alice", "AKALICE", false);
    let refused = kms
        .authorize(&alice, &key.key_id, "kms:Decrypt", &CallContext::default())
        .await;
    assert_eq!(code(refused), "AccessDeniedException");
    // A stored key policy that allows alice only Encrypt gives her only that proof.
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": alice.arn()},
                       "Action": "kms:Encrypt", "Resource": "*"}]
    });
    kms.put_key_policy(&key.key_id, &policy.to_string())
        .await
        .unwrap();
    let call = CallContext::default();
    assert!(kms
        .authorize(&alice, &key.key_id, "kms:Encrypt", &call)
        .await
        .is_ok());
    assert_eq!(
        code(
            kms.authorize(&alice, &key.key_id, "kms:Decrypt", &call)
                .await
        ),
        "AccessDeniedException"
    );
    assert_eq!(
        code(kms.ciphertext_key(b"not a ciphertext", None).await),
        "InvalidCiphertextException"
    );
}

/// Concurrent changes through one `Kms` are serialised as before the store became async:
/// concurrent rotations all land (each gets the next version), concurrent first uses of a
/// managed alias create one key, and a key's record read under concurrent changes is never
/// cached stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_are_serialised() {
    let env = Env::new();
    let kms = std::sync::Arc::new(env.open().await);
    let key = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    let rotations: Vec<_> = (0..8)
        .map(|_| {
            let (kms, id) = (kms.clone(), key.key_id.clone());
            tokio::spawn(async move { kms.rotate_key_on_demand(&id).await })
        })
        .collect();
    let mut versions = Vec::new();
    for r in rotations {
        versions.push(r.await.unwrap().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (2..=9).collect::<Vec<u32>>(),
        "every rotation lands"
    );
    assert_eq!(
        kms.describe_key(&key.key_id).await.unwrap().current_version,
        9
    );

    let managed: Vec<_> = (0..8)
        .map(|_| {
            let kms = kms.clone();
            tokio::spawn(async move {
                kms.ensure_managed_key("alias/aws/s3", coffer_kms::MANAGED_OWNER, "managed")
                    .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for m in managed {
        ids.push(m.await.unwrap().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one managed key: {ids:?}");
    assert_eq!(kms.list_keys().await.unwrap().len(), 2);

    // Readers racing a disable: once it has returned, every reader sees it.
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (kms, id) = (kms.clone(), key.key_id.clone());
            tokio::spawn(async move {
                for _ in 0..20 {
                    kms.clear_cache();
                    kms.describe_key(&id).await.unwrap();
                }
            })
        })
        .collect();
    kms.disable_key(&key.key_id).await.unwrap();
    assert!(!kms.describe_key(&key.key_id).await.unwrap().enabled);
    for r in readers {
        r.await.unwrap();
    }
    assert!(
        !kms.describe_key(&key.key_id).await.unwrap().enabled,
        "no stale record was cached"
    );
}
