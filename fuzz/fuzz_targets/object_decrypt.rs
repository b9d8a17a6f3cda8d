//! Whole-object and range decryption on fuzzed objects. None may panic, and:
//!
//! - mode 0 (raw): the input after a small context prefix *is* the object. All full
//!   decryptions agree (accept together, same plaintext and metadata); range reads of an
//!   accepted object succeed and return the matching slice.
//! - modes 1 and 2 (mutate): a valid testkit object (`fixtures/len-16385.bin`, decrypted once)
//!   is altered by an XOR mask (mode 1) or by a list of edits (mode 2: flip, set, insert,
//!   delete, truncate, append, copy, duplicate a chunk). The fuzzer so reaches the payload and
//!   trailer checks, and has an exact oracle: under the fixed key and context only the
//!   unaltered object may decrypt, any plaintext released before a failure is a prefix of the
//!   real plaintext, and a range read (which checks only the chunks it reads) returns real
//!   plaintext or fails.
//!
//! The surfaces, cheapest first (each input runs every one except `DecryptReader`):
//! `decrypt_from_slice`; `ObjectDecryptor` fed in small frames (sizes from the input) with
//! parallelism off, as a streaming reader does; the async `decrypt_stream`; `decrypt_range`
//! for a range picked from interesting positions; `RangeDecryptor` on a second range from the
//! input, its chunks opened all at once or one by one in reverse order. `DecryptReader`
//! allocates ~2 MiB of buffers per instance, so it runs on 1 input in 32 (chosen by a hash of
//! the input's start and length, so runs stay reproducible).
//!
//! Input layout: byte 0 = mode (bits 0-1) and range selector (bits 2-7); bytes 1-4 = the
//! second range (`kind, u16 first, span`); then the mode's data.
#![no_main]

use std::io::{Cursor, Read};
use std::ops::Range;
use std::sync::OnceLock;

use bytes::Bytes;
use coffer_format::async_stream::decrypt_stream;
use coffer_format::header::{header_len, FIXED_LEN};
use coffer_format::object::{DekUnwrapper, ObjectDecryptor};
use coffer_format::{
    decrypt_from_slice, decrypt_range, ByteRange, Context, DecryptReader, Error, Header, LocalKek,
    Metadata, ObjectLayout, RangeDecryptor, SecretKey, StringMap,
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
            decrypt_from_slice(FIXTURE, &context, &mut LocalKek(kek())).unwrap();
        assert_eq!(plaintext.len(), 16385);
        Fixture {
            context,
            plaintext,
            metadata,
        }
    })
}

fn kek() -> &'static SecretKey {
    static K: OnceLock<SecretKey> = OnceLock::new();
    K.get_or_init(|| SecretKey::from_slice(&KEK).unwrap())
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

/// The first range: from interesting positions (byte 0, bits 2-7).
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

/// The second range (bytes 1-4): `kind` (bits 0-1: bounded, from, suffix; bit 2: open the
/// chunks one by one in reverse order), `u16 first`, `span` × 131 (reaches chunk boundaries).
fn second_range(b: [u8; 4]) -> (ByteRange, bool) {
    let first = u64::from(u16::from_be_bytes([b[1], b[2]]));
    let span = u64::from(b[3]) * 131;
    let range = match b[0] % 4 {
        0 => ByteRange::Bounded {
            first,
            last: first + span,
        },
        1 => ByteRange::From(first),
        2 => ByteRange::Suffix(span),
        _ => ByteRange::Suffix(first),
    };
    (range, b[0] & 4 != 0)
}

/// A full decryption's result: `Err` carries the plaintext released before the failure.
type Released = Result<Vec<u8>, Vec<u8>>;

/// Every full-decryption surface.
struct Outcomes {
    slice: Result<(Vec<u8>, Metadata), Error>,
    /// `ObjectDecryptor` fed in frames, as a streaming reader does.
    frames: Released,
    stream: Released,
    /// `DecryptReader`, on a sample of the inputs.
    reader: Option<Released>,
}

/// FNV-1a of the input's length and first 64 bytes (hashing all of it would cost more, under
/// the fuzzer's instrumentation, than the decryptions): picks the inputs that also run
/// `DecryptReader`.
fn sampled(data: &[u8]) -> bool {
    let head = &data[..data.len().min(64)];
    let h = head
        .iter()
        .chain(&(data.len() as u64).to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    h % 32 == 0
}

/// Header parsing as a stream reader does it: the fixed part, then exactly `header_len`.
fn parse_header(object: &[u8]) -> coffer_format::Result<Header> {
    let fixed = object
        .get(..FIXED_LEN)
        .ok_or(Error::Malformed("object truncated"))?;
    let len = header_len(fixed)?;
    Header::parse(
        object
            .get(..len)
            .ok_or(Error::Malformed("object truncated"))?,
    )
}

/// `ObjectDecryptor` fed `frame` bytes at a time (the header is parsed first, as a reader
/// would). Checks that output is only ever appended and that `finish` accounts for it all.
fn decrypt_frames(object: &[u8], context: &Context, frame: usize) -> Released {
    let Ok(header) = parse_header(object) else {
        return Err(Vec::new());
    };
    let Ok(dek) = LocalKek(kek()).unwrap_dek(header.wrapped_dek(), context) else {
        return Err(Vec::new());
    };
    let Ok((mut dec, _metadata)) = ObjectDecryptor::new(dek, context, &header) else {
        return Err(Vec::new());
    };
    dec.set_parallel(false);
    let mut out = Vec::with_capacity(object.len());
    for piece in object[header.len()..].chunks(frame.max(1)) {
        let before = out.len();
        let r = dec.update(piece, &mut out);
        assert!(out.len() >= before);
        if r.is_err() {
            // Chunks that authenticated before the failing one may stay in `out`; the
            // callers check that they are authentic.
            return Err(out);
        }
    }
    let before = out.len();
    match dec.finish(&mut out) {
        Ok(summary) => {
            assert_eq!(summary.plaintext_len, out.len() as u64);
            Ok(out)
        }
        Err(_) => {
            assert_eq!(out.len(), before, "finish released output on failure");
            Err(out)
        }
    }
}

fn decrypt_all(
    object: &[u8],
    context: &Context,
    frame: usize,
    big_frame: usize,
    sample: bool,
) -> Outcomes {
    let slice = decrypt_from_slice(object, context, &mut LocalKek(kek()));
    let frames = decrypt_frames(object, context, frame);

    // One copy of the object, handed out in zero-copy slices.
    let whole = Bytes::copy_from_slice(object);
    let step = big_frame.max(1);
    let pieces: Vec<std::io::Result<Bytes>> = (0..object.len())
        .step_by(step)
        .map(|at| Ok(whole.slice(at..(at + step).min(object.len()))))
        .collect();
    let stream = futures::executor::block_on(async {
        let Ok(mut s) =
            decrypt_stream(futures::stream::iter(pieces), context, &mut LocalKek(kek())).await
        else {
            return Err(Vec::new());
        };
        let mut out = Vec::with_capacity(object.len());
        while let Some(item) = s.body.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => return Err(out),
            }
        }
        Ok(out)
    });

    let reader = sample.then(|| {
        match DecryptReader::new(Cursor::new(object), context, &mut LocalKek(kek())) {
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
        }
    });

    Outcomes {
        slice,
        frames,
        stream,
        reader,
    }
}

/// What a range read returned: the resolved range, the object's plaintext length, the data.
struct RangeRead {
    range: Range<u64>,
    plaintext_len: u64,
    metadata: Metadata,
    data: Vec<u8>,
}

fn range_read(
    object: &[u8],
    context: &Context,
    range: ByteRange,
) -> coffer_format::Result<RangeRead> {
    let out = decrypt_range(
        &mut Cursor::new(object),
        context,
        &mut LocalKek(kek()),
        range,
    )?;
    assert_eq!(out.data.len() as u64, out.range.end - out.range.start);
    Ok(RangeRead {
        range: out.range,
        plaintext_len: out.plaintext_len,
        metadata: out.metadata,
        data: out.data,
    })
}

/// `RangeDecryptor` straight on the slice: the chunks covering `range` (plus the final chunk
/// for end-relative ranges, as `decrypt_range` does) opened at once, or one by one from the
/// last to the first.
fn range_direct(
    object: &[u8],
    context: &Context,
    range: ByteRange,
    reverse: bool,
) -> coffer_format::Result<RangeRead> {
    let header = parse_header(object)?;
    let layout = ObjectLayout::new(header.len() as u64, object.len() as u64)?;
    let dek = LocalKek(kek()).unwrap_dek(header.wrapped_dek(), context)?;
    let span = |r: Range<u64>| &object[r.start as usize..r.end as usize];
    let prefix = span(layout.prefix_span());
    let (dec, metadata) = RangeDecryptor::new(dek, context, &header, prefix, layout)?;
    dec.verify_trailer(span(layout.trailer_span()))?;
    let plain = range.resolve(layout.plaintext_len())?;
    let (first, mut last) = layout.chunks_for(&plain);
    if range.is_end_relative() {
        last = layout.payload.chunks - 1;
    }
    assert!(first <= last && last < layout.payload.chunks);
    let mut data = Vec::new();
    if reverse {
        let mut pieces = Vec::new();
        for i in (first..=last).rev() {
            let mut piece = Vec::new();
            dec.open_chunks(i, span(layout.chunk_span(i, i)), &mut piece)?;
            pieces.push(piece);
        }
        pieces.into_iter().rev().for_each(|p| data.extend(p));
    } else {
        dec.open_chunks(first, span(layout.chunk_span(first, last)), &mut data)?;
    }
    let skip = (plain.start - first * coffer_format::chunked::CHUNK_SIZE as u64) as usize;
    let len = (plain.end - plain.start) as usize;
    assert!(skip + len <= data.len(), "chunks shorter than the range");
    Ok(RangeRead {
        data: data[skip..skip + len].to_vec(),
        range: plain,
        plaintext_len: layout.plaintext_len(),
        metadata,
    })
}

/// Checks a range read of an object whose full decryption gave `full` (plaintext, metadata).
fn check_range_of_accepted(
    range: ByteRange,
    got: coffer_format::Result<RangeRead>,
    p: &[u8],
    m: &Metadata,
) {
    let len = p.len() as u64;
    match (range.resolve(len), got) {
        (Ok(want), Ok(out)) => {
            assert_eq!(out.range, want);
            assert_eq!(out.plaintext_len, len);
            assert!(
                out.data == p[want.start as usize..want.end as usize],
                "range data differs for {range:?}"
            );
            assert_eq!(&out.metadata, m);
        }
        (Err(Error::RangeNotSatisfiable), Err(Error::RangeNotSatisfiable)) => {}
        (want, got) => panic!(
            "accepted object, {range:?}: resolve {want:?}, range read {:?}",
            got.map(|o| o.range)
        ),
    }
}

/// Mode 0: the input is `u16 context_len || context || object`.
fn raw(selector: u8, second: [u8; 4], sample: bool, data: &[u8]) {
    let (context, object) = match data {
        [a, b, rest @ ..] => {
            let n = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
            let context = StringMap::decode(&rest[..n]).unwrap_or_default();
            (context, &rest[n..])
        }
        _ => (Context::new(), data),
    };
    let frame = 13 + usize::from(selector) * 97;
    let o = decrypt_all(
        object,
        &context,
        frame,
        4096 + usize::from(second[3]) * 61,
        sample,
    );

    // The full decryptions verify the same things: they agree.
    let full = o.slice.as_ref().ok();
    for (what, r) in [
        ("frames", Some(&o.frames)),
        ("stream", Some(&o.stream)),
        ("reader", o.reader.as_ref()),
    ] {
        let Some(r) = r else { continue };
        assert_eq!(full.is_some(), r.is_ok(), "slice vs {what}");
        if let (Some((p, _)), Ok(q)) = (full, r) {
            assert!(p == q, "{what} plaintext differs");
        }
    }
    // Failed streaming decryptions released only authentic chunks of the same object: one
    // release is a prefix of the other (they batch differently).
    let mut failed: Vec<&Vec<u8>> = [Some(&o.frames), Some(&o.stream), o.reader.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_ref().err())
        .collect();
    failed.sort_by_key(|r| r.len());
    for w in failed.windows(2) {
        assert!(w[1].starts_with(w[0]), "released bytes disagree");
    }

    let (range2, reverse) = second_range(second);
    for (range, r) in [
        (
            pick_range(selector),
            range_read(object, &context, pick_range(selector)),
        ),
        (range2, range_direct(object, &context, range2, reverse)),
    ] {
        if let Some((p, m)) = full {
            check_range_of_accepted(range, r, p, m);
        } else if let Ok(out) = r {
            // A range read checks less (only the chunks it reads): it must at least be
            // coherent.
            assert_eq!(out.range, range.resolve(out.plaintext_len).unwrap());
            assert_eq!(out.data.len() as u64, out.range.end - out.range.start);
        }
    }
}

/// Checks an altered copy of the fixture against the oracle.
fn check_mutant(selector: u8, second: [u8; 4], sample: bool, object: &[u8]) {
    let f = fixture();
    let unchanged = object == FIXTURE;
    let frame = 13 + usize::from(selector) * 131;
    let o = decrypt_all(
        object,
        &f.context,
        frame,
        1024 + usize::from(second[3]) * 67,
        sample,
    );

    match &o.slice {
        Ok((p, m)) => {
            assert!(unchanged, "decrypt_from_slice accepted an altered object");
            assert!(p == &f.plaintext);
            assert_eq!(m, &f.metadata);
        }
        Err(e) => assert!(!unchanged, "fixture rejected: {e}"),
    }
    for (what, r) in [
        ("frames", Some(&o.frames)),
        ("stream", Some(&o.stream)),
        ("reader", o.reader.as_ref()),
    ] {
        match r {
            None => {}
            Some(Ok(p)) => {
                assert!(unchanged, "{what} accepted an altered object");
                assert!(p == &f.plaintext);
            }
            Some(Err(released)) => {
                assert!(!unchanged, "{what} rejected the fixture");
                assert!(
                    f.plaintext.starts_with(released),
                    "{what} released {} bytes that are not authentic plaintext",
                    released.len()
                );
            }
        }
    }

    let len = f.plaintext.len() as u64;
    let (range2, reverse) = second_range(second);
    for (range, r) in [
        (
            pick_range(selector),
            range_read(object, &f.context, pick_range(selector)),
        ),
        (range2, range_direct(object, &f.context, range2, reverse)),
    ] {
        match r {
            Ok(out) => {
                let want = range.resolve(len).expect("a served range is satisfiable");
                assert_eq!(out.range, want);
                assert_eq!(out.plaintext_len, len);
                assert_eq!(out.metadata, f.metadata);
                assert!(
                    out.data == f.plaintext[want.start as usize..want.end as usize],
                    "range read returned non-authentic plaintext for {range:?}"
                );
            }
            Err(Error::RangeNotSatisfiable) => assert!(range.resolve(len).is_err()),
            Err(e) => assert!(!unchanged, "fixture range {range:?} rejected: {e}"),
        }
    }
}

/// Mode 1: `u24 offset || mask`, XORed into the fixture from `offset` (wrapping).
fn xor_mask(selector: u8, second: [u8; 4], sample: bool, data: &[u8]) {
    let mut object = FIXTURE.to_vec();
    let (offset, mask) = match data {
        [a, b, c, rest @ ..] => (u32::from_be_bytes([0, *a, *b, *c]) as usize, rest),
        _ => (0, data),
    };
    let n = object.len();
    let (mut pos, mut rest) = (offset % n, mask);
    while !rest.is_empty() {
        let k = rest.len().min(n - pos);
        xor_into(&mut object[pos..pos + k], &rest[..k]);
        rest = &rest[k..];
        pos = 0;
    }
    check_mutant(selector, second, sample, &object);
}

/// `dst ^= src`, eight bytes at a time: byte loops are slow under the fuzzer's
/// instrumentation, and the mask can be as long as the object.
fn xor_into(dst: &mut [u8], src: &[u8]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let x = u64::from_ne_bytes(d[..].try_into().unwrap())
            ^ u64::from_ne_bytes(s.try_into().unwrap());
        d.copy_from_slice(&x.to_ne_bytes());
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d ^= s;
    }
}

/// Mode 2: up to 64 edits of 4 bytes: `op, u16 offset, arg`.
fn edits(selector: u8, second: [u8; 4], sample: bool, data: &[u8]) {
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
            5 => object.resize(object.len() + usize::from(arg) + 1, arg),
            6 => {
                // Copy the last `arg`×64 bytes onto `at` (as much as fits): moves chunk-sized
                // pieces (tags, trailers, chunk fragments) around.
                let len = (usize::from(arg) + 1) * 64;
                let src = object.len().saturating_sub(len);
                let fits = (object.len() - src).min(object.len() - at);
                let piece = object[src..src + fits].to_vec();
                object[at..at + fits].copy_from_slice(&piece);
            }
            _ => {
                // Duplicate 16400 bytes (one encrypted chunk) found at `at`.
                let end = (at + 16400).min(object.len());
                let mut longer = Vec::with_capacity(object.len() + (end - at));
                longer.extend_from_slice(&object[..end]);
                longer.extend_from_slice(&object[at..]);
                object = longer;
            }
        }
        if object.len() > 200_000 {
            break;
        }
    }
    check_mutant(selector, second, sample, &object);
}

fuzz_target!(|data: &[u8]| {
    let [head, r0, r1, r2, r3, rest @ ..] = data else {
        return;
    };
    let second = [*r0, *r1, *r2, *r3];
    let sample = sampled(data);
    match head & 3 {
        0 | 3 => raw(*head, second, sample, rest),
        1 => xor_mask(*head, second, sample, rest),
        _ => edits(*head, second, sample, rest),
    }
});
