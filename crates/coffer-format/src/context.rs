//! Canonical string maps: encryption contexts and object metadata (spec/wrapped-key.md §5).

use std::collections::BTreeMap;

use crate::{Error, Result};

/// Limits of spec/wrapped-key.md §5 (frozen for version 1).
pub const MAX_ENTRIES: usize = 1024;
pub const MAX_NAME_LEN: usize = 1024;
pub const MAX_VALUE_LEN: usize = 65536;

/// A map of UTF-8 names to UTF-8 values with one canonical byte encoding.
///
/// Used as the encryption context (object identity, KMS encryption context) and as the object
/// metadata map. `BTreeMap<String, _>` orders by bytes, which is the canonical order.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct StringMap(BTreeMap<String, String>);

/// The identity an object's ciphertext is bound to.
pub type Context = StringMap;
/// An object's stored HTTP metadata (content type, user metadata…).
pub type Metadata = StringMap;

impl StringMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from pairs; a later duplicate name replaces an earlier one.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        let mut map = Self::new();
        for (k, v) in pairs {
            map.insert(k, v)?;
        }
        Ok(map)
    }

    /// Inserts an entry, checking the format's limits.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> Result<()> {
        let (name, value) = (name.into(), value.into());
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(Error::InvalidArgument("map name must be 1..=1024 bytes"));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::InvalidArgument(
                "map value must be at most 65536 bytes",
            ));
        }
        if !self.0.contains_key(&name) && self.0.len() >= MAX_ENTRIES {
            return Err(Error::InvalidArgument("map has more than 1024 entries"));
        }
        self.0.insert(name, value);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical encoding (spec/wrapped-key.md §5).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    pub fn encoded_len(&self) -> usize {
        2 + self
            .0
            .iter()
            .map(|(k, v)| 2 + k.len() + 4 + v.len())
            .sum::<usize>()
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Lengths fit: insert() bounds count, name and value lengths.
        out.extend_from_slice(&(self.0.len() as u16).to_be_bytes());
        for (k, v) in &self.0 {
            out.extend_from_slice(&(k.len() as u16).to_be_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
    }

    /// Strict decoding: rejects out-of-order or duplicate names, bad UTF-8, limits exceeded,
    /// truncation and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut cur = crate::cursor::Cursor::new(bytes);
        let count = cur.u16()? as usize;
        if count > MAX_ENTRIES {
            return Err(Error::Malformed("map has too many entries"));
        }
        let mut map = BTreeMap::new();
        let mut previous: Option<String> = None;
        for _ in 0..count {
            let name_len = cur.u16()? as usize;
            if name_len == 0 || name_len > MAX_NAME_LEN {
                return Err(Error::Malformed("map name length out of range"));
            }
            let name = std::str::from_utf8(cur.take(name_len)?)
                .map_err(|_| Error::Malformed("map name is not UTF-8"))?
                .to_owned();
            let value_len = cur.u32()? as usize;
            if value_len > MAX_VALUE_LEN {
                return Err(Error::Malformed("map value too long"));
            }
            let value = std::str::from_utf8(cur.take(value_len)?)
                .map_err(|_| Error::Malformed("map value is not UTF-8"))?
                .to_owned();
            if let Some(prev) = &previous {
                if prev.as_bytes() >= name.as_bytes() {
                    return Err(Error::Malformed(
                        "map names not in strictly ascending order",
                    ));
                }
            }
            previous = Some(name.clone());
            map.insert(name, value);
        }
        cur.finish()?;
        Ok(StringMap(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_map_encodes_as_two_zero_bytes() {
        assert_eq!(StringMap::new().encode(), vec![0, 0]);
    }

    #[test]
    fn encoding_is_sorted_and_round_trips() -> Result<()> {
        let m = StringMap::from_pairs([("key", "a/b"), ("bucket", "photos")])?;
        let enc = m.encode();
        assert_eq!(&enc[..2], &[0, 2]);
        assert_eq!(&enc[2..4], &[0, 6]);
        assert_eq!(&enc[4..10], b"bucket");
        assert_eq!(StringMap::decode(&enc)?, m);
        Ok(())
    }

    #[test]
    fn decoder_rejects_non_canonical_input() -> Result<()> {
        let m = StringMap::from_pairs([("a", "1"), ("b", "2")])?;
        let enc = m.encode();
        // Swap the two entries: out of order.
        let entry = 2 + 1 + 4 + 1;
        let mut swapped = vec![0, 2];
        swapped.extend_from_slice(&enc[2 + entry..]);
        swapped.extend_from_slice(&enc[2..2 + entry]);
        assert!(StringMap::decode(&swapped).is_err());
        // Duplicate.
        let mut dup = vec![0, 2];
        dup.extend_from_slice(&enc[2..2 + entry]);
        dup.extend_from_slice(&enc[2..2 + entry]);
        assert!(StringMap::decode(&dup).is_err());
        // Trailing byte, truncation.
        let mut trailing = enc.clone();
        trailing.push(0);
        assert!(StringMap::decode(&trailing).is_err());
        assert!(StringMap::decode(&enc[..enc.len() - 1]).is_err());
        Ok(())
    }
}
