//! BYOK: material wrapped by an independent Python implementation imports byte-exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use coffer_kms::{KeyState, Kms, Origin, WrappingKeySpec};
use common::{ctx, Env, DAY};

struct PythonOutput {
    raw_key: Vec<u8>,
    wrapped: Vec<u8>,
    blob: Vec<u8>,
    plaintext: String,
    context: coffer_format::Context,
    key_size_bits: u64,
}

fn python_wrap(public_key: &[u8], key_id: &str, mode: &str) -> PythonOutput {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/byok_wrap.py");
    let out = Command::new("python3")
        .args([script, &B64.encode(public_key), key_id, mode])
        .output()
        .expect("python3 must be installed (with the `cryptography` package)");
    assert!(
        out.status.success(),
        "byok_wrap.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let context = v["context"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()));
    PythonOutput {
        raw_key: hex::decode(v["raw_key_hex"].as_str().unwrap()).unwrap(),
        wrapped: B64.decode(v["wrapped_b64"].as_str().unwrap()).unwrap(),
        blob: B64.decode(v["blob_b64"].as_str().unwrap()).unwrap(),
        plaintext: v["plaintext"].as_str().unwrap().to_owned(),
        context: coffer_format::Context::from_pairs(context).unwrap(),
        key_size_bits: v["key_size_bits"].as_u64().unwrap(),
    }
}

async fn external_key(kms: &Kms) -> String {
    let meta = kms
        .create_key_with_origin("user/alice", "imported", BTreeMap::new(), Origin::External)
        .await
        .unwrap();
    assert_eq!(meta.key_state, KeyState::PendingImport);
    meta.key_id
}

#[tokio::test]
async fn python_wrapped_material_imports_byte_exactly() {
    let env = Env::new();
    let kms = env.open_with_passphrase("byok").await.unwrap();
    let id = external_key(&kms).await;
    let c = ctx(&[]);
    assert_eq!(
        common::encrypt(&kms, &id, b"x", &c)
            .await
            .unwrap_err()
            .aws_code(),
        "KMSInvalidStateException"
    );

    let params = kms
        .get_parameters_for_import(&id, WrappingKeySpec::Rsa3072)
        .await
        .unwrap();
    let py = python_wrap(&params.public_key, &id, "oaep-sha256");
    assert_eq!(py.key_size_bits, 3072);
    let valid_to = env.clock_now() + DAY * 10;
    kms.import_key_material(&id, &params.import_token, &py.wrapped, Some(valid_to))
        .await
        .unwrap();
    let meta = kms.describe_key(&id).await.unwrap();
    assert_eq!(meta.key_state, KeyState::Enabled);
    assert_eq!(meta.origin, Origin::External);
    assert_eq!(meta.expiration_model, Some("KEY_MATERIAL_EXPIRES"));

    // The blob Python made with the raw key decrypts through the KMS: byte-exact import.
    let out = common::decrypt(&kms, &py.blob, &py.context, None)
        .await
        .unwrap();
    assert!(out.plaintext.ct_eq(py.plaintext.as_bytes()));
    assert_eq!(
        common::decrypt(&kms, &py.blob, &ctx(&[("purpose", "other")]), None)
            .await
            .unwrap_err()
            .aws_code(),
        "InvalidCiphertextException"
    );
    // Imported keys do not rotate.
    assert_eq!(
        kms.rotate_key_on_demand(&id).await.unwrap_err().aws_code(),
        "UnsupportedOperationException"
    );

    // No byte of the imported key in the data directory.
    let ours = common::encrypt(&kms, &id, b"made by coffer", &c)
        .await
        .unwrap()
        .ciphertext_blob;
    drop(kms);
    common::assert_absent(&env.data_dir(), &py.raw_key, "imported key");

    // Delete the material: unreadable; re-import of the same material restores it, other
    // material is refused.
    let kms = env.open_with_passphrase("byok").await.unwrap();
    kms.delete_imported_key_material(&id).await.unwrap();
    assert_eq!(
        kms.describe_key(&id).await.unwrap().key_state,
        KeyState::PendingImport
    );
    assert_eq!(
        common::decrypt(&kms, &ours, &c, None)
            .await
            .unwrap_err()
            .aws_code(),
        "KMSInvalidStateException"
    );
    let params = kms
        .get_parameters_for_import(&id, WrappingKeySpec::Rsa3072)
        .await
        .unwrap();
    let other = python_wrap(&params.public_key, &id, "oaep-sha256");
    assert_eq!(
        kms.import_key_material(&id, &params.import_token, &other.wrapped, None)
            .await
            .unwrap_err()
            .aws_code(),
        "IncorrectKeyMaterialException"
    );
    let params = kms
        .get_parameters_for_import(&id, WrappingKeySpec::Rsa3072)
        .await
        .unwrap();
    let public = aws_lc_rs::rsa::PublicEncryptingKey::from_der(&params.public_key).unwrap();
    let oaep = aws_lc_rs::rsa::OaepPublicEncryptingKey::new(public).unwrap();
    let mut rewrapped = vec![0u8; oaep.ciphertext_size()];
    oaep.encrypt(
        &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
        &py.raw_key,
        &mut rewrapped,
        None,
    )
    .unwrap();
    kms.import_key_material(&id, &params.import_token, &rewrapped, None)
        .await
        .unwrap();
    assert!(common::decrypt(&kms, &ours, &c, None)
        .await
        .unwrap()
        .plaintext
        .ct_eq(b"made by coffer"));
    assert_eq!(
        kms.describe_key(&id).await.unwrap().expiration_model,
        Some("KEY_MATERIAL_DOES_NOT_EXPIRE")
    );
}

#[tokio::test]
async fn tokens_padding_and_expiry_are_enforced() {
    let env = Env::new();
    let kms = env.open_with_passphrase("byok").await.unwrap();
    let id = external_key(&kms).await;
    let other_id = external_key(&kms).await;
    let generated = kms
        .create_key("user/alice", "", BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        kms.get_parameters_for_import(&generated.key_id, WrappingKeySpec::Rsa3072)
            .await
            .unwrap_err()
            .aws_code(),
        "UnsupportedOperationException"
    );

    let params = kms
        .get_parameters_for_import(&id, WrappingKeySpec::Rsa4096)
        .await
        .unwrap();
    assert_eq!(params.parameters_valid_to, env.clock_now() + DAY);
    let py = python_wrap(&params.public_key, &id, "oaep-sha256");
    assert_eq!(py.key_size_bits, 4096);
    // Token for another key, unknown token.
    let other_params = kms
        .get_parameters_for_import(&other_id, WrappingKeySpec::Rsa3072)
        .await
        .unwrap();
    assert_eq!(
        kms.import_key_material(&id, &other_params.import_token, &py.wrapped, None)
            .await
            .unwrap_err()
            .aws_code(),
        "InvalidImportTokenException"
    );
    assert_eq!(
        kms.import_key_material(&id, b"made-up token", &py.wrapped, None)
            .await
            .unwrap_err()
            .aws_code(),
        "InvalidImportTokenException"
    );
    // Expiry of material in the past is a validation error.
    assert_eq!(
        kms.import_key_material(
            &id,
            &params.import_token,
            &py.wrapped,
            Some(env.clock_now())
        )
        .await
        .unwrap_err()
        .aws_code(),
        "ValidationException"
    );
    // Expired token: 24 h later.
    env.clock.advance(DAY + std::time::Duration::from_secs(1));
    assert_eq!(
        kms.import_key_material(&id, &params.import_token, &py.wrapped, None)
            .await
            .unwrap_err()
            .aws_code(),
        "ExpiredImportTokenException"
    );
    assert_eq!(
        kms.describe_key(&id).await.unwrap().key_state,
        KeyState::PendingImport
    );
}

#[tokio::test]
async fn wrong_padding_is_rejected() {
    let env = Env::new();
    let kms = env.open_with_passphrase("byok").await.unwrap();
    let id = external_key(&kms).await;
    for mode in ["oaep-sha1", "pkcs1v15"] {
        let params = kms
            .get_parameters_for_import(&id, WrappingKeySpec::Rsa3072)
            .await
            .unwrap();
        let py = python_wrap(&params.public_key, &id, mode);
        let err = kms
            .import_key_material(&id, &params.import_token, &py.wrapped, None)
            .await
            .unwrap_err();
        assert_eq!(err.aws_code(), "InvalidCiphertextException", "{mode}");
        assert_eq!(
            kms.describe_key(&id).await.unwrap().key_state,
            KeyState::PendingImport,
            "{mode}"
        );
    }
    // A wrapped value of the wrong length is not key material.
    let params = kms
        .get_parameters_for_import(&id, WrappingKeySpec::Rsa3072)
        .await
        .unwrap();
    let public = aws_lc_rs::rsa::PublicEncryptingKey::from_der(&params.public_key).unwrap();
    let oaep = aws_lc_rs::rsa::OaepPublicEncryptingKey::new(public).unwrap();
    let mut wrapped = vec![0u8; oaep.ciphertext_size()];
    oaep.encrypt(
        &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
        &[1u8; 16],
        &mut wrapped,
        None,
    )
    .unwrap();
    let err = kms
        .import_key_material(&id, &params.import_token, &wrapped, None)
        .await
        .unwrap_err();
    assert_eq!(err.aws_code(), "IncorrectKeyMaterialException");
}

#[tokio::test]
async fn imported_material_expires() {
    let env = Env::new();
    let kms = env.open_with_passphrase("byok").await.unwrap();
    let id = external_key(&kms).await;
    let params = kms
        .get_parameters_for_import(&id, WrappingKeySpec::Rsa3072)
        .await
        .unwrap();
    let py = python_wrap(&params.public_key, &id, "oaep-sha256");
    kms.import_key_material(
        &id,
        &params.import_token,
        &py.wrapped,
        Some(env.clock_now() + DAY),
    )
    .await
    .unwrap();
    assert!(common::decrypt(&kms, &py.blob, &py.context, None)
        .await
        .is_ok());
    env.clock.advance(DAY);
    assert_eq!(
        common::decrypt(&kms, &py.blob, &py.context, None)
            .await
            .unwrap_err()
            .aws_code(),
        "KMSInvalidStateException"
    );
    assert_eq!(
        kms.describe_key(&id).await.unwrap().key_state,
        KeyState::PendingImport
    );
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
