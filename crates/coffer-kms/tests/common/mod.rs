#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use coffer_format::{Context, SecretBytes};
use coffer_kms::{Argon2Params, KeyFileSealer, Kms, KmsConfig, ManualClock, PassphraseSealer};

pub const DAY: Duration = Duration::from_secs(86_400);

pub fn ctx(pairs: &[(&str, &str)]) -> Context {
    Context::from_pairs(pairs.iter().copied()).unwrap()
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000),
            )),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn key_file(&self) -> KeyFileSealer {
        KeyFileSealer::new(self.dir.path().join("root.key"))
    }

    pub async fn open(&self) -> Kms {
        Kms::builder(KmsConfig::new(self.data_dir()), &self.key_file())
            .clock(self.clock.clone())
            .open()
            .await
            .unwrap()
    }

    pub async fn open_with_passphrase(&self, passphrase: &str) -> coffer_kms::Result<Kms> {
        let sealer = passphrase_sealer(passphrase);
        Kms::builder(KmsConfig::new(self.data_dir()), &sealer)
            .clock(self.clock.clone())
            .open()
            .await
    }
}

pub fn passphrase_sealer(passphrase: &str) -> PassphraseSealer {
    PassphraseSealer::new(
        SecretBytes::new(passphrase.as_bytes().to_vec()),
        Argon2Params::insecure_for_tests(),
    )
}

/// Every file under `dir`, recursively, with its bytes.
pub fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asserts that no file under `dir` contains `secret` raw, in hex or in base64.
pub fn assert_absent(dir: &Path, secret: &[u8], what: &str) {
    use base64::Engine;
    let hex_lower = hex::encode(secret);
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    for (path, bytes) in files(dir) {
        assert!(
            !contains(&bytes, secret),
            "{what} found raw in {}",
            path.display()
        );
        assert!(
            !contains(&bytes, hex_lower.as_bytes()),
            "{what} found as hex in {}",
            path.display()
        );
        assert!(
            !contains(&bytes, hex_lower.to_uppercase().as_bytes()),
            "{what} found as HEX in {}",
            path.display()
        );
        assert!(
            !contains(&bytes, b64.as_bytes()),
            "{what} found as base64 in {}",
            path.display()
        );
    }
}

// ---- the cryptographic operations, each behind its proof ----
//
// The tests' keys are owned by non-ARN owners ("user/alice"), which belong to the root
// identity (authz::owner_arn), so the root identity's default key policy allows them. These
// helpers ask `Kms::authorize` exactly as the KMS API does before each operation.

use coffer_kms::{CallContext, Ciphertext, DataKey, KeyUse, Plaintext, Principal, ReEncrypted};

pub fn root() -> Principal {
    Principal::authenticated("root", "AKROOT", true)
}

pub async fn allow(kms: &Kms, key: &str, action: &str) -> coffer_kms::Result<KeyUse> {
    kms.authorize(&root(), key, action, &CallContext::default())
        .await
}

pub async fn encrypt(
    kms: &Kms,
    key: &str,
    plaintext: &[u8],
    context: &Context,
) -> coffer_kms::Result<Ciphertext> {
    kms.encrypt(&allow(kms, key, "kms:Encrypt").await?, plaintext, context)
        .await
}

/// Decrypt as the API does: the key the blob names, checked against `key` when given.
pub async fn decrypt(
    kms: &Kms,
    blob: &[u8],
    context: &Context,
    key: Option<&str>,
) -> coffer_kms::Result<Plaintext> {
    let (id, _) = kms.ciphertext_key(blob, key).await?;
    kms.decrypt(&allow(kms, &id, "kms:Decrypt").await?, blob, context)
        .await
}

pub async fn generate_data_key(
    kms: &Kms,
    key: &str,
    context: &Context,
) -> coffer_kms::Result<DataKey> {
    kms.generate_data_key(&allow(kms, key, "kms:GenerateDataKey").await?, context)
        .await
}

pub async fn generate_data_key_without_plaintext(
    kms: &Kms,
    key: &str,
    context: &Context,
) -> coffer_kms::Result<Ciphertext> {
    let proof = allow(kms, key, "kms:GenerateDataKeyWithoutPlaintext").await?;
    kms.generate_data_key_without_plaintext(&proof, 32, context)
        .await
}

pub async fn re_encrypt(
    kms: &Kms,
    blob: &[u8],
    source_context: &Context,
    destination_key: &str,
    destination_context: &Context,
) -> coffer_kms::Result<ReEncrypted> {
    let (source, _) = kms.ciphertext_key(blob, None).await?;
    let from = allow(kms, &source, "kms:ReEncryptFrom").await?;
    let to = allow(kms, destination_key, "kms:ReEncryptTo").await?;
    kms.re_encrypt(&from, blob, source_context, &to, destination_context)
        .await
}
