//! Coffer's key management core.
//!
//! - [`seal`]: the root key, sealed by a key file, a passphrase (Argon2id) or a PKCS#11
//!   token ([`pkcs11`]);
//! - [`kms`]: customer master keys — versions, rotation, states, scheduled deletion
//!   (crypto-shredding), BYOK import, and the cryptographic operations; ciphertext blobs are
//!   `coffer_format::WrappedKey`s (spec/wrapped-key.md);
//! - [`store`]: the async [`store::KeyStore`] trait with its written contract, its
//!   conformance suite, the SQLCipher implementation (page-encrypted, keyed from the root key;
//!   the default) and the in-memory reference model; a KMS is opened over either (or any
//!   other backend) with [`Kms::builder`];
//! - [`authz`]: key policies and grants; [`Kms::authorize`] returns the [`KeyUse`] proof
//!   every cryptographic operation takes;
//! - [`locked`]: locked, non-dumpable memory for key material, and core-dump hardening.
//!
//! docs/kms.md gives the whole picture.
#![deny(unsafe_code)]

pub mod authz;
mod cache;
pub mod clock;
pub mod error;
pub mod kms;
pub mod locked;
pub mod pkcs11;
pub mod seal;
pub mod store;

pub use authz::{CallContext, KeyUse, MANAGED_OWNER, S3_VIA_SERVICE};
pub use clock::{Clock, ManualClock, SystemClock};
pub use coffer_policy::Principal;
pub use error::{KmsError, Result};
pub use kms::{
    Ciphertext, DataKey, DeletionGuard, ImportParameters, KeyMetadata, KeyRotation, Kms,
    KmsBuilder, KmsConfig, MaintenanceReport, Plaintext, ReEncrypted, WrappingKeySpec,
};
pub use pkcs11::Pkcs11Sealer;
pub use seal::{Argon2Params, KeyFileSealer, PassphraseSealer, SealedRoot, Sealer};
pub use store::memory::MemoryKeyStore;
pub use store::sqlcipher::SqlCipherStore;
pub use store::{GrantConstraints, GrantRecord, KeyState, KeyStore, Origin, RotationType};
