//! Sealing the root key: the root key is 32 random bytes made once per data directory and
//! never stored in clear. A [`Sealer`] turns it into a [`SealedRoot`] (the file `root.sealed`
//! in the data directory) and back.
//!
//! Sealers:
//! - [`KeyFileSealer`]: a 32-byte sealing key in a file of mode 0600 (zero-config default,
//!   for development: whoever reads the data directory and the key file has everything);
//! - [`PassphraseSealer`]: a sealing key derived with Argon2id; parameters and salt are stored
//!   in the sealed file;
//! - [`crate::pkcs11::Pkcs11Sealer`]: a non-extractable AES key inside a PKCS#11 token
//!   encrypts the root key on the token (AES-GCM).
//!
//! Because every sealer wraps the *same* root key, moving between sealers
//! ([`crate::Kms::reseal`]) rewrites only `root.sealed`; the key store and every wrapped CMK
//! version stay as they are.
//!
//! # Sealer contract
//! - `seal` may create its own long-lived secret (key file, token key) on first use;
//!   `unseal` never creates anything and never writes.
//! - `unseal` of a `SealedRoot` made by another sealer kind, with a wrong secret, or with the
//!   secret missing fails with [`KmsError::Unseal`] and a message that says which.
//! - `unseal(seal(k)) == k`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use coffer_format::{Context, KeyKind, KeyReference, SecretBytes, SecretKey, WrappedKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{KmsError, Result};

/// Format marker of `root.sealed` (frozen).
pub const SEALED_FORMAT: &str = "coffer-sealed-root";
pub const SEALED_VERSION: u32 = 1;

/// The root key in sealed form, as stored in `root.sealed` (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRoot {
    pub format: String,
    pub version: u32,
    /// Which sealer made it: `key-file`, `passphrase` or `pkcs11`.
    pub sealer: String,
    /// UUID naming the root key (stable across reseals).
    pub root_key_id: String,
    /// Sealer-specific public parameters (Argon2 parameters and salt, token and key labels…).
    pub params: serde_json::Value,
    /// Base64 of the sealed root key.
    pub sealed: String,
}

impl SealedRoot {
    pub fn read(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path)
            .map_err(|e| KmsError::Unseal(format!("cannot read {}: {e}", path.display())))?;
        let sealed: SealedRoot = serde_json::from_str(&text).map_err(|e| {
            KmsError::Unseal(format!("{} is not a sealed root: {e}", path.display()))
        })?;
        if sealed.format != SEALED_FORMAT || sealed.version != SEALED_VERSION {
            return Err(KmsError::Unseal(format!(
                "{} has unsupported format {} version {}",
                path.display(),
                sealed.format,
                sealed.version
            )));
        }
        Ok(sealed)
    }

    /// Writes atomically (temporary file, fsync, rename), mode 0600.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| KmsError::Internal(format!("encode sealed root: {e}")))?;
        write_private_atomically(path, &json)
    }

    pub fn sealed_bytes(&self) -> Result<Vec<u8>> {
        B64.decode(&self.sealed)
            .map_err(|_| KmsError::Unseal("sealed root is not valid base64".into()))
    }

    /// A sealed root made by sealer `sealer` with its public `params`.
    pub(crate) fn new(
        sealer: &str,
        root_key_id: &str,
        params: impl Serialize,
        sealed: &[u8],
    ) -> Result<Self> {
        Ok(SealedRoot {
            format: SEALED_FORMAT.into(),
            version: SEALED_VERSION,
            sealer: sealer.into(),
            root_key_id: root_key_id.into(),
            params: serde_json::to_value(params)
                .map_err(|e| KmsError::Internal(format!("encode {sealer} parameters: {e}")))?,
            sealed: B64.encode(sealed),
        })
    }

    pub(crate) fn expect_sealer(&self, name: &str) -> Result<()> {
        if self.sealer != name {
            return Err(KmsError::Unseal(format!(
                "the root key is sealed with the {} sealer, but the {name} sealer is configured \
                 (to move between sealers, reseal with both configured)",
                self.sealer
            )));
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` through a temporary sibling and a rename, mode 0600.
pub(crate) fn write_private_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| KmsError::Internal(format!("write {}: {e}", path.display()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// Seals and unseals the root key. See the module docs for the contract.
pub trait Sealer: Send + Sync {
    /// `key-file`, `passphrase` or `pkcs11`.
    fn name(&self) -> &'static str;
    fn seal(&self, root: &SecretKey, root_key_id: &str) -> Result<SealedRoot>;
    fn unseal(&self, sealed: &SealedRoot) -> Result<SecretKey>;
}

fn seal_context(sealer: &str, root_key_id: &str) -> Result<Context> {
    Ok(Context::from_pairs([
        ("purpose", "coffer-root-seal"),
        ("root", root_key_id),
        ("sealer", sealer),
    ])?)
}

fn seal_with(
    name: &'static str,
    kek: &SecretKey,
    root: &SecretKey,
    root_key_id: &str,
) -> Result<Vec<u8>> {
    let reference = KeyReference::new(KeyKind::Root, format!("sealer/{name}"), 1)?;
    let wrapped = WrappedKey::wrap(
        reference,
        kek,
        root.expose(),
        &seal_context(name, root_key_id)?,
    )?;
    Ok(wrapped.encode())
}

fn unseal_with(
    name: &'static str,
    kek: &SecretKey,
    sealed: &SealedRoot,
    wrong: &str,
) -> Result<SecretKey> {
    let bytes = sealed.sealed_bytes()?;
    let wrapped = WrappedKey::decode(&bytes)
        .map_err(|_| KmsError::Unseal("sealed root key is malformed".into()))?;
    let root = wrapped
        .unwrap(kek, &seal_context(name, &sealed.root_key_id)?)
        .map_err(|_| KmsError::Unseal(wrong.to_owned()))?;
    root.into_key()
        .map_err(|_| KmsError::Unseal("sealed root key has the wrong length".into()))
}

/// A 32-byte sealing key in a file of mode 0600. For development: it is the zero-config
/// default, and anyone who can read both the file and the data directory has every key.
#[derive(Debug, Clone)]
pub struct KeyFileSealer {
    path: PathBuf,
}

impl KeyFileSealer {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KeyFileSealer { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_key(&self) -> Result<SecretKey> {
        let bytes = Zeroizing::new(fs::read(&self.path).map_err(|e| {
            KmsError::Unseal(format!(
                "cannot read root key file {}: {e}",
                self.path.display()
            ))
        })?);
        SecretKey::from_slice(&bytes).map_err(|_| {
            KmsError::Unseal(format!(
                "root key file {} is not 32 bytes",
                self.path.display()
            ))
        })
    }

    /// Whether the key file is readable by group or others.
    pub fn is_too_open(&self) -> bool {
        fs::metadata(&self.path)
            .map(|m| m.permissions().mode() & 0o077 != 0)
            .unwrap_or(false)
    }
}

impl Sealer for KeyFileSealer {
    fn name(&self) -> &'static str {
        "key-file"
    }

    fn seal(&self, root: &SecretKey, root_key_id: &str) -> Result<SealedRoot> {
        if !self.path.exists() {
            let key = SecretKey::generate()?;
            write_private_atomically(&self.path, key.expose())?;
        }
        let kek = self.read_key()?;
        let sealed = seal_with(self.name(), &kek, root, root_key_id)?;
        SealedRoot::new(self.name(), root_key_id, serde_json::json!({}), &sealed)
    }

    fn unseal(&self, sealed: &SealedRoot) -> Result<SecretKey> {
        sealed.expect_sealer(self.name())?;
        let kek = self.read_key()?;
        let wrong = format!(
            "root key file {} does not unseal this data directory",
            self.path.display()
        );
        unseal_with("key-file", &kek, sealed, &wrong)
    }
}

/// Argon2id cost parameters, stored beside the sealed root key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for Argon2Params {
    /// m = 64 MiB, t = 3, p = 1 (OWASP's first recommended Argon2id setting is weaker).
    fn default() -> Self {
        Argon2Params {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

impl Argon2Params {
    /// Cheap parameters for tests only.
    pub fn insecure_for_tests() -> Self {
        Argon2Params {
            m_kib: 64,
            t: 1,
            p: 1,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct PassphraseParams {
    kdf: String,
    argon2: Argon2Params,
    salt: String,
}

/// A sealing key derived from a passphrase with Argon2id.
pub struct PassphraseSealer {
    passphrase: SecretBytes,
    /// Used when sealing; unsealing uses the parameters stored with the sealed key.
    params: Argon2Params,
}

impl PassphraseSealer {
    pub fn new(passphrase: SecretBytes, params: Argon2Params) -> Self {
        PassphraseSealer { passphrase, params }
    }

    fn derive(&self, params: Argon2Params, salt: &[u8]) -> Result<SecretKey> {
        let argon_params = argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
            .map_err(|e| KmsError::Validation(format!("Argon2 parameters: {e}")))?;
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon_params,
        );
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(self.passphrase.expose(), salt, &mut out[..])
            .map_err(|e| KmsError::Internal(format!("Argon2id: {e}")))?;
        Ok(SecretKey::from_bytes(&mut out))
    }
}

impl Sealer for PassphraseSealer {
    fn name(&self) -> &'static str {
        "passphrase"
    }

    fn seal(&self, root: &SecretKey, root_key_id: &str) -> Result<SealedRoot> {
        let mut salt = [0u8; 16];
        coffer_format::secret::random_fill(&mut salt)?;
        let kek = self.derive(self.params, &salt)?;
        let sealed = seal_with(self.name(), &kek, root, root_key_id)?;
        let params = PassphraseParams {
            kdf: "argon2id-v19".into(),
            argon2: self.params,
            salt: B64.encode(salt),
        };
        SealedRoot::new(self.name(), root_key_id, params, &sealed)
    }

    fn unseal(&self, sealed: &SealedRoot) -> Result<SecretKey> {
        sealed.expect_sealer(self.name())?;
        let params: PassphraseParams = serde_json::from_value(sealed.params.clone())
            .map_err(|e| KmsError::Unseal(format!("bad passphrase sealer parameters: {e}")))?;
        if params.kdf != "argon2id-v19" {
            return Err(KmsError::Unseal(format!("unknown KDF {}", params.kdf)));
        }
        let salt = B64
            .decode(&params.salt)
            .map_err(|_| KmsError::Unseal("bad Argon2 salt".into()))?;
        let kek = self.derive(params.argon2, &salt)?;
        unseal_with("passphrase", &kek, sealed, "wrong passphrase")
    }
}
