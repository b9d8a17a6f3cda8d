//! Property tests of the object format: round trips through every API surface, range reads,
//! tamper/truncation/extension rejection, and writer/encryptor splitting invariance.
//!
//! Case counts are chosen so the whole file runs in a few seconds in a debug build on two
//! cores; `PROPTEST_CASES=…` overrides every count for a longer local search.

// Tests: a failed unwrap/expect is a failed test, with the panic message as the report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

use bytes::Bytes;
use coffer_format::async_stream::decrypt_stream;
use coffer_format::chunked::{CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, PREFIX_LEN, SALT_LEN, TAG_LEN};
use coffer_format::header::{header_len, FIXED_LEN, TRAILER_LEN};
use coffer_format::{
    decrypt_from_slice, decrypt_range, encrypt_to_vec, ByteRange, Context, DecryptReader,
    EncryptWriter, Error, Header, KeyKind, KeyReference, LocalKek, Metadata, ObjectDecryptor,
    ObjectEncryptor, ObjectLayout, RangeDecryptor, SecretKey, StringMap, WrappedKey,
};
use futures::StreamExt;
use proptest::prelude::*;
use proptest::sample::Index;

/// `cases` unless `PROPTEST_CASES` is set, which then wins (a longer or shorter search).
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const KEK_BYTES: [u8; 32] = [0x42; 32];

fn kek() -> SecretKey {
    SecretKey::from_slice(&KEK_BYTES).unwrap()
}

/// A fresh DEK wrapped under the test KEK for `context`, as a client-side object would be.
fn new_dek(context: &Context) -> (SecretKey, WrappedKey) {
    let dek = SecretKey::generate().unwrap();
    let reference = KeyReference::new(KeyKind::ClientKek, vec![0x11; 16], 1).unwrap();
    let wrapped = WrappedKey::wrap(reference, &kek(), dek.expose(), context).unwrap();
    (dek, wrapped)
}

/// Deterministic, non-repeating-looking plaintext (xorshift64*): cheap to generate and to
/// shrink (only `len` and `seed` shrink), unlike a 70 KB `Vec<u8>` strategy.
fn plaintext(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn encrypt(len: usize, seed: u64, context: &Context, metadata: &Metadata) -> (Vec<u8>, Vec<u8>) {
    let plain = plaintext(len, seed);
    let (dek, wrapped) = new_dek(context);
    let object = encrypt_to_vec(&dek, &wrapped, context, metadata, &plain).unwrap();
    (plain, object)
}

fn from_slice(object: &[u8], context: &Context) -> coffer_format::Result<(Vec<u8>, Metadata)> {
    decrypt_from_slice(object, context, &mut LocalKek(&kek()))
}

/// Reads with [`DecryptReader`]; on failure also returns whatever plaintext was released
/// before the error (it must be an authentic prefix).
fn sync_read(
    object: &[u8],
    context: &Context,
) -> Result<(Vec<u8>, Metadata), (coffer_format::Error, Vec<u8>)> {
    let mut reader = DecryptReader::new(Cursor::new(object), context, &mut LocalKek(&kek()))
        .map_err(|e| (e, Vec::new()))?;
    let mut out = Vec::new();
    match reader.read_to_end(&mut out) {
        Ok(_) => {
            let summary = reader.summary().expect("summary after a complete read");
            assert_eq!(summary.plaintext_len, out.len() as u64);
            assert_eq!(summary.crc32c, crc32c::crc32c(&out));
            Ok((out, reader.metadata().clone()))
        }
        Err(e) => Err((e.into(), out)),
    }
}

fn async_read(
    object: &[u8],
    context: &Context,
    frame: usize,
) -> coffer_format::Result<(Vec<u8>, Metadata)> {
    let frames: Vec<std::io::Result<Bytes>> = object
        .chunks(frame)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::executor::block_on(async {
        let mut s = decrypt_stream(
            futures::stream::iter(frames),
            context,
            &mut LocalKek(&kek()),
        )
        .await?;
        let mut out = Vec::new();
        while let Some(b) = s.body.next().await {
            out.extend_from_slice(&b?);
        }
        Ok((out, s.metadata))
    })
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Plaintext lengths: anything up to ~70 KB, with extra weight just around chunk multiples.
fn plain_len(max: usize) -> impl Strategy<Value = usize> {
    let boundaries = max / CHUNK_SIZE;
    prop_oneof![
        2 => 0..=max,
        2 => (0..=boundaries, -3isize..=3).prop_map(|(k, d)| {
            (k * CHUNK_SIZE).saturating_add_signed(d)
        }),
        1 => 0usize..=64,
    ]
}

/// Arbitrary UTF-8 maps (control characters, astral planes…) within small sizes.
fn string_map() -> impl Strategy<Value = StringMap> {
    prop::collection::btree_map("(?s).{1,12}", "(?s).{0,40}", 0..6).prop_map(
        |m: BTreeMap<String, String>| StringMap::from_pairs(m).expect("within the map limits"),
    )
}

/// A position for a range bound, interpreted against the plaintext length.
#[derive(Clone, Copy, Debug)]
enum Pos {
    /// Somewhere in `0..=len + 1` (so the end and one past it are reachable).
    Rel(Index),
    /// A small absolute value (often past the end of short plaintexts).
    Abs(u64),
    /// Anything, including values near `u64::MAX`.
    Huge(u64),
}

impl Pos {
    fn at(self, len: u64) -> u64 {
        match self {
            Pos::Rel(i) => i.index(len as usize + 2) as u64,
            Pos::Abs(v) => v,
            Pos::Huge(v) => v,
        }
    }
}

fn pos() -> impl Strategy<Value = Pos> {
    prop_oneof![
        6 => any::<Index>().prop_map(Pos::Rel),
        2 => (0u64..=72_000).prop_map(Pos::Abs),
        1 => prop_oneof![Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()].prop_map(Pos::Huge),
    ]
}

#[derive(Clone, Copy, Debug)]
enum RangeSpec {
    Bounded(Pos, Pos),
    From(Pos),
    Suffix(Pos),
}

impl RangeSpec {
    fn resolve(self, len: u64) -> ByteRange {
        match self {
            RangeSpec::Bounded(a, b) => ByteRange::Bounded {
                first: a.at(len),
                last: b.at(len),
            },
            RangeSpec::From(a) => ByteRange::From(a.at(len)),
            RangeSpec::Suffix(n) => ByteRange::Suffix(n.at(len)),
        }
    }
}

fn range_spec() -> impl Strategy<Value = RangeSpec> {
    prop_oneof![
        3 => (pos(), pos()).prop_map(|(a, b)| RangeSpec::Bounded(a, b)),
        1 => pos().prop_map(RangeSpec::From),
        1 => pos().prop_map(RangeSpec::Suffix),
    ]
}

/// Splits `total` bytes into pieces whose sizes cycle through `sizes` (each ≥ 1).
fn split_points(total: usize, sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < total {
        let n = sizes[i % sizes.len()].max(1).min(total - at);
        out.push(at..at + n);
        at += n;
        i += 1;
    }
    out
}

fn piece_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![
            3 => 1usize..=64,
            3 => 1usize..=20_000,
            1 => Just(CHUNK_SIZE),
            1 => (CHUNK_SIZE - 2)..=(CHUNK_SIZE + 2),
        ],
        1..8,
    )
}

// ---------------------------------------------------------------------------------------------
// 1. Round trip through every decryption surface
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn round_trip_all_surfaces(
        len in plain_len(70_000),
        seed in any::<u64>(),
        context in string_map(),
        metadata in string_map(),
        frame in prop_oneof![1usize..=64, 1usize..=20_000],
    ) {
        let (plain, object) = encrypt(len, seed, &context, &metadata);

        // The layout arithmetic of spec §6 predicts the object's size.
        let h = header_len(&object[..FIXED_LEN]).unwrap();
        let header = Header::parse(&object[..h]).unwrap();
        prop_assert_eq!(header.len(), h);
        let layout = ObjectLayout::new(h as u64, object.len() as u64).unwrap();
        prop_assert_eq!(layout.plaintext_len(), len as u64);
        prop_assert_eq!(layout.payload.chunks, (len / CHUNK_SIZE) as u64 + 1);

        let (p, m) = from_slice(&object, &context).unwrap();
        prop_assert!(p == plain, "decrypt_from_slice plaintext differs");
        prop_assert_eq!(&m, &metadata);

        let (p, m) = sync_read(&object, &context).map_err(|(e, _)| e).unwrap();
        prop_assert!(p == plain, "DecryptReader plaintext differs");
        prop_assert_eq!(&m, &metadata);

        let (p, m) = async_read(&object, &context, frame).unwrap();
        prop_assert!(p == plain, "decrypt_stream plaintext differs");
        prop_assert_eq!(&m, &metadata);
    }

    /// The same object under any other context fails everywhere (the context is bound).
    #[test]
    fn other_context_is_rejected(
        len in plain_len(40_000),
        seed in any::<u64>(),
        context in string_map(),
        other in string_map(),
    ) {
        prop_assume!(context != other);
        let (_, object) = encrypt(len, seed, &context, &Metadata::new());
        prop_assert!(from_slice(&object, &other).is_err());
        prop_assert!(sync_read(&object, &other).is_err());
        prop_assert!(async_read(&object, &other, 4096).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Range reads
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn ranges_match_slices(
        len in plain_len(70_000),
        seed in any::<u64>(),
        context in string_map(),
        metadata in string_map(),
        specs in prop::collection::vec(range_spec(), 1..8),
    ) {
        let (plain, object) = encrypt(len, seed, &context, &metadata);
        let len = len as u64;
        for spec in specs {
            let range = spec.resolve(len);
            let expected = range.resolve(len);
            let got = decrypt_range(
                &mut Cursor::new(&object),
                &context,
                &mut LocalKek(&kek()),
                range,
            );
            match (expected, got) {
                (Ok(r), Ok(out)) => {
                    prop_assert!(!r.is_empty() && r.end <= len, "{range:?} resolved to {r:?}");
                    prop_assert_eq!(&out.range, &r);
                    prop_assert_eq!(out.plaintext_len, len);
                    prop_assert_eq!(&out.metadata, &metadata);
                    let want = &plain[r.start as usize..r.end as usize];
                    prop_assert!(out.data == want, "{:?}: data differs from slice {:?}", range, r);
                }
                (Err(Error::RangeNotSatisfiable), Err(Error::RangeNotSatisfiable)) => {
                    // Unsatisfiable only if the range really lies outside the plaintext.
                    let outside = match range {
                        ByteRange::Bounded { first, last } => first > last || first >= len,
                        ByteRange::From(first) => first >= len,
                        ByteRange::Suffix(n) => n == 0 || len == 0,
                    };
                    prop_assert!(outside, "{range:?} unsatisfiable for len {len}");
                }
                (e, g) => prop_assert!(
                    false,
                    "{range:?} len {len}: resolve {e:?} but decrypt_range {:?}",
                    g.map(|o| o.range)
                ),
            }
        }
    }

    /// RangeDecryptor opens any run of chunks, in any order, to the matching plaintext.
    #[test]
    fn range_decryptor_opens_any_chunk_run(
        len in plain_len(70_000),
        seed in any::<u64>(),
        context in string_map(),
        runs in prop::collection::vec((any::<Index>(), any::<Index>()), 1..6),
    ) {
        let (plain, object) = encrypt(len, seed, &context, &Metadata::new());
        let h = header_len(&object[..FIXED_LEN]).unwrap();
        let header = Header::parse(&object[..h]).unwrap();
        let layout = ObjectLayout::new(h as u64, object.len() as u64).unwrap();
        let dek = coffer_format::DekUnwrapper::unwrap_dek(
            &mut LocalKek(&kek()),
            header.wrapped_dek(),
            &context,
        )
        .unwrap();
        let prefix = &object[h..h + PREFIX_LEN];
        let (dec, _) = RangeDecryptor::new(dek, &context, &header, prefix, layout).unwrap();
        let trailer = &object[object.len() - TRAILER_LEN..];
        dec.verify_trailer(trailer).unwrap();
        let chunks = layout.payload.chunks as usize;
        for (a, b) in runs {
            let (a, b) = (a.index(chunks), b.index(chunks));
            let (first, last) = (a.min(b) as u64, a.max(b) as u64);
            let span = layout.chunk_span(first, last);
            let mut out = Vec::new();
            dec.open_chunks(first, &object[span.start as usize..span.end as usize], &mut out)
                .unwrap();
            let start = first as usize * CHUNK_SIZE;
            let end = ((last as usize + 1) * CHUNK_SIZE).min(plain.len());
            prop_assert!(out == plain[start..end], "chunks {first}..={last} differ");
            // The same ciphertext presented as other chunks never opens.
            if first != last || chunks > 1 {
                let shifted = if first > 0 { first - 1 } else { first + 1 };
                let mut junk = Vec::new();
                let wrong = dec.open_chunks(
                    shifted,
                    &object[span.start as usize..span.end as usize],
                    &mut junk,
                );
                prop_assert!(wrong.is_err(), "chunks {first}..={last} opened as {shifted}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Tampering, truncation and extension are rejected
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn any_single_bit_flip_is_rejected(
        len in plain_len(40_000),
        seed in any::<u64>(),
        context in string_map(),
        metadata in string_map(),
        bit in any::<Index>(),
    ) {
        let (plain, mut object) = encrypt(len, seed, &context, &metadata);
        let bit = bit.index(object.len() * 8);
        object[bit / 8] ^= 1 << (bit % 8);

        prop_assert!(from_slice(&object, &context).is_err(), "bit {bit} flip accepted");
        match sync_read(&object, &context) {
            Ok(_) => prop_assert!(false, "DecryptReader accepted bit {bit} flip"),
            // Whatever was released before the failure is authentic plaintext.
            Err((_, released)) => prop_assert!(
                plain.starts_with(&released),
                "DecryptReader released non-authentic bytes (bit {bit})"
            ),
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_truncation_is_rejected(
        len in plain_len(40_000),
        seed in any::<u64>(),
        context in string_map(),
        cut in prop_oneof![
            3 => any::<Index>().prop_map(Err),
            // Near the end: inside the trailer, the final chunk, a chunk boundary.
            2 => (1usize..=TRAILER_LEN + 16 + 2).prop_map(Ok),
        ],
    ) {
        let (plain, object) = encrypt(len, seed, &context, &Metadata::new());
        let keep = match cut {
            Err(i) => i.index(object.len()),
            Ok(back) => object.len().saturating_sub(back),
        };
        let object = &object[..keep];

        prop_assert!(from_slice(object, &context).is_err(), "truncation to {keep} accepted");
        match sync_read(object, &context) {
            Ok(_) => prop_assert!(false, "DecryptReader accepted truncation to {keep}"),
            Err((_, released)) => prop_assert!(plain.starts_with(&released)),
        }
        prop_assert!(async_read(object, &context, 5000).is_err());
        let r = decrypt_range(&mut Cursor::new(object), &context, &mut LocalKek(&kek()),
            ByteRange::From(0));
        prop_assert!(r.is_err(), "decrypt_range accepted truncation to {keep}");
    }

    #[test]
    fn any_extension_is_rejected(
        len in plain_len(40_000),
        seed in any::<u64>(),
        context in string_map(),
        extra in prop_oneof![
            3 => prop::collection::vec(any::<u8>(), 1..64),
            1 => prop::collection::vec(any::<u8>(), 1..20_000),
            // Copies of the object's own tail (trailer, final chunk) are no better.
            1 => (1usize..=80).prop_map(|n| vec![0xFF; n]),
        ],
        copy_tail in any::<bool>(),
    ) {
        let (plain, mut object) = encrypt(len, seed, &context, &Metadata::new());
        let extra = if copy_tail {
            let n = extra.len().min(object.len());
            object[object.len() - n..].to_vec()
        } else {
            extra
        };
        object.extend_from_slice(&extra);

        prop_assert!(from_slice(&object, &context).is_err(), "{} bytes appended", extra.len());
        match sync_read(&object, &context) {
            Ok(_) => prop_assert!(false, "DecryptReader accepted {} appended bytes", extra.len()),
            Err((_, released)) => prop_assert!(plain.starts_with(&released)),
        }
        prop_assert!(async_read(&object, &context, 3000).is_err());
        let r = decrypt_range(&mut Cursor::new(&object), &context, &mut LocalKek(&kek()),
            ByteRange::Bounded { first: 0, last: 0 });
        prop_assert!(r.is_err(), "decrypt_range accepted {} appended bytes", extra.len());
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Writers and encryptors: output independent of how the input is split
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn encrypt_writer_any_split(
        len in plain_len(70_000),
        seed in any::<u64>(),
        context in string_map(),
        metadata in string_map(),
        sizes in piece_sizes(),
        parallel in any::<bool>(),
    ) {
        let plain = plaintext(len, seed);
        let (dek, wrapped) = new_dek(&context);
        let mut w = EncryptWriter::new(Vec::new(), &dek, &wrapped, &context, &metadata).unwrap();
        w.set_parallel(parallel);
        for piece in split_points(plain.len(), &sizes) {
            w.write_all(&plain[piece]).unwrap();
        }
        w.flush().unwrap();
        let (object, summary) = w.finish().unwrap();
        prop_assert_eq!(summary.plaintext_len, len as u64);
        prop_assert_eq!(summary.crc32c, crc32c::crc32c(&plain));
        // Same size as the one-shot encryption of the same plaintext.
        let one_shot = encrypt_to_vec(&dek, &wrapped, &context, &metadata, &plain).unwrap();
        prop_assert_eq!(object.len(), one_shot.len());

        let (p, m) = from_slice(&object, &context).unwrap();
        prop_assert!(p == plain, "EncryptWriter object decrypts to other plaintext");
        prop_assert_eq!(&m, &metadata);
        let (p, _) = sync_read(&object, &context).map_err(|(e, _)| e).unwrap();
        prop_assert!(p == plain);
    }
}

/// Feeds `object` to a sans-I/O [`ObjectDecryptor`] in pieces of `sizes`.
fn sans_io_decrypt(
    object: &[u8],
    context: &Context,
    sizes: &[usize],
    parallel: bool,
) -> coffer_format::Result<(Vec<u8>, Metadata)> {
    let h = header_len(&object[..FIXED_LEN])?;
    let header = Header::parse(&object[..h])?;
    let dek = coffer_format::DekUnwrapper::unwrap_dek(
        &mut LocalKek(&kek()),
        header.wrapped_dek(),
        context,
    )?;
    let (mut dec, metadata) = ObjectDecryptor::new(dek, context, &header)?;
    dec.set_parallel(parallel);
    let payload = &object[h..];
    let mut out = Vec::new();
    for piece in split_points(payload.len(), sizes) {
        dec.update(&payload[piece], &mut out)?;
    }
    let summary = dec.finish(&mut out)?;
    assert_eq!(summary.plaintext_len, out.len() as u64);
    Ok((out, metadata))
}

proptest! {
    // Up to ~330 KB per case, so the rayon path (≥ 16 chunks in one update) is exercised.
    #![proptest_config(config(96))]

    #[test]
    fn object_encryptor_sequential_and_parallel_agree(
        len in prop_oneof![
            plain_len(70_000),
            (16 * CHUNK_SIZE - 2)..=(20 * CHUNK_SIZE + 2),
        ],
        seed in any::<u64>(),
        context in string_map(),
        metadata in string_map(),
        enc_sizes in prop_oneof![
            Just(vec![usize::MAX]),
            piece_sizes(),
            prop::collection::vec((16 * CHUNK_SIZE)..=(17 * CHUNK_SIZE + 5), 1..3),
        ],
        dec_sizes in prop_oneof![
            Just(vec![usize::MAX]),
            piece_sizes(),
        ],
    ) {
        let plain = plaintext(len, seed);
        let (dek, wrapped) = new_dek(&context);
        let mut objects = Vec::new();
        for parallel in [false, true] {
            let (mut enc, mut object) =
                ObjectEncryptor::new(&dek, &wrapped, &context, &metadata).unwrap();
            enc.set_parallel(parallel);
            for piece in split_points(plain.len(), &enc_sizes) {
                enc.update(&plain[piece], &mut object).unwrap();
            }
            let summary = enc.finish(&mut object).unwrap();
            prop_assert_eq!(summary.plaintext_len, len as u64);
            prop_assert_eq!(summary.crc32c, crc32c::crc32c(&plain));
            objects.push(object);
        }
        prop_assert_eq!(objects[0].len(), objects[1].len());
        for object in &objects {
            for parallel in [false, true] {
                let (p, m) = sans_io_decrypt(object, &context, &dec_sizes, parallel).unwrap();
                prop_assert!(p == plain, "parallel={parallel}: plaintext differs");
                prop_assert_eq!(&m, &metadata);
            }
            let (p, _) = from_slice(object, &context).unwrap();
            prop_assert!(p == plain);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. In-place slots: `seal_slots` / `open_slots` give the same bytes as `update`
// ---------------------------------------------------------------------------------------------

const SLOT: usize = ENCRYPTED_CHUNK_SIZE;
const SALT: [u8; SALT_LEN] = [0x5a; SALT_LEN];

/// Encrypts `plain` with a fixed salt through `update` in one call.
fn encrypt_by_update(
    plain: &[u8],
    dek: &SecretKey,
    wrapped: &WrappedKey,
    context: &Context,
    metadata: &Metadata,
) -> (Vec<u8>, coffer_format::Summary) {
    let (mut enc, mut object) =
        ObjectEncryptor::with_salt(dek, wrapped, context, metadata, SALT).unwrap();
    enc.update(plain, &mut object).unwrap();
    let summary = enc.finish(&mut object).unwrap();
    (object, summary)
}

/// Encrypts `plain` with a fixed salt: `lead` whole chunks through `update`, then whole
/// chunks through `seal_slots` in batches whose chunk counts (≥ 1) cycle through `batches` (the
/// plaintext copied into slots whose tag bytes hold garbage), the remainder through `update`.
#[allow(clippy::too_many_arguments)]
fn encrypt_by_slots(
    plain: &[u8],
    dek: &SecretKey,
    wrapped: &WrappedKey,
    context: &Context,
    metadata: &Metadata,
    lead: usize,
    batches: &[usize],
    parallel: bool,
) -> (Vec<u8>, coffer_format::Summary) {
    let (mut enc, mut object) =
        ObjectEncryptor::with_salt(dek, wrapped, context, metadata, SALT).unwrap();
    enc.set_parallel(parallel);
    let whole = plain.len() / CHUNK_SIZE;
    let lead = lead.min(whole);
    enc.update(&plain[..lead * CHUNK_SIZE], &mut object)
        .unwrap();
    enc.seal_slots(&mut []).unwrap();
    let mut at = lead;
    let mut slots = Vec::new();
    for &k in batches.iter().cycle() {
        if at == whole {
            break;
        }
        let k = k.clamp(1, whole - at);
        slots.clear();
        slots.resize(k * SLOT, 0xA5);
        for (i, slot) in slots.chunks_exact_mut(SLOT).enumerate() {
            let piece = &plain[(at + i) * CHUNK_SIZE..(at + i + 1) * CHUNK_SIZE];
            slot[..CHUNK_SIZE].copy_from_slice(piece);
        }
        enc.seal_slots(&mut slots).unwrap();
        object.extend_from_slice(&slots);
        at += k;
    }
    enc.update(&plain[whole * CHUNK_SIZE..], &mut object)
        .unwrap();
    let summary = enc.finish(&mut object).unwrap();
    (object, summary)
}

/// Decrypts as a pipelined reader does with `open_slots`: windows of `window` bytes of
/// payload (after the salt and commitment, fed to `update`), the unopened rest of each window
/// starting the next one; what is left at the end goes to `update` and `finish`.
fn decrypt_by_slots(
    object: &[u8],
    context: &Context,
    window: usize,
    parallel: bool,
) -> coffer_format::Result<Vec<u8>> {
    let h = header_len(&object[..FIXED_LEN])?;
    let header = Header::parse(&object[..h])?;
    let dek = coffer_format::DekUnwrapper::unwrap_dek(
        &mut LocalKek(&kek()),
        header.wrapped_dek(),
        context,
    )?;
    let (mut dec, _) = ObjectDecryptor::new(dek, context, &header)?;
    dec.set_parallel(parallel);
    let mut out = Vec::new();
    dec.update(&object[h..h + PREFIX_LEN], &mut out)?;
    assert!(out.is_empty());
    let payload = &object[h + PREFIX_LEN..];
    let mut at = 0;
    let mut buf = Vec::new();
    loop {
        let end = (at + window).min(payload.len());
        buf.clear();
        buf.extend_from_slice(&payload[at..end]);
        let n = dec.open_slots(&mut buf)?;
        assert_eq!(n, ObjectDecryptor::ready_chunks(buf.len()));
        for slot in buf.chunks_exact(SLOT).take(n) {
            out.extend_from_slice(&slot[..CHUNK_SIZE]);
        }
        // The bytes after the opened chunks are left as they were.
        assert!(buf[n * SLOT..] == payload[at + n * SLOT..end]);
        at += n * SLOT;
        if end == payload.len() {
            break;
        }
    }
    dec.update(&payload[at..], &mut out)?;
    dec.finish(&mut out)?;
    Ok(out)
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn seal_slots_and_open_slots_match_update(
        len in prop_oneof![
            plain_len(70_000),
            (16 * CHUNK_SIZE - 2)..=(40 * CHUNK_SIZE + 2),
        ],
        seed in any::<u64>(),
        context in string_map(),
        metadata in string_map(),
        lead in 0usize..3,
        batches in prop::collection::vec(prop_oneof![1usize..=3, 15usize..=24], 1..4),
        window_chunks in prop_oneof![1usize..=3, 16usize..=24],
        window_extra in 0usize..(SLOT + 100),
        parallel in any::<bool>(),
    ) {
        let plain = plaintext(len, seed);
        let (dek, wrapped) = new_dek(&context);
        let (reference, ref_summary) =
            encrypt_by_update(&plain, &dek, &wrapped, &context, &metadata);
        let (object, summary) = encrypt_by_slots(
            &plain, &dek, &wrapped, &context, &metadata, lead, &batches, parallel,
        );
        // The header's metadata block and the trailer are sealed under random nonces; the
        // salt, commitment and chunks in between must be the same bytes.
        let h = header_len(&object[..FIXED_LEN]).unwrap();
        prop_assert_eq!(h, header_len(&reference[..FIXED_LEN]).unwrap());
        prop_assert_eq!(object.len(), reference.len());
        let chunks = h..object.len() - TRAILER_LEN;
        prop_assert!(
            object[chunks.clone()] == reference[chunks],
            "seal_slots bytes differ from update's"
        );
        prop_assert_eq!(summary, ref_summary);
        prop_assert_eq!(summary.crc32c, crc32c::crc32c(&plain));

        // A window shorter than a chunk plus the smallest tail opens nothing; keep progress.
        let window = (window_chunks * SLOT + window_extra).max(SLOT + TAG_LEN + TRAILER_LEN);
        let p = decrypt_by_slots(&object, &context, window, parallel).unwrap();
        prop_assert!(p == plain, "open_slots plaintext differs");
    }

    #[test]
    fn open_slots_rejects_any_flipped_bit(
        len in (16 * CHUNK_SIZE)..=(20 * CHUNK_SIZE),
        seed in any::<u64>(),
        at in any::<Index>(),
        bit in 0u8..8,
        parallel in any::<bool>(),
    ) {
        let context = Context::new();
        let (plain, mut object) = encrypt(len, seed, &context, &Metadata::new());
        let h = header_len(&object[..FIXED_LEN]).unwrap();
        // Anywhere in the payload: salt, commitment, chunks, trailer.
        let i = h + at.index(object.len() - h);
        object[i] ^= 1 << bit;
        prop_assert!(decrypt_by_slots(&object, &context, 20 * SLOT, parallel).is_err());
        object[i] ^= 1 << bit;
        prop_assert!(decrypt_by_slots(&object, &context, 20 * SLOT, parallel).unwrap() == plain);
    }
}

#[test]
fn slot_calls_out_of_place_are_refused() {
    let context = Context::new();
    let (dek, wrapped) = new_dek(&context);
    let (mut enc, mut object) =
        ObjectEncryptor::with_salt(&dek, &wrapped, &context, &Metadata::new(), SALT).unwrap();
    let mut slots = vec![0u8; 2 * SLOT];
    assert!(matches!(
        enc.seal_slots(&mut slots[..SLOT + 1]),
        Err(Error::InvalidArgument(_))
    ));
    enc.update(b"partial", &mut object).unwrap();
    assert!(matches!(
        enc.seal_slots(&mut slots),
        Err(Error::InvalidArgument(_))
    ));

    let plain = plaintext(3 * CHUNK_SIZE, 7);
    let object = encrypt_to_vec(&dek, &wrapped, &context, &Metadata::new(), &plain).unwrap();
    let h = header_len(&object[..FIXED_LEN]).unwrap();
    let header = Header::parse(&object[..h]).unwrap();
    let (mut dec, _) = ObjectDecryptor::new(dek, &context, &header).unwrap();
    let mut payload = object[h + PREFIX_LEN..].to_vec();
    // Before the salt and commitment.
    assert!(matches!(
        dec.open_slots(&mut payload),
        Err(Error::InvalidArgument(_))
    ));
    // Off a chunk boundary.
    let mut out = Vec::new();
    dec.update(&object[h..h + PREFIX_LEN + 1], &mut out)
        .unwrap();
    assert!(matches!(
        dec.open_slots(&mut payload[1..]),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn ready_chunks_holds_back_what_may_be_the_final_chunk() {
    let tail = TAG_LEN + TRAILER_LEN;
    assert_eq!(ObjectDecryptor::ready_chunks(0), 0);
    assert_eq!(ObjectDecryptor::ready_chunks(SLOT), 0);
    assert_eq!(ObjectDecryptor::ready_chunks(SLOT + tail - 1), 0);
    assert_eq!(ObjectDecryptor::ready_chunks(SLOT + tail), 1);
    assert_eq!(ObjectDecryptor::ready_chunks(3 * SLOT + tail), 3);
    assert_eq!(ObjectDecryptor::ready_chunks(4 * SLOT), 3);
}
