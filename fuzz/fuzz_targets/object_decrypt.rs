//! Whole-object decryption through every surface (`decrypt_from_slice`, `DecryptReader`, the
//! async `decrypt_stream`, `decrypt_range`) on fuzzed objects. None may panic, and:
//!
//! - mode 0 (raw): the input after a small context prefix *is* the object. All full
//!   decryptions agree (accept together, same plaintext); a range read of an accepted object
//!   succeeds and returns the matching slice.
//! - modes 1 and 2 (mutate): a valid testkit object (`fixtures/len-16385.bin`, decrypted once)
//!   is altered by an XOR mask (mode 1) or by a list of edits (mode 2: flip, set, insert,
//!   delete, truncate, append, copy). The fuzzer so reaches the payload and trailer checks,
//!   and has an exact oracle: only the unaltered object may decrypt, any plaintext released
//!   before a failure is a prefix of the real plaintext, and a range read (which reads only
//!   the chunks it needs) returns real plaintext or fails.
//!
//! Input layout: byte 0 = mode (bits 0-1) and range selector (bits 2-7), then the mode's data.
#![no_main]

use std::io::{Cursor, Read};
use std::sync::OnceLock;

use bytes::Bytes;
use coffer_format::async_stream::decrypt_stream;
use coffer_format::{
    decrypt_from_slice, decrypt_range, ByteRange, Context, DecryptReader, Error, LocalKek,
    Metadata, SecretKey, StringMap,
};
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;

/// The testkit's wrapping key: the valid vectors (and the seeds built from them) unwrap.
const KEK: [u8; 32] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
    27, 28, 29, 30, 31, 32,
];

/// spec/testkit/objects.json vector `len-16385`: a full chunk and a 1-byte final chunk.
const FIXTURE: &[u8] = include_bytes!("../fixtures/len-16385.bin");

struct Fixture {
    context: Context,
    plaintext: Vec<u8>,
    metadata: Metadata,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let context =
            Context::from_pairs([("bucket", "testkit"), ("key", "objects/len-16385")]).unwrap();
        let (plaintext, metadata) =
            decrypt_from_slice(FIXTURE, &context, &mut LocalKek(&kek())).unwrap();
        assert_eq!(plaintext.len(), 16385);
        Fixture {
            context,
            plaintext,
            metadata,
        }
    })
}

fn kek() -> SecretKey {
    SecretKey::from_slice(&KEK).unwrap()
}

/// Interesting positions for range bounds (around chunk boundaries, the ends, overflow).
const POSITIONS: [u64; 21] = [
    0,
    1,
    2,
    15,
    16,
    100,
    16382,
    16383,
    16384,
    16385,
    16386,
    16399,
    16400,
    32767,
    32768,
    32769,
    65536,
    1 << 32,
    u64::MAX / 2,
    u64::MAX - 1,
    u64::MAX,
];

fn pick_range(selector: u8) -> ByteRange {
    let s = usize::from(selector >> 2);
    let a = POSITIONS[(s / 3) % POSITIONS.len()];
    match s % 3 {
        0 => ByteRange::Bounded {
            first: a,
            last: POSITIONS[(s * 7 + 3) % POSITIONS.len()],
        },
        1 => ByteRange::From(a),
        _ => ByteRange::Suffix(a),
    }
}

/// Every full-decryption surface; `Err` carries the plaintext released before the failure.
struct Outcomes {
    slice: Result<(Vec<u8>, Metadata), Error>,
    reader: Result<Vec<u8>, Vec<u8>>,
    stream: Result<Vec<u8>, Vec<u8>>,
}

fn decrypt_all(object: &[u8], context: &Context, frame: usize) -> Outcomes {
    let kek = kek();
    let slice = decrypt_from_slice(object, context, &mut LocalKek(&kek));

    let reader = match DecryptReader::new(Cursor::new(object), context, &mut LocalKek(&kek)) {
        Err(_) => Err(Vec::new()),
        Ok(mut r) => {
            let mut out = Vec::new();
            match r.read_to_end(&mut out) {
                Ok(_) => {
                    let summary = r.summary().expect("summary after Ok(0)");
                    assert_eq!(summary.plaintext_len, out.len() as u64);
                    // Reading again after the end stays at the end.
                    let mut more = [0u8; 8];
                    assert_eq!(r.read(&mut more).ok(), Some(0));
                    Ok(out)
                }
                Err(_) => {
                    // Poisoned: nothing more is ever released.
                    let mut more = [0u8; 8];
                    assert!(r.read(&mut more).is_err());
                    Err(out)
                }
            }
        }
    };

    let frames: Vec<std::io::Result<Bytes>> = object
        .chunks(frame.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream = futures::executor::block_on(async {
        let Ok(mut s) =
            decrypt_stream(futures::stream::iter(frames), context, &mut LocalKek(&kek)).await
        else {
            return Err(Vec::new());
        };
        let mut out = Vec::new();
        while let Some(item) = s.body.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => return Err(out),
            }
        }
        Ok(out)
    });

    Outcomes {
        slice,
        reader,
        stream,
    }
}

fn range_read(
    object: &[u8],
    context: &Context,
    range: ByteRange,
) -> coffer_format::Result<coffer_format::range::RangeOutput> {
    decrypt_range(
        &mut Cursor::new(object),
        context,
        &mut LocalKek(&kek()),
        range,
    )
}

/// Mode 0: the input is `u16 context_len || context || object`.
fn raw(selector: u8, data: &[u8]) {
    let (context, object) = match data {
        [a, b, rest @ ..] => {
            let n = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
            let context = StringMap::decode(&rest[..n]).unwrap_or_default();
            (context, &rest[n..])
        }
        _ => (Context::new(), data),
    };
    let frame = 1 + usize::from(selector) * 97;
    let o = decrypt_all(object, &context, frame);

    // The three full decryptions verify the same things: they agree.
    assert_eq!(o.slice.is_ok(), o.reader.is_ok(), "slice vs reader");
    assert_eq!(o.slice.is_ok(), o.stream.is_ok(), "slice vs stream");
    let full = o.slice.as_ref().ok().map(|(p, _)| p.clone());
    if let Some(p) = &full {
        assert_eq!(o.reader.as_ref().ok(), Some(p));
        assert_eq!(o.stream.as_ref().ok(), Some(p));
    }
    // Failed streaming reads released only authentic chunks of the same object: one
    // release is a prefix of the other (they batch differently).
    if let (Err(a), Err(b)) = (&o.reader, &o.stream) {
        assert!(
            a.starts_with(b) || b.starts_with(a),
            "released bytes disagree"
        );
    }

    let range = pick_range(selector);
    let r = range_read(object, &context, range);
    if let Some(p) = &full {
        let len = p.len() as u64;
        match (range.resolve(len), r) {
            (Ok(want), Ok(out)) => {
                assert_eq!(out.range, want);
                assert_eq!(out.plaintext_len, len);
                assert_eq!(out.data, &p[want.start as usize..want.end as usize]);
                assert_eq!(Some(&out.metadata), o.slice.as_ref().ok().map(|(_, m)| m));
            }
            (Err(Error::RangeNotSatisfiable), Err(Error::RangeNotSatisfiable)) => {}
            (want, got) => panic!(
                "accepted object, {range:?}: resolve {want:?}, decrypt_range {:?}",
                got.map(|o| o.range)
            ),
        }
    } else if let Ok(out) = r {
        // A range read checks less (only the chunks it reads): it must at least be coherent.
        assert_eq!(out.range, range.resolve(out.plaintext_len).unwrap());
        assert_eq!(out.data.len() as u64, out.range.end - out.range.start);
    }
}

/// Checks an altered copy of the fixture against the oracle.
fn check_mutant(selector: u8, object: &[u8]) {
    let f = fixture();
    let unchanged = object == FIXTURE;
    let frame = 1 + usize::from(selector) * 131;
    let o = decrypt_all(object, &f.context, frame);

    match &o.slice {
        Ok((p, m)) => {
            assert!(unchanged, "decrypt_from_slice accepted an altered object");
            assert_eq!(p, &f.plaintext);
            assert_eq!(m, &f.metadata);
        }
        Err(e) => assert!(!unchanged, "fixture rejected: {e}"),
    }
    for (what, r) in [("reader", &o.reader), ("stream", &o.stream)] {
        match r {
            Ok(p) => {
                assert!(unchanged, "{what} accepted an altered object");
                assert_eq!(p, &f.plaintext);
            }
            Err(released) => {
                assert!(!unchanged, "{what} rejected the fixture");
                assert!(
                    f.plaintext.starts_with(released),
                    "{what} released {} bytes that are not authentic plaintext",
                    released.len()
                );
            }
        }
    }

    let range = pick_range(selector);
    let len = f.plaintext.len() as u64;
    match range_read(object, &f.context, range) {
        Ok(out) => {
            let want = range.resolve(len).expect("a served range is satisfiable");
            assert_eq!(out.range, want);
            assert_eq!(out.plaintext_len, len);
            assert_eq!(out.metadata, f.metadata);
            assert!(
                out.data == f.plaintext[want.start as usize..want.end as usize],
                "decrypt_range returned non-authentic plaintext for {range:?}"
            );
        }
        Err(Error::RangeNotSatisfiable) => {
            assert!(range.resolve(len).is_err());
        }
        Err(e) => assert!(!unchanged, "fixture range {range:?} rejected: {e}"),
    }
}

/// Mode 1: `u24 offset || mask`, XORed into the fixture from `offset` (wrapping).
fn xor_mask(selector: u8, data: &[u8]) {
    let mut object = FIXTURE.to_vec();
    let (offset, mask) = match data {
        [a, b, c, rest @ ..] => (u32::from_be_bytes([0, *a, *b, *c]) as usize, rest),
        _ => (0, data),
    };
    let n = object.len();
    for (i, m) in mask.iter().enumerate() {
        object[(offset + i) % n] ^= m;
    }
    check_mutant(selector, &object);
}

/// Mode 2: up to 64 edits of 4 bytes: `op, u16 offset, arg`.
fn edits(selector: u8, data: &[u8]) {
    let mut object = FIXTURE.to_vec();
    for cmd in data.chunks_exact(4).take(64) {
        let at = usize::from(u16::from_be_bytes([cmd[1], cmd[2]])) % (object.len() + 1);
        let arg = cmd[3];
        match cmd[0] % 8 {
            0 => {
                if let Some(b) = object.get_mut(at) {
                    *b ^= 1 << (arg % 8);
                }
            }
            1 => {
                if let Some(b) = object.get_mut(at) {
                    *b = arg;
                }
            }
            2 => object.insert(at, arg),
            3 => {
                let end = (at + usize::from(arg) + 1).min(object.len());
                object.drain(at..end);
            }
            4 => object.truncate(at),
            5 => object.extend(std::iter::repeat_n(arg, usize::from(arg) + 1)),
            6 => {
                // Copy `arg`×64 bytes from the start of the tail onto `at`: moves chunk-sized
                // pieces (tags, trailers, chunk fragments) around.
                let len = (usize::from(arg) + 1) * 64;
                let src = object.len().saturating_sub(len);
                let piece: Vec<u8> = object[src..].to_vec();
                for (i, b) in piece.into_iter().enumerate() {
                    if let Some(d) = object.get_mut(at + i) {
                        *d = b;
                    }
                }
            }
            _ => {
                // Duplicate 16400 bytes (one encrypted chunk) found at `at`.
                let end = (at + 16400).min(object.len());
                let piece: Vec<u8> = object[at..end].to_vec();
                object.splice(at..at, piece);
            }
        }
        if object.len() > 200_000 {
            break;
        }
    }
    check_mutant(selector, &object);
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    match head & 3 {
        0 | 3 => raw(head, rest),
        1 => xor_mask(head, rest),
        _ => edits(head, rest),
    }
});
