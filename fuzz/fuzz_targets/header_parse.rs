//! `Header::parse` and `header_len` on arbitrary bytes: no panic, and whatever parses is
//! self-consistent (exact length, the wrapped DEK re-encodes to the bytes it came from).
#![no_main]

use coffer_format::header::{header_len, FIXED_LEN, MAX_HEADER_LEN, MIN_HEADER_LEN};
use coffer_format::{Header, WrappedKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let announced = header_len(data);
    if let Ok(len) = announced {
        assert!((MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&len));
        assert!(data.len() >= FIXED_LEN);
        // The prefix a reader would take: parse it as the stream readers do.
        if let Some(prefix) = data.get(..len) {
            check(prefix, len);
        }
    }
    if let Ok(header) = Header::parse(data) {
        assert_eq!(announced.ok(), Some(data.len()));
        check(data, data.len());
        assert_eq!(header.len(), data.len());
    }
});

fn check(bytes: &[u8], len: usize) {
    let Ok(header) = Header::parse(bytes) else {
        return;
    };
    assert_eq!(header.len(), len);
    assert!(!header.is_empty());
    let wrapped = header.wrapped_dek();
    let encoded = wrapped.encode();
    assert_eq!(encoded.len(), wrapped.encoded_len());
    assert_eq!(&bytes[FIXED_LEN..FIXED_LEN + encoded.len()], &encoded[..]);
    assert_eq!(WrappedKey::decode(&encoded).ok().as_ref(), Some(wrapped));
    // metadata_len (u32) and the block fill the rest exactly.
    let rest = &bytes[FIXED_LEN + encoded.len()..];
    assert!(rest.len() >= 4);
    let block_len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    assert_eq!(rest.len(), 4 + block_len);
    assert!(block_len >= 30);
}
