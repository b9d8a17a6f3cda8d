//! C2SP chunked-encryption v1 (https://c2sp.org/chunked-encryption) with AEAD_AES_256_GCM,
//! as a sans-I/O engine (spec/object-format.md §4).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::hkdf::{KeyType, Prk, HKDF_SHA256};
use zeroize::Zeroizing;

use crate::secret::{ct_eq, random_fill, SecretKey};
use crate::{Error, Result};

/// Plaintext bytes per chunk (C2SP "Message chunking"; frozen).
pub const CHUNK_SIZE: usize = 16384;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// A full chunk on the wire.
pub const ENCRYPTED_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_LEN;
pub const SALT_LEN: usize = 24;
pub const COMMITMENT_LEN: usize = 32;
/// salt || commitment, before the first chunk.
pub const PREFIX_LEN: usize = SALT_LEN + COMMITMENT_LEN;
/// Coffer's chunk-count limit: 2³² chunks (64 TiB), the lowest C2SP allows.
pub const MAX_CHUNKS: u64 = 1 << 32;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const INFO_PREFIX: &[u8] = b"c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM\x00";

struct Len(usize);
impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand(prk = input key, info = parts concatenated), `out.len()` bytes.
pub(crate) fn hkdf_expand(input_key: &SecretKey, info: &[&[u8]], out: &mut [u8]) -> Result<()> {
    let prk = Prk::new_less_safe(HKDF_SHA256, input_key.expose());
    prk.expand(info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| Error::Crypto)
}

/// The per-message key, base nonce and commitment.
struct Derived {
    key: LessSafeKey,
    base_nonce: [u8; NONCE_LEN],
    commitment: [u8; COMMITMENT_LEN],
}

fn derive(input_key: &SecretKey, salt: &[u8; SALT_LEN], context: &[u8]) -> Result<Derived> {
    // key || base nonce || commitment = HKDF-Expand(input key, info) (C2SP "Key derivation").
    let mut okm = Zeroizing::new([0u8; KEY_LEN + NONCE_LEN + COMMITMENT_LEN]);
    hkdf_expand(input_key, &[INFO_PREFIX, salt, context], &mut okm[..])?;
    let key = UnboundKey::new(&AES_256_GCM, &okm[..KEY_LEN])
        .map(LessSafeKey::new)
        .map_err(|_| Error::Crypto)?;
    let mut base_nonce = [0u8; NONCE_LEN];
    base_nonce.copy_from_slice(&okm[KEY_LEN..KEY_LEN + NONCE_LEN]);
    let mut commitment = [0u8; COMMITMENT_LEN];
    commitment.copy_from_slice(&okm[KEY_LEN + NONCE_LEN..]);
    Ok(Derived {
        key,
        base_nonce,
        commitment,
    })
}

impl Derived {
    /// base nonce XOR the chunk number as a big-endian integer (C2SP "AEAD usage").
    fn nonce(&self, index: u64) -> Result<Nonce> {
        if index >= MAX_CHUNKS {
            return Err(Error::InvalidArgument("chunk counter exceeds 2^32"));
        }
        let mut n = self.base_nonce;
        for (b, c) in n[4..].iter_mut().zip(index.to_be_bytes()) {
            *b ^= c;
        }
        Ok(Nonce::assume_unique_for_key(n))
    }
}

/// Seals chunks of one message. `&self` methods: chunks can be sealed on several threads.
pub struct ChunkSealer {
    derived: Derived,
    prefix: [u8; PREFIX_LEN],
}

impl ChunkSealer {
    /// A sealer with a fresh random salt.
    pub fn new(input_key: &SecretKey, context: &[u8]) -> Result<Self> {
        let mut salt = [0u8; SALT_LEN];
        random_fill(&mut salt)?;
        Self::with_salt(input_key, context, salt)
    }

    /// A sealer with a given salt. The salt MUST NOT repeat for an input key: only for test
    /// vectors.
    pub fn with_salt(input_key: &SecretKey, context: &[u8], salt: [u8; SALT_LEN]) -> Result<Self> {
        let derived = derive(input_key, &salt, context)?;
        let mut prefix = [0u8; PREFIX_LEN];
        prefix[..SALT_LEN].copy_from_slice(&salt);
        prefix[SALT_LEN..].copy_from_slice(&derived.commitment);
        Ok(ChunkSealer { derived, prefix })
    }

    /// salt || commitment, to be written before the first chunk.
    pub fn prefix(&self) -> &[u8; PREFIX_LEN] {
        &self.prefix
    }

    /// Seals chunk `index` in place: `buf` holds the plaintext followed by `TAG_LEN` spare
    /// bytes that receive the tag.
    pub fn seal_in_place(&self, index: u64, buf: &mut [u8]) -> Result<()> {
        let split = buf
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Error::InvalidArgument(
                "chunk buffer lacks room for the tag",
            ))?;
        let (plain, tag_out) = buf.split_at_mut(split);
        let tag = self
            .derived
            .key
            .seal_in_place_separate_tag(self.derived.nonce(index)?, Aad::empty(), plain)
            .map_err(|_| Error::Crypto)?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(())
    }
}

/// Opens chunks of one message, after the commitment was checked.
pub struct ChunkOpener {
    derived: Derived,
}

impl ChunkOpener {
    /// Derives the keys from the salt in `prefix` and checks the commitment (in constant time)
    /// before any chunk can be opened.
    pub fn new(input_key: &SecretKey, context: &[u8], prefix: &[u8; PREFIX_LEN]) -> Result<Self> {
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&prefix[..SALT_LEN]);
        let derived = derive(input_key, &salt, context)?;
        if !ct_eq(&derived.commitment, &prefix[SALT_LEN..]) {
            return Err(Error::Integrity("key commitment mismatch"));
        }
        Ok(ChunkOpener { derived })
    }

    /// Opens chunk `index` in place (`buf` = ciphertext || tag) and returns the plaintext
    /// length. A non-final chunk must be exactly full; the final chunk must be shorter than a
    /// full chunk (C2SP truncation rule).
    pub fn open_in_place(&self, index: u64, buf: &mut [u8], is_final: bool) -> Result<usize> {
        let valid = if is_final {
            (TAG_LEN..ENCRYPTED_CHUNK_SIZE).contains(&buf.len())
        } else {
            buf.len() == ENCRYPTED_CHUNK_SIZE
        };
        if !valid {
            return Err(Error::Integrity(
                "chunk length invalid (truncated or extended)",
            ));
        }
        let plain = self
            .derived
            .key
            .open_in_place(self.derived.nonce(index)?, Aad::empty(), buf)
            .map_err(|_| Error::Integrity("chunk failed to authenticate"))?;
        Ok(plain.len())
    }
}

impl ChunkOpener {
    /// Opens chunk `index` whose ciphertext body is in `body` (decrypted in place) and whose
    /// tag is `tag`; the same length rules as [`ChunkOpener::open_in_place`].
    pub fn open_detached(
        &self,
        index: u64,
        body: &mut [u8],
        tag: &[u8],
        is_final: bool,
    ) -> Result<()> {
        let valid = if is_final {
            body.len() < CHUNK_SIZE
        } else {
            body.len() == CHUNK_SIZE
        };
        if !valid || tag.len() != TAG_LEN {
            return Err(Error::Integrity(
                "chunk length invalid (truncated or extended)",
            ));
        }
        self.derived
            .key
            .open_in_place_separate_tag(self.derived.nonce(index)?, Aad::empty(), tag, body)
            .map_err(|_| Error::Integrity("chunk failed to authenticate"))?;
        Ok(())
    }
}

/// Where the payload's chunks are, given its length (spec/object-format.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadLayout {
    /// Number of chunks including the (short) final one; ≥ 1.
    pub chunks: u64,
    /// Plaintext length.
    pub plaintext_len: u64,
}

impl PayloadLayout {
    /// Validates a payload length (salt, commitment and chunks) and derives the layout.
    pub fn from_payload_len(payload_len: u64) -> Result<Self> {
        let body = payload_len
            .checked_sub(PREFIX_LEN as u64)
            .ok_or(Error::Integrity("payload shorter than salt and commitment"))?;
        let full = body / ENCRYPTED_CHUNK_SIZE as u64;
        let last = body % ENCRYPTED_CHUNK_SIZE as u64;
        if last < TAG_LEN as u64 {
            return Err(Error::Integrity("payload truncated or extended"));
        }
        if full + 1 > MAX_CHUNKS {
            return Err(Error::Integrity("payload has too many chunks"));
        }
        Ok(PayloadLayout {
            chunks: full + 1,
            plaintext_len: full * CHUNK_SIZE as u64 + (last - TAG_LEN as u64),
        })
    }

    /// The payload length for a plaintext length.
    pub fn payload_len(plaintext_len: u64) -> u64 {
        let full = plaintext_len / CHUNK_SIZE as u64;
        PREFIX_LEN as u64
            + full * ENCRYPTED_CHUNK_SIZE as u64
            + (plaintext_len % CHUNK_SIZE as u64)
            + TAG_LEN as u64
    }

    /// Offset of chunk `index` within the payload.
    pub fn chunk_offset(index: u64) -> u64 {
        PREFIX_LEN as u64 + index * ENCRYPTED_CHUNK_SIZE as u64
    }

    /// Encrypted length of chunk `index`.
    pub fn chunk_len(&self, index: u64) -> u64 {
        if index + 1 == self.chunks {
            (self.plaintext_len % CHUNK_SIZE as u64) + TAG_LEN as u64
        } else {
            ENCRYPTED_CHUNK_SIZE as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_c2sp_examples() -> Result<()> {
        // Empty message: one empty chunk. 16 KiB: a full chunk and an empty one.
        for (len, chunks) in [(0u64, 1u64), (1, 1), (16383, 1), (16384, 2), (20480, 2)] {
            let p = PayloadLayout::payload_len(len);
            let l = PayloadLayout::from_payload_len(p)?;
            assert_eq!((l.plaintext_len, l.chunks), (len, chunks));
        }
        // 56 + k * 16400 is truncated; < 56 + 16 invalid.
        assert!(PayloadLayout::from_payload_len(56 + 16400).is_err());
        assert!(PayloadLayout::from_payload_len(56 + 15).is_err());
        assert!(PayloadLayout::from_payload_len(55).is_err());
        Ok(())
    }
}
