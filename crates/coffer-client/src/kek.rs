//! Key-encryption-key (KEK) providers: who wraps each object's data key.
//!
//! Every client-encrypted object has its own random 256-bit data key (DEK). The object
//! header stores the DEK wrapped (spec/wrapped-key.md), bound to the object's context
//! (`bucket`, `key`). Three providers wrap it:
//!
//! - [`KmsKek`]: Coffer's KMS through the AWS KMS API. `GenerateDataKey` (key spec AES_256,
//!   encryption context = the object context) returns the DEK and its ciphertext blob; Coffer's
//!   KMS blob *is* a wrapped key (kind `0x02`, the CMK id and version in its reference), so it
//!   is stored as the header's wrapped DEK unchanged and `Decrypt` unwraps it again. The KMS
//!   sees data keys and contexts, never data.
//! - [`KeyFile`](coffer_format::keyfile::KeyFile): a local key file from `coffer keygen`
//!   (kind `0x04`, the file's 16-byte id, version 1), as `coffer encrypt` uses.
//! - [`PassphraseKek`]: a key derived from a passphrase with Argon2id (kind `0x04`, the
//!   16-byte salt as the key id, version [`PASSPHRASE_V1`] naming the parameter set).
//!
//! A [`Keyring`] holds the providers a reader has and picks the one the object's key
//! reference names.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use coffer_format::keyfile::KeyFile;
use coffer_format::secret::random_fill;
use coffer_format::{Context, KeyKind, KeyReference, SecretBytes, SecretKey, WrappedKey};
use zeroize::Zeroizing;

use crate::error::{describe_sdk_error, Error, Result};

/// The key version that marks a passphrase key and names its Argon2id parameters:
/// `"pa"` followed by parameter set 1 (Argon2id v1.3, m = 64 MiB, t = 3, p = 1, 32-byte
/// output). Frozen: a new parameter set gets a new value.
pub const PASSPHRASE_V1: u32 = 0x7061_0001;
const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
const ARGON2_ITERATIONS: u32 = 3;
const ARGON2_LANES: u32 = 1;
const SALT_LEN: usize = 16;

/// A provider that wraps new data keys. One value of this type encrypts any number of
/// objects; each gets a fresh DEK.
pub enum Kek {
    Kms(KmsKek),
    KeyFile(KeyFile),
    Passphrase(PassphraseKek),
}

/// What an object's metadata says about its key-encryption key (`x-amz-meta-coffer-kek`);
/// a hint for humans and tools; the header's key reference is authoritative.
impl Kek {
    pub fn hint(&self) -> &'static str {
        match self {
            Kek::Kms(_) => "kms",
            Kek::KeyFile(_) => "file",
            Kek::Passphrase(_) => "passphrase",
        }
    }

    /// A fresh DEK and its wrapped form, bound to `context`.
    pub async fn new_data_key(&self, context: &Context) -> Result<(SecretKey, WrappedKey)> {
        match self {
            Kek::Kms(kms) => kms.generate_data_key(context).await,
            Kek::KeyFile(file) => wrap_fresh(file.reference(), file.key(), context),
            Kek::Passphrase(p) => wrap_fresh(p.reference(), &p.key, context),
        }
    }

    /// Whether this provider holds the key `reference` names.
    pub fn can_unwrap(&self, reference: &KeyReference) -> bool {
        match self {
            Kek::Kms(_) => reference.kind == KeyKind::Kms,
            Kek::KeyFile(file) => {
                reference.kind == KeyKind::ClientKek
                    && reference.version != PASSPHRASE_V1
                    && reference.key_id == file.id()
            }
            Kek::Passphrase(_) => {
                reference.kind == KeyKind::ClientKek
                    && reference.version == PASSPHRASE_V1
                    && reference.key_id.len() == SALT_LEN
            }
        }
    }

    /// Unwraps an object's DEK. The caller checked [`Kek::can_unwrap`].
    pub async fn unwrap_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &Context,
    ) -> Result<SecretKey> {
        let key = match self {
            Kek::Kms(kms) => return kms.decrypt(wrapped, context).await,
            Kek::KeyFile(file) => wrapped.unwrap(file.key(), context),
            Kek::Passphrase(p) => {
                let key = p.key_for_salt(&wrapped.reference().key_id)?;
                wrapped.unwrap(&key, context)
            }
        };
        match key {
            Ok(bytes) => Ok(bytes.into_key()?),
            Err(e) if e.is_integrity() => {
                Err(Error::Format(coffer_format::Error::Integrity(match self {
                    Kek::Passphrase(_) => "wrong passphrase, or the object was moved or altered",
                    _ => "the wrapped data key failed to authenticate (object moved or altered)",
                })))
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn wrap_fresh(
    reference: KeyReference,
    kek: &SecretKey,
    context: &Context,
) -> Result<(SecretKey, WrappedKey)> {
    let dek = SecretKey::generate()?;
    let wrapped = WrappedKey::wrap(reference, kek, dek.expose(), context)?;
    Ok((dek, wrapped))
}

/// Coffer's KMS (or any service speaking the AWS KMS JSON API whose ciphertext blobs are
/// Coffer wrapped keys) as the key-encryption-key provider.
pub struct KmsKek {
    client: aws_sdk_kms::Client,
    /// Key id, ARN, alias name or alias ARN used for new objects; not needed to decrypt
    /// (the object names its key).
    key_id: Option<String>,
}

impl KmsKek {
    pub fn new(client: aws_sdk_kms::Client, key_id: Option<String>) -> Self {
        KmsKek { client, key_id }
    }

    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    fn context_map(context: &Context) -> HashMap<String, String> {
        context
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    async fn generate_data_key(&self, context: &Context) -> Result<(SecretKey, WrappedKey)> {
        let key_id = self.key_id.as_deref().ok_or_else(|| {
            Error::Invalid("no KMS key to encrypt with: give --kek KEY-ID|alias/NAME".into())
        })?;
        let out = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(Self::context_map(context)))
            .send()
            .await
            .map_err(|e| kms_error("GenerateDataKey", key_id, &e))?;
        let plaintext = Zeroizing::new(
            out.plaintext
                .ok_or_else(|| bad_kms_answer("GenerateDataKey returned no plaintext"))?
                .into_inner(),
        );
        let dek = SecretBytes::new(plaintext.to_vec())
            .into_key()
            .map_err(|_| bad_kms_answer("GenerateDataKey returned a key that is not 32 bytes"))?;
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| bad_kms_answer("GenerateDataKey returned no ciphertext blob"))?;
        let wrapped = WrappedKey::decode(blob.as_ref()).map_err(|_| {
            bad_kms_answer(
                "the KMS's ciphertext blob is not a Coffer wrapped key: only Coffer's KMS \
                 can wrap client-side keys (use a key file or a passphrase with other stores)",
            )
        })?;
        if wrapped.reference().kind != KeyKind::Kms {
            return Err(bad_kms_answer(
                "the KMS's ciphertext blob is not a KMS key's",
            ));
        }
        Ok((dek, wrapped))
    }

    async fn decrypt(&self, wrapped: &WrappedKey, context: &Context) -> Result<SecretKey> {
        let key = wrapped
            .reference()
            .key_id_str()
            .unwrap_or("(non-UTF-8 id)")
            .to_owned();
        let out = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(wrapped.encode()))
            .set_encryption_context(Some(Self::context_map(context)))
            .send()
            .await
            .map_err(|e| kms_error("Decrypt", &key, &e))?;
        let plaintext = Zeroizing::new(
            out.plaintext
                .ok_or_else(|| bad_kms_answer("Decrypt returned no plaintext"))?
                .into_inner(),
        );
        SecretKey::from_slice(&plaintext)
            .map_err(|_| bad_kms_answer("Decrypt returned a key that is not 32 bytes"))
    }
}

fn bad_kms_answer(message: &str) -> Error {
    Error::Kms {
        operation: "response",
        code: "UnexpectedResponse".into(),
        message: message.into(),
        hint: None,
    }
}

fn kms_error<E>(
    operation: &'static str,
    key: &str,
    err: &aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> Error
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let (code, message, hint) = describe_sdk_error(err);
    let hint = hint.or_else(|| match code.as_str() {
        "DisabledException" => Some(format!(
            "the key-encryption key {key} is disabled in the KMS; enable it \
             (aws kms enable-key --key-id {key}) to read or write objects it protects"
        )),
        "NotFoundException" => Some(format!(
            "no KMS key {key}: check the id, ARN or alias (aws kms list-keys / list-aliases)"
        )),
        "KMSInvalidStateException" => Some(format!(
            "the KMS key {key} is pending deletion or not usable; cancel the deletion to use it"
        )),
        "AccessDeniedException" => Some(format!(
            "your identity may not use the KMS key {key} (key policy or identity policy)"
        )),
        "InvalidCiphertextException" => Some(
            "the object's wrapped key does not match its bucket and key (moved or altered)".into(),
        ),
        _ => None,
    });
    Error::Kms {
        operation,
        code,
        message,
        hint,
    }
}

/// A key-encryption key derived from a passphrase with Argon2id.
///
/// Each `PassphraseKek` draws one random salt for the objects it encrypts (one derivation per
/// run, not per object); to decrypt, it derives the key for each salt it meets, once.
pub struct PassphraseKek {
    passphrase: SecretBytes,
    salt: [u8; SALT_LEN],
    key: SecretKey,
    derived: Mutex<Vec<([u8; SALT_LEN], SecretKey)>>,
}

impl PassphraseKek {
    /// Derives the key for a fresh salt (about a quarter of a second: Argon2id is slow on
    /// purpose). An empty passphrase is refused.
    pub fn new(passphrase: SecretBytes) -> Result<Self> {
        if passphrase.is_empty() {
            return Err(Error::Invalid("the passphrase is empty".into()));
        }
        let mut salt = [0u8; SALT_LEN];
        random_fill(&mut salt)?;
        let key = derive(&passphrase, &salt)?;
        Ok(PassphraseKek {
            passphrase,
            salt,
            key,
            derived: Mutex::new(Vec::new()),
        })
    }

    fn reference(&self) -> KeyReference {
        KeyReference {
            kind: KeyKind::ClientKek,
            key_id: self.salt.to_vec(),
            version: PASSPHRASE_V1,
        }
    }

    fn key_for_salt(&self, salt: &[u8]) -> Result<SecretKey> {
        let salt: [u8; SALT_LEN] = salt
            .try_into()
            .map_err(|_| Error::Invalid("passphrase salt is not 16 bytes".into()))?;
        if salt == self.salt {
            return SecretKey::from_slice(self.key.expose()).map_err(Error::from);
        }
        let mut cache = self
            .derived
            .lock()
            .map_err(|_| Error::Invalid("passphrase cache poisoned".into()))?;
        if let Some((_, key)) = cache.iter().find(|(s, _)| *s == salt) {
            return SecretKey::from_slice(key.expose()).map_err(Error::from);
        }
        let key = derive(&self.passphrase, &salt)?;
        let copy = SecretKey::from_slice(key.expose())?;
        cache.push((salt, key));
        Ok(copy)
    }
}

/// Argon2id (RFC 9106) with parameter set 1, from the `argon2` crate.
fn derive(passphrase: &SecretBytes, salt: &[u8; SALT_LEN]) -> Result<SecretKey> {
    let params = argon2::Params::new(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES, Some(32))
        .map_err(|e| Error::Invalid(format!("Argon2id parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.expose(), salt, &mut out[..])
        .map_err(|e| Error::Invalid(format!("Argon2id: {e}")))?;
    Ok(SecretKey::from_bytes(&mut out))
}

/// The providers a reader holds; picks the one an object's key reference names.
#[derive(Default)]
pub struct Keyring {
    keks: Vec<Kek>,
}

impl Keyring {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, kek: Kek) -> Self {
        self.keks.push(kek);
        self
    }

    pub fn add(&mut self, kek: Kek) {
        self.keks.push(kek);
    }

    /// Unwraps `wrapped` with the provider its reference names, or says which key is needed.
    pub async fn unwrap_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &Context,
    ) -> Result<SecretKey> {
        let reference = wrapped.reference();
        match self.keks.iter().find(|k| k.can_unwrap(reference)) {
            Some(kek) => kek.unwrap_data_key(wrapped, context).await,
            None => Err(Error::MissingKek(format!(
                "the object was encrypted with {}, which was not given{}",
                describe_reference(reference),
                match (reference.kind, reference.version) {
                    (KeyKind::ClientKek, PASSPHRASE_V1) => {
                        "\nhint: give --kek passphrase (with COFFER_PASSPHRASE or --passphrase-file)"
                    }
                    (KeyKind::ClientKek, _) =>
                        "\nhint: give --kek file:PATH with the key file made by `coffer keygen`",
                    _ => "",
                }
            ))),
        }
    }
}

/// A human description of a key reference, without secrets.
pub fn describe_reference(reference: &KeyReference) -> String {
    match (reference.kind, reference.version) {
        (KeyKind::Kms, v) => format!(
            "KMS key {} (version {v})",
            reference.key_id_str().unwrap_or("(non-UTF-8 id)")
        ),
        (KeyKind::ClientKek, PASSPHRASE_V1) => "a passphrase (Argon2id)".into(),
        (KeyKind::ClientKek, _) => format!("the local key file with id {}", hex(&reference.key_id)),
        (kind, _) => format!("a {kind:?} key (a server-side key, not a client key)"),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context::from_pairs([("bucket", "b"), ("key", "k")]).unwrap_or_default()
    }

    #[tokio::test]
    async fn passphrase_round_trip_and_wrong_passphrase() -> Result<()> {
        let kek = Kek::Passphrase(PassphraseKek::new(SecretBytes::new(
            b"correct horse".to_vec(),
        ))?);
        let (dek, wrapped) = kek.new_data_key(&ctx()).await?;
        assert_eq!(wrapped.reference().version, PASSPHRASE_V1);
        // A reader with a fresh salt of its own derives the writer's key from the stored salt.
        let reader = Kek::Passphrase(PassphraseKek::new(SecretBytes::new(
            b"correct horse".to_vec(),
        ))?);
        assert!(reader.can_unwrap(wrapped.reference()));
        let back = reader.unwrap_data_key(&wrapped, &ctx()).await?;
        assert!(back.ct_eq(&dek));
        let wrong = Kek::Passphrase(PassphraseKek::new(SecretBytes::new(
            b"wrong horse".to_vec(),
        ))?);
        let err = wrong.unwrap_data_key(&wrapped, &ctx()).await.err();
        assert!(err.is_some_and(|e| e.to_string().contains("wrong passphrase")));
        // Another object's context fails too.
        let other = Context::from_pairs([("bucket", "b"), ("key", "other")])?;
        assert!(reader.unwrap_data_key(&wrapped, &other).await.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn keyring_picks_the_named_key_file_and_names_a_missing_one() -> Result<()> {
        let file = KeyFile::generate()?;
        let id = hex(file.id());
        let writer = Kek::KeyFile(file);
        let (dek, wrapped) = writer.new_data_key(&ctx()).await?;
        let ring = Keyring::new().with(Kek::KeyFile(KeyFile::generate()?));
        let err = ring.unwrap_data_key(&wrapped, &ctx()).await.err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains(&id) && msg.contains("--kek file:"), "{msg}");
        let ring = ring.with(writer);
        assert!(ring.unwrap_data_key(&wrapped, &ctx()).await?.ct_eq(&dek));
        Ok(())
    }

    #[test]
    fn empty_passphrase_is_refused() {
        assert!(PassphraseKek::new(SecretBytes::new(Vec::new())).is_err());
    }
}
