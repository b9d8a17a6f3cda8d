//! The versioned object header and the encrypted trailer (spec/object-format.md §3, §5).

use aws_lc_rs::aead::{Aad, Nonce};
use zeroize::Zeroizing;

use crate::chunked::hkdf_expand;
use crate::context::Metadata;
use crate::cursor::Cursor;
use crate::secret::{random_fill, SecretKey};
use crate::wrapped_key::{aead_key, WrappedKey};
use crate::{Error, Result};

/// spec/object-format.md §3 (frozen).
pub const MAGIC: [u8; 6] = *b"COFFER";
pub const FORMAT_VERSION: u8 = 0x01;
/// HKDF-SHA-256, AEAD_AES_256_GCM, 16 KiB chunks, CRC-32C.
pub const SUITE: u8 = 0x01;
/// magic, version, suite, header_len.
pub const FIXED_LEN: usize = 12;
pub const MAX_HEADER_LEN: usize = 65536;
/// Smallest valid header (spec/object-format.md §7 rule 2): fixed fields, a wrapped 32-byte
/// DEK with a 1-byte key id, metadata_len, and an encrypted empty map.
pub const MIN_HEADER_LEN: usize = FIXED_LEN + (25 + 1 + 32 + 16) + 4 + 30;
/// nonce || (plaintext length u64 || crc32c u32) || tag.
pub const TRAILER_LEN: usize = 12 + 12 + 16;
const NONCE_LEN: usize = 12;
const BLOCK_OVERHEAD: usize = NONCE_LEN + 16;
const METADATA_LABEL: &[u8] = b"coffer.object/v1 metadata\x00";
const TRAILER_LABEL: &[u8] = b"coffer.object/v1 trailer\x00";

/// The keys derived from an object's DEK for its metadata block and trailer.
pub(crate) struct SideKeys {
    metadata: SecretKey,
    trailer: SecretKey,
}

impl SideKeys {
    pub(crate) fn derive(dek: &SecretKey, context: &[u8]) -> Result<Self> {
        let mut m = Zeroizing::new([0u8; 32]);
        hkdf_expand(dek, &[METADATA_LABEL, context], &mut m[..])?;
        let mut t = Zeroizing::new([0u8; 32]);
        hkdf_expand(dek, &[TRAILER_LABEL, context], &mut t[..])?;
        Ok(SideKeys {
            metadata: SecretKey::from_bytes(&mut m),
            trailer: SecretKey::from_bytes(&mut t),
        })
    }

    fn seal_block(key: &SecretKey, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        random_fill(&mut nonce)?;
        let mut out = Vec::with_capacity(plaintext.len() + BLOCK_OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = aead_key(key)?
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&MAGIC_VERSION_SUITE),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| Error::Crypto)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    fn open_block(key: &SecretKey, block: &[u8], what: &'static str) -> Result<Zeroizing<Vec<u8>>> {
        if block.len() < BLOCK_OVERHEAD {
            return Err(Error::Malformed("encrypted block too short"));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&block[..NONCE_LEN]);
        let mut buf = Zeroizing::new(block[NONCE_LEN..].to_vec());
        let len = aead_key(key)?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&MAGIC_VERSION_SUITE),
                &mut buf,
            )
            .map_err(|_| Error::Integrity(what))?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// The 40-byte trailer for a plaintext of `len` bytes with CRC-32C `crc`.
    pub(crate) fn seal_trailer(&self, len: u64, crc: u32) -> Result<Vec<u8>> {
        let mut plain = [0u8; 12];
        plain[..8].copy_from_slice(&len.to_be_bytes());
        plain[8..].copy_from_slice(&crc.to_be_bytes());
        Self::seal_block(&self.trailer, &plain)
    }

    /// Opens a trailer: (plaintext length, CRC-32C).
    pub(crate) fn open_trailer(&self, trailer: &[u8]) -> Result<(u64, u32)> {
        if trailer.len() != TRAILER_LEN {
            return Err(Error::Integrity("trailer length"));
        }
        let plain = Self::open_block(&self.trailer, trailer, "trailer failed to authenticate")?;
        let mut len = [0u8; 8];
        len.copy_from_slice(&plain[..8]);
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&plain[8..12]);
        Ok((u64::from_be_bytes(len), u32::from_be_bytes(crc)))
    }
}

const MAGIC_VERSION_SUITE: [u8; 8] = {
    let mut a = [0u8; 8];
    let mut i = 0;
    while i < 6 {
        a[i] = MAGIC[i];
        i += 1;
    }
    a[6] = FORMAT_VERSION;
    a[7] = SUITE;
    a
};

/// Builds a header for an object whose DEK is `dek`, wrapped as `wrapped_dek`.
pub(crate) fn build_header(
    keys: &SideKeys,
    wrapped_dek: &WrappedKey,
    metadata: &Metadata,
) -> Result<Vec<u8>> {
    let map = Zeroizing::new(metadata.encode());
    let block = SideKeys::seal_block(&keys.metadata, &map)?;
    let header_len = FIXED_LEN + wrapped_dek.encoded_len() + 4 + block.len();
    if header_len > MAX_HEADER_LEN {
        return Err(Error::InvalidArgument(
            "object metadata too large for the header (64 KiB)",
        ));
    }
    let mut out = Vec::with_capacity(header_len);
    out.extend_from_slice(&MAGIC_VERSION_SUITE);
    out.extend_from_slice(&(header_len as u32).to_be_bytes());
    wrapped_dek.encode_into(&mut out);
    out.extend_from_slice(&(block.len() as u32).to_be_bytes());
    out.extend_from_slice(&block);
    Ok(out)
}

/// Reads `header_len` from the 12 fixed bytes, checking magic, version, suite and bounds.
pub fn header_len(fixed: &[u8]) -> Result<usize> {
    let mut cur = Cursor::new(fixed);
    if cur.array::<6>()? != MAGIC {
        return Err(Error::Malformed("not a Coffer object (bad magic)"));
    }
    if cur.u8()? != FORMAT_VERSION {
        return Err(Error::Malformed("unsupported format version"));
    }
    if cur.u8()? != SUITE {
        return Err(Error::Malformed("unsupported algorithm suite"));
    }
    let len = cur.u32()? as usize;
    if !(MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&len) {
        return Err(Error::Malformed("header length out of range"));
    }
    Ok(len)
}

/// A parsed (not yet decrypted) object header.
#[derive(Clone, Debug)]
pub struct Header {
    wrapped_dek: WrappedKey,
    metadata_block: Vec<u8>,
    len: usize,
}

impl Header {
    /// Parses a complete header; `bytes` must be exactly `header_len` long.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let len = header_len(bytes)?;
        if bytes.len() != len {
            return Err(Error::Malformed("header length mismatch"));
        }
        let body = &bytes[FIXED_LEN..];
        let (wrapped_dek, used) = WrappedKey::decode_prefix(body)?;
        let mut cur = Cursor::new(&body[used..]);
        let block_len = cur.u32()? as usize;
        if block_len < BLOCK_OVERHEAD + 2 {
            return Err(Error::Malformed("metadata block too short"));
        }
        let metadata_block = cur.take(block_len)?.to_vec();
        cur.finish()?;
        Ok(Header {
            wrapped_dek,
            metadata_block,
            len,
        })
    }

    /// The wrapped data key; its reference names the key that unwraps it.
    pub fn wrapped_dek(&self) -> &WrappedKey {
        &self.wrapped_dek
    }

    /// The header's encoded length.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Decrypts the metadata block.
    pub(crate) fn open_metadata(&self, keys: &SideKeys) -> Result<Metadata> {
        let plain = SideKeys::open_block(
            &keys.metadata,
            &self.metadata_block,
            "metadata block failed to authenticate",
        )?;
        Metadata::decode(&plain)
    }
}

/// An unwrapped data key checked against the object it came from.
pub(crate) fn dek_from_unwrapped(bytes: crate::SecretBytes) -> Result<SecretKey> {
    bytes
        .into_key()
        .map_err(|_| Error::Integrity("wrapped data key is not 32 bytes"))
}

/// Seals a trailer for `dek`/`context` with arbitrary values: lets the testkit generator
/// build a trailer that authenticates but carries a wrong checksum. Not for production use.
#[doc(hidden)]
pub fn testkit_seal_trailer(
    dek: &SecretKey,
    context: &crate::Context,
    len: u64,
    crc: u32,
) -> Result<Vec<u8>> {
    SideKeys::derive(dek, &context.encode())?.seal_trailer(len, crc)
}

/// Seals arbitrary bytes as the metadata block for `dek`/`context`: lets the testkit
/// generator build a header whose block authenticates but holds a non-canonical map. Not for
/// production use.
#[doc(hidden)]
pub fn testkit_seal_metadata(
    dek: &SecretKey,
    context: &crate::Context,
    map_bytes: &[u8],
) -> Result<Vec<u8>> {
    let keys = SideKeys::derive(dek, &context.encode())?;
    SideKeys::seal_block(&keys.metadata, map_bytes)
}
