//! The PKCS#11 sealer: the root key is sealed by a non-extractable AES-256 key that lives in
//! a hardware token (tested with SoftHSM2) and never leaves it.
//!
//! `seal` finds (or, on first use, generates inside the token) the AES key labelled
//! `key_label` — `CKA_TOKEN`, `CKA_SENSITIVE`, not `CKA_EXTRACTABLE` — and has the *token*
//! encrypt the root key with `CKM_AES_GCM` (random 96-bit IV, 128-bit tag, the root key id as
//! AAD). The result goes to `root.sealed` like any other sealer's. `unseal` has the token
//! decrypt it into locked memory. The token is needed at every start, not per request.

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use coffer_format::{SecretBytes, SecretKey};
use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{KmsError, Result};
use crate::seal::{SealedRoot, Sealer};

/// Where the token is and how to log in.
pub struct Pkcs11Sealer {
    /// The PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    pub token_label: String,
    /// User PIN.
    pub pin: SecretBytes,
    /// Label of the AES key inside the token.
    pub key_label: String,
}

impl std::fmt::Debug for Pkcs11Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Sealer")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Pkcs11Params {
    token_label: String,
    key_label: String,
    mechanism: String,
    iv: String,
}

const MECHANISM: &str = "CKM_AES_GCM";

fn unseal_err(what: &str) -> impl Fn(cryptoki::error::Error) -> KmsError + '_ {
    move |e| KmsError::Unseal(format!("PKCS#11: {what}: {e}"))
}

fn aad(root_key_id: &str) -> Vec<u8> {
    format!("coffer-root-seal/{root_key_id}").into_bytes()
}

impl Pkcs11Sealer {
    /// Loads the module, finds the token and logs in. The returned context finalizes the
    /// module when dropped.
    fn login(&self) -> Result<(Pkcs11, Session)> {
        let pkcs11 = Pkcs11::new(&self.module).map_err(|e| {
            KmsError::Unseal(format!(
                "cannot load PKCS#11 module {}: {e}",
                self.module.display()
            ))
        })?;
        pkcs11
            .initialize(CInitializeArgs::OsThreads)
            .map_err(unseal_err("C_Initialize"))?;
        let slots = pkcs11
            .get_slots_with_token()
            .map_err(unseal_err("list slots"))?;
        let slot = slots
            .into_iter()
            .find(|slot| {
                pkcs11
                    .get_token_info(*slot)
                    .is_ok_and(|info| info.label().trim_end() == self.token_label)
            })
            .ok_or_else(|| {
                KmsError::Unseal(format!(
                    "no PKCS#11 token labelled {:?} is present",
                    self.token_label
                ))
            })?;
        let session = pkcs11
            .open_rw_session(slot)
            .map_err(unseal_err("open session"))?;
        let pin = std::str::from_utf8(self.pin.expose())
            .map_err(|_| KmsError::Unseal("the PKCS#11 PIN is not UTF-8".into()))?;
        session
            .login(UserType::User, Some(&AuthPin::new(pin.to_owned())))
            .map_err(unseal_err("login (wrong PIN?)"))?;
        Ok((pkcs11, session))
    }

    fn find_key(&self, session: &Session) -> Result<Option<ObjectHandle>> {
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Label(self.key_label.as_bytes().to_vec()),
            ])
            .map_err(unseal_err("find key"))?;
        Ok(found.into_iter().next())
    }

    fn generate_key(&self, session: &Session) -> Result<ObjectHandle> {
        session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::ValueLen(32.into()),
                    Attribute::Label(self.key_label.as_bytes().to_vec()),
                ],
            )
            .map_err(unseal_err("generate AES key in token"))
    }
}

impl Sealer for Pkcs11Sealer {
    fn name(&self) -> &'static str {
        "pkcs11"
    }

    fn seal(&self, root: &SecretKey, root_key_id: &str) -> Result<SealedRoot> {
        let (_pkcs11, session) = self.login()?;
        let key = match self.find_key(&session)? {
            Some(key) => key,
            None => self.generate_key(&session)?,
        };
        let mut iv = [0u8; 12];
        coffer_format::secret::random_fill(&mut iv)?;
        let aad = aad(root_key_id);
        let sealed = session
            .encrypt(
                &Mechanism::AesGcm(GcmParams::new(&iv, &aad, 128.into())),
                key,
                root.expose(),
            )
            .map_err(unseal_err("encrypt in token"))?;
        let params = Pkcs11Params {
            token_label: self.token_label.clone(),
            key_label: self.key_label.clone(),
            mechanism: MECHANISM.into(),
            iv: B64.encode(iv),
        };
        SealedRoot::new(self.name(), root_key_id, params, &sealed)
    }

    fn unseal(&self, sealed: &SealedRoot) -> Result<SecretKey> {
        sealed.expect_sealer(self.name())?;
        let params: Pkcs11Params = serde_json::from_value(sealed.params.clone())
            .map_err(|e| KmsError::Unseal(format!("bad PKCS#11 sealer parameters: {e}")))?;
        if params.mechanism != MECHANISM {
            return Err(KmsError::Unseal(format!(
                "unknown mechanism {}",
                params.mechanism
            )));
        }
        let iv = B64
            .decode(&params.iv)
            .map_err(|_| KmsError::Unseal("bad IV".into()))?;
        let ciphertext = sealed.sealed_bytes()?;
        let (_pkcs11, session) = self.login()?;
        let key = self.find_key(&session)?.ok_or_else(|| {
            KmsError::Unseal(format!(
                "token {:?} has no key labelled {:?}",
                self.token_label, self.key_label
            ))
        })?;
        let aad = aad(&sealed.root_key_id);
        let plain = Zeroizing::new(
            session
                .decrypt(
                    &Mechanism::AesGcm(GcmParams::new(&iv, &aad, 128.into())),
                    key,
                    &ciphertext,
                )
                .map_err(|_| {
                    KmsError::Unseal(format!(
                        "the key {:?} in token {:?} does not unseal this data directory",
                        self.key_label, self.token_label
                    ))
                })?,
        );
        SecretKey::from_slice(&plain)
            .map_err(|_| KmsError::Unseal("unsealed root key has the wrong length".into()))
    }
}
