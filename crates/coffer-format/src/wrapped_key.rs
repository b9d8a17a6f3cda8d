//! Self-describing wrapped keys (spec/wrapped-key.md).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use crate::context::Context;
use crate::cursor::Cursor;
use crate::secret::{random_fill, SecretBytes, SecretKey};
use crate::{Error, Result};

/// spec/wrapped-key.md §2 (frozen).
pub const MAGIC: [u8; 3] = *b"CWK";
pub const VERSION: u8 = 0x01;
pub const ALGORITHM_AES_256_GCM: u8 = 0x01;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Largest plaintext a wrapped key may carry (AWS KMS's Encrypt limit).
pub const MAX_PLAINTEXT_LEN: usize = 4096;
const MIN_CT_LEN: usize = 1 + TAG_LEN;
const MAX_CT_LEN: usize = MAX_PLAINTEXT_LEN + TAG_LEN;

/// Which key model a wrapped key belongs to (spec/wrapped-key.md §3).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
pub enum KeyKind {
    /// Service-managed key (SSE-S3).
    Service = 0x01,
    /// Customer master key in Coffer's KMS (SSE-KMS, KMS ciphertext blobs).
    Kms = 0x02,
    /// Customer-provided key (SSE-C); the id is a keyed fingerprint.
    CustomerProvided = 0x03,
    /// Client-side key-encryption key (key file, passphrase, or a KMS key used by a client).
    ClientKek = 0x04,
    /// The root key (wraps CMK versions).
    Root = 0x05,
}

impl KeyKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x01 => KeyKind::Service,
            0x02 => KeyKind::Kms,
            0x03 => KeyKind::CustomerProvided,
            0x04 => KeyKind::ClientKek,
            0x05 => KeyKind::Root,
            _ => return None,
        })
    }

    fn requires_utf8_id(self) -> bool {
        matches!(self, KeyKind::Service | KeyKind::Kms | KeyKind::Root)
    }
}

/// Which key (and version) unwraps a wrapped key: the wrapped key's descriptor.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct KeyReference {
    pub kind: KeyKind,
    /// 1..=255 bytes; UTF-8 for service, KMS and root keys.
    pub key_id: Vec<u8>,
    /// ≥ 1.
    pub version: u32,
}

impl KeyReference {
    pub fn new(kind: KeyKind, key_id: impl Into<Vec<u8>>, version: u32) -> Result<Self> {
        let reference = KeyReference {
            kind,
            key_id: key_id.into(),
            version,
        };
        reference.validate().map_err(|_| {
            Error::InvalidArgument(
                "key id must be 1..=255 bytes (UTF-8 where required), version ≥ 1",
            )
        })?;
        Ok(reference)
    }

    fn validate(&self) -> Result<()> {
        if self.key_id.is_empty() || self.key_id.len() > 255 {
            return Err(Error::Malformed("key id length out of range"));
        }
        if self.version == 0 {
            return Err(Error::Malformed("key version 0"));
        }
        if self.kind.requires_utf8_id() && std::str::from_utf8(&self.key_id).is_err() {
            return Err(Error::Malformed("key id is not UTF-8"));
        }
        Ok(())
    }

    /// The key id as text, where it is text.
    pub fn key_id_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.key_id).ok()
    }

    /// The descriptor bytes (magic through algorithm), the first half of the AAD.
    fn descriptor(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(11 + self.key_id.len());
        d.extend_from_slice(&MAGIC);
        d.push(VERSION);
        d.push(self.kind as u8);
        // validate() bounds the id to 255 bytes.
        d.push(self.key_id.len() as u8);
        d.extend_from_slice(&self.key_id);
        d.extend_from_slice(&self.version.to_be_bytes());
        d.push(ALGORITHM_AES_256_GCM);
        d
    }
}

/// A secret sealed under a wrapping key, bound to an encryption context.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WrappedKey {
    reference: KeyReference,
    nonce: [u8; NONCE_LEN],
    /// AES-256-GCM ciphertext with its tag appended.
    ciphertext: Vec<u8>,
}

fn aad(reference: &KeyReference, context: &Context) -> Vec<u8> {
    let mut aad = reference.descriptor();
    context.encode_into(&mut aad);
    aad
}

pub(crate) fn aead_key(key: &SecretKey) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, key.expose())
        .map(LessSafeKey::new)
        .map_err(|_| Error::Crypto)
}

impl WrappedKey {
    /// Wraps `plaintext` (1..=4096 bytes) under `wrapping_key` (spec/wrapped-key.md §6).
    pub fn wrap(
        reference: KeyReference,
        wrapping_key: &SecretKey,
        plaintext: &[u8],
        context: &Context,
    ) -> Result<Self> {
        reference.validate()?;
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(Error::InvalidArgument(
                "wrapped plaintext must be 1..=4096 bytes",
            ));
        }
        let mut nonce = [0u8; NONCE_LEN];
        random_fill(&mut nonce)?;
        let mut ciphertext = Vec::with_capacity(plaintext.len() + TAG_LEN);
        ciphertext.extend_from_slice(plaintext);
        aead_key(wrapping_key)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(&reference, context)),
                &mut ciphertext,
            )
            .map_err(|_| Error::Crypto)?;
        Ok(WrappedKey {
            reference,
            nonce,
            ciphertext,
        })
    }

    /// Unwraps with `wrapping_key`; fails on a wrong key, wrong context or any altered byte.
    pub fn unwrap(&self, wrapping_key: &SecretKey, context: &Context) -> Result<SecretBytes> {
        let mut buf = zeroize::Zeroizing::new(self.ciphertext.clone());
        let len = aead_key(wrapping_key)?
            .open_in_place(
                Nonce::assume_unique_for_key(self.nonce),
                Aad::from(aad(&self.reference, context)),
                &mut buf,
            )
            .map_err(|_| Error::Integrity("wrapped key failed to authenticate"))?
            .len();
        buf.truncate(len);
        Ok(SecretBytes::from_zeroizing(buf))
    }

    /// Which key unwraps this one.
    pub fn reference(&self) -> &KeyReference {
        &self.reference
    }

    pub fn encoded_len(&self) -> usize {
        25 + self.reference.key_id.len() + self.ciphertext.len()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.reference.descriptor());
        out.extend_from_slice(&self.nonce);
        // wrap()/decode() bound the ciphertext to 4112 bytes.
        out.extend_from_slice(&(self.ciphertext.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.ciphertext);
    }

    /// Decodes a wrapped key that must fill `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let (key, used) = Self::decode_prefix(bytes)?;
        if used != bytes.len() {
            return Err(Error::Malformed("trailing bytes after wrapped key"));
        }
        Ok(key)
    }

    /// Decodes a wrapped key at the start of `bytes`; returns it and its encoded length.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Self, usize)> {
        let mut cur = Cursor::new(bytes);
        if cur.array::<3>()? != MAGIC {
            return Err(Error::Malformed("not a wrapped key (bad magic)"));
        }
        if cur.u8()? != VERSION {
            return Err(Error::Malformed("unsupported wrapped key version"));
        }
        let kind = KeyKind::from_u8(cur.u8()?).ok_or(Error::Malformed("unknown key kind"))?;
        let id_len = cur.u8()? as usize;
        let key_id = cur.take(id_len)?.to_vec();
        let version = cur.u32()?;
        let reference = KeyReference {
            kind,
            key_id,
            version,
        };
        reference.validate()?;
        if cur.u8()? != ALGORITHM_AES_256_GCM {
            return Err(Error::Malformed("unknown wrapping algorithm"));
        }
        let nonce = cur.array::<NONCE_LEN>()?;
        let ct_len = cur.u16()? as usize;
        if !(MIN_CT_LEN..=MAX_CT_LEN).contains(&ct_len) {
            return Err(Error::Malformed(
                "wrapped key ciphertext length out of range",
            ));
        }
        let ciphertext = cur.take(ct_len)?.to_vec();
        Ok((
            WrappedKey {
                reference,
                nonce,
                ciphertext,
            },
            cur.position(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> Context {
        Context::from_pairs(pairs.iter().copied()).unwrap_or_default()
    }

    #[test]
    fn wrap_unwrap_round_trip_and_binding() -> Result<()> {
        let kek = SecretKey::generate()?;
        let reference = KeyReference::new(KeyKind::Kms, "1234abcd", 3)?;
        let c = ctx(&[("bucket", "b"), ("key", "k")]);
        let w = WrappedKey::wrap(reference.clone(), &kek, b"0123456789abcdef", &c)?;
        let enc = w.encode();
        let back = WrappedKey::decode(&enc)?;
        assert_eq!(back.reference(), &reference);
        assert!(back.unwrap(&kek, &c)?.ct_eq(b"0123456789abcdef"));
        assert!(back
            .unwrap(&kek, &ctx(&[("bucket", "b"), ("key", "x")]))
            .is_err());
        assert!(back.unwrap(&SecretKey::generate()?, &c).is_err());
        // Every single-bit flip is rejected, by the parser or by authentication.
        for i in 0..enc.len() * 8 {
            let mut t = enc.clone();
            t[i / 8] ^= 1 << (i % 8);
            let ok = WrappedKey::decode(&t)
                .and_then(|w| w.unwrap(&kek, &c))
                .is_ok();
            assert!(!ok, "bit {i} flip accepted");
        }
        Ok(())
    }
}
