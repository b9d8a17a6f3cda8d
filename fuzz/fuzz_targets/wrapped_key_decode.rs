//! `WrappedKey::decode`, `WrappedKey::decode_prefix` and `StringMap::decode` on arbitrary
//! bytes: no panic; whatever decodes re-encodes to exactly the bytes it came from (both
//! encodings are canonical), and `decode` accepts exactly what `decode_prefix` consumes whole.
#![no_main]

use coffer_format::{Context, SecretKey, StringMap, WrappedKey};
use libfuzzer_sys::fuzz_target;

/// The testkit's wrapping key (spec/testkit/wrapped-key.json), so seeded inputs reach AEAD.
const WRAPPING_KEY: [u8; 32] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
    27, 28, 29, 30, 31, 32,
];

fuzz_target!(|data: &[u8]| {
    match WrappedKey::decode_prefix(data) {
        Ok((key, used)) => {
            assert!(used <= data.len());
            assert_eq!(used, key.encoded_len());
            assert_eq!(key.encode(), &data[..used]);
            let whole = WrappedKey::decode(data);
            assert_eq!(whole.is_ok(), used == data.len());
            assert_eq!(WrappedKey::decode(&data[..used]).ok().as_ref(), Some(&key));
            let reference = key.reference();
            assert!(!reference.key_id.is_empty() && reference.version >= 1);
            // Unwrapping arbitrary input must fail cleanly or return the sealed bytes; the
            // context is whatever map follows the wrapped key, else empty.
            let context = StringMap::decode(&data[used..]).unwrap_or_else(|_| Context::new());
            if let Ok(kek) = SecretKey::from_slice(&WRAPPING_KEY) {
                if let Ok(plain) = key.unwrap(&kek, &context) {
                    assert!(!plain.is_empty() && plain.len() <= 4096);
                }
            }
        }
        Err(_) => assert!(WrappedKey::decode(data).is_err()),
    }

    if let Ok(map) = StringMap::decode(data) {
        assert_eq!(map.encode(), data);
        assert_eq!(map.encoded_len(), data.len());
        let names: Vec<&str> = map.iter().map(|(k, _)| k).collect();
        assert!(names.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()));
        assert_eq!(StringMap::from_pairs(map.iter()).ok().as_ref(), Some(&map));
    }
});
