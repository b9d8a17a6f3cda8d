//! Secret types: zeroized on drop, never `Debug`, never `Clone`, compared in constant time.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::{Error, Result};

/// A 256-bit symmetric key (data key, key-encryption key, CMK version material…).
///
/// The only way to read the bytes is [`SecretKey::expose`], so every use is greppable.
pub struct SecretKey(Box<[u8; 32]>);

impl SecretKey {
    pub const LEN: usize = 32;

    /// A fresh key from the system CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut key = Box::new([0u8; 32]);
        SystemRandom::new()
            .fill(&mut key[..])
            .map_err(|_| Error::Crypto)?;
        Ok(SecretKey(key))
    }

    /// Takes ownership of `bytes`; the caller's array is wiped.
    pub fn from_bytes(bytes: &mut [u8; 32]) -> Self {
        let key = Box::new(*bytes);
        bytes.zeroize();
        SecretKey(key)
    }

    /// Copies a 32-byte slice; any other length is an error.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != Self::LEN {
            return Err(Error::InvalidArgument("a key must be 32 bytes"));
        }
        let mut key = Box::new([0u8; 32]);
        key.copy_from_slice(bytes);
        Ok(SecretKey(key))
    }

    /// The key bytes. Callers must not copy them into non-zeroizing storage.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &SecretKey) -> bool {
        self.0[..].ct_eq(&other.0[..]).into()
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Variable-length secret bytes (a KMS plaintext, a passphrase), zeroized on drop.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    pub fn from_zeroizing(bytes: Zeroizing<Vec<u8>>) -> Self {
        SecretBytes(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time equality (lengths are not secret).
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        self.0.as_slice().ct_eq(other).into()
    }

    /// Interprets the bytes as a 256-bit key.
    pub fn into_key(self) -> Result<SecretKey> {
        SecretKey::from_slice(&self.0)
    }
}

/// Fills `out` from the system CSPRNG.
pub fn random_fill(out: &mut [u8]) -> Result<()> {
    SystemRandom::new().fill(out).map_err(|_| Error::Crypto)
}

/// Constant-time comparison of two byte strings (tags, commitments, fingerprints).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}
