//! Local key-encryption key files, as written by `coffer keygen`.
//!
//! A key file is text: comment lines starting with `#`, and one line
//! `coffer-kek-v1:<64 lowercase hex digits>`. The key's id (stored in every object it
//! wraps, so a wrong key is reported as such) is
//! `HKDF-Expand(prk = key, info = "coffer.kek-id/v1", L = 16)`, which reveals nothing of the
//! key.

use zeroize::Zeroizing;

use crate::chunked::hkdf_expand;
use crate::secret::SecretKey;
use crate::wrapped_key::{KeyKind, KeyReference};
use crate::{Error, Result};

const PREFIX: &str = "coffer-kek-v1:";

/// A key-encryption key loaded from (or made for) a key file.
pub struct KeyFile {
    key: SecretKey,
    id: [u8; 16],
}

impl KeyFile {
    pub fn generate() -> Result<Self> {
        Self::from_key(SecretKey::generate()?)
    }

    pub fn from_key(key: SecretKey) -> Result<Self> {
        let mut id = [0u8; 16];
        hkdf_expand(&key, &[b"coffer.kek-id/v1"], &mut id)?;
        Ok(KeyFile { key, id })
    }

    /// Parses a key file's text.
    pub fn parse(text: &str) -> Result<Self> {
        let mut found = None;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let hex = line.strip_prefix(PREFIX).ok_or(Error::Malformed(
                "not a Coffer key file (expected coffer-kek-v1:…)",
            ))?;
            if found.is_some() {
                return Err(Error::Malformed("key file holds more than one key"));
            }
            found = Some(decode_hex_key(hex)?);
        }
        Self::from_key(found.ok_or(Error::Malformed("key file holds no key"))?)
    }

    /// The file's text (zeroized when dropped).
    pub fn encode(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(128));
        s.push_str("# Coffer key-encryption key. Keep it secret: anyone with this file can\n");
        s.push_str("# decrypt everything encrypted with it. Losing it loses that data.\n");
        s.push_str(PREFIX);
        for b in self.key.expose() {
            s.push(char::from(HEX[(b >> 4) as usize]));
            s.push(char::from(HEX[(b & 15) as usize]));
        }
        s.push('\n');
        s
    }

    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    pub fn id(&self) -> &[u8; 16] {
        &self.id
    }

    /// The reference stored in objects this key wraps.
    pub fn reference(&self) -> KeyReference {
        KeyReference {
            kind: KeyKind::ClientKek,
            key_id: self.id.to_vec(),
            version: 1,
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn decode_hex_key(hex: &str) -> Result<SecretKey> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err(Error::Malformed("key must be 64 hex digits"));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = hex_digit(pair[0])?;
        let lo = hex_digit(pair[1])?;
        key[i] = hi << 4 | lo;
    }
    Ok(SecretKey::from_bytes(&mut key))
}

fn hex_digit(c: u8) -> Result<u8> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(Error::Malformed("key has a non-hex character")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() -> Result<()> {
        let k = KeyFile::generate()?;
        let back = KeyFile::parse(&k.encode())?;
        assert!(back.key().ct_eq(k.key()));
        assert_eq!(back.id(), k.id());
        assert!(KeyFile::parse("").is_err());
        assert!(KeyFile::parse("coffer-kek-v1:abcd").is_err());
        assert!(KeyFile::parse(&format!("coffer-kek-v1:{}", "g".repeat(64))).is_err());
        assert!(KeyFile::parse(&format!("age1:{}", "0".repeat(64))).is_err());
        let two = format!("{}{}", &*k.encode(), &*k.encode());
        assert!(KeyFile::parse(&two).is_err());
        Ok(())
    }
}
