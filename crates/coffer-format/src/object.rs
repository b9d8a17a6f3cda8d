//! Sans-I/O whole-object encryption and decryption: header, C2SP payload, trailer.
//!
//! [`ObjectEncryptor`] and [`ObjectDecryptor`] take bytes in and append bytes out; the
//! sync, async and range front-ends in this crate are thin loops around them. Large inputs
//! are sealed/opened across cores with rayon unless parallelism is switched off.

use rayon::prelude::*;

use crate::chunked::{
    ChunkOpener, ChunkSealer, CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, PREFIX_LEN, TAG_LEN,
};
use crate::context::{Context, Metadata};
use crate::header::{build_header, Header, SideKeys, TRAILER_LEN};
use crate::secret::SecretKey;
use crate::wrapped_key::WrappedKey;
use crate::{Error, Result};

/// Below this many chunks in one call, sealing/opening stays on the calling thread.
const PARALLEL_MIN_CHUNKS: usize = 16;
/// The smallest tail that can follow the last non-final chunk: an empty final chunk + trailer.
const MIN_TAIL: usize = TAG_LEN + TRAILER_LEN;

/// What an encryption or a successful decryption saw of the plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub plaintext_len: u64,
    /// CRC-32C (Castagnoli) of the whole plaintext.
    pub crc32c: u32,
}

/// Encrypts one object. Create with [`ObjectEncryptor::new`], feed with `update`, end with
/// `finish`; the concatenation of everything appended to `out` is the object.
pub struct ObjectEncryptor {
    sealer: ChunkSealer,
    side: SideKeys,
    pending: Vec<u8>,
    next_chunk: u64,
    plaintext_len: u64,
    crc: Crc,
    parallel: bool,
}

/// The running CRC-32C of the plaintext, computed chunk by chunk while each chunk is hot in
/// cache (a separate pass over the data would cost a third of the AES-GCM time).
type Crc = crc_fast::Digest;

fn new_crc() -> Crc {
    crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi)
}

fn crc_value(crc: &Crc) -> u32 {
    // CRC-32C fits in 32 bits; crc-fast returns every width as u64.
    (crc.finalize() & 0xFFFF_FFFF) as u32
}

/// How many chunks each parallel task handles: a few tasks per thread, so the per-task CRCs
/// to combine stay few.
fn group_size(n: usize) -> usize {
    (n / (rayon::current_num_threads() * 4)).max(1)
}

/// Checksums (into `crc`) and seals each slot of `group` as chunk `first`, `first + 1`, …,
/// first copying its plaintext from `src` (consecutive `CHUNK_SIZE` pieces) when given.
fn seal_group(
    sealer: &ChunkSealer,
    first: u64,
    group: &mut [u8],
    src: Option<&[u8]>,
    crc: &mut Crc,
) -> Result<()> {
    for (i, slot) in group.chunks_exact_mut(ENCRYPTED_CHUNK_SIZE).enumerate() {
        if let Some(src) = src {
            slot[..CHUNK_SIZE].copy_from_slice(&src[i * CHUNK_SIZE..(i + 1) * CHUNK_SIZE]);
        }
        crc.update(&slot[..CHUNK_SIZE]);
        sealer.seal_in_place(first + i as u64, slot)?;
    }
    Ok(())
}

/// Opens each full chunk slot of `group` in place as chunk `first`, `first + 1`, …: the
/// plaintext replaces the ciphertext in the slot's first `CHUNK_SIZE` bytes and is
/// checksummed into `crc`.
fn open_group(opener: &ChunkOpener, first: u64, group: &mut [u8], crc: &mut Crc) -> Result<()> {
    for (i, slot) in group.chunks_exact_mut(ENCRYPTED_CHUNK_SIZE).enumerate() {
        let (body, tag) = slot.split_at_mut(CHUNK_SIZE);
        opener.open_detached(first + i as u64, body, tag, false)?;
        crc.update(body);
    }
    Ok(())
}

impl ObjectEncryptor {
    /// Starts an object encrypted under `dek` (whose wrapped form is `wrapped_dek`), bound to
    /// `context`, carrying `metadata`. Returns the encryptor and the first bytes of the object
    /// (header, salt, commitment).
    pub fn new(
        dek: &SecretKey,
        wrapped_dek: &WrappedKey,
        context: &Context,
        metadata: &Metadata,
    ) -> Result<(Self, Vec<u8>)> {
        let ctx = context.encode();
        Self::from_sealer(
            ChunkSealer::new(dek, &ctx)?,
            dek,
            wrapped_dek,
            &ctx,
            metadata,
        )
    }

    /// As [`ObjectEncryptor::new`] with a fixed C2SP salt: for test vectors only.
    #[doc(hidden)]
    pub fn with_salt(
        dek: &SecretKey,
        wrapped_dek: &WrappedKey,
        context: &Context,
        metadata: &Metadata,
        salt: [u8; crate::chunked::SALT_LEN],
    ) -> Result<(Self, Vec<u8>)> {
        let ctx = context.encode();
        let sealer = ChunkSealer::with_salt(dek, &ctx, salt)?;
        Self::from_sealer(sealer, dek, wrapped_dek, &ctx, metadata)
    }

    fn from_sealer(
        sealer: ChunkSealer,
        dek: &SecretKey,
        wrapped_dek: &WrappedKey,
        ctx: &[u8],
        metadata: &Metadata,
    ) -> Result<(Self, Vec<u8>)> {
        let side = SideKeys::derive(dek, ctx)?;
        let mut first = build_header(&side, wrapped_dek, metadata)?;
        first.extend_from_slice(sealer.prefix());
        let enc = ObjectEncryptor {
            sealer,
            side,
            pending: Vec::with_capacity(CHUNK_SIZE),
            next_chunk: 0,
            plaintext_len: 0,
            crc: new_crc(),
            parallel: true,
        };
        Ok((enc, first))
    }

    /// Whether large updates are sealed on several threads (default: yes).
    pub fn set_parallel(&mut self, parallel: bool) {
        self.parallel = parallel;
    }

    /// Encrypts `input`, appending every completed chunk to `out`.
    pub fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.plaintext_len += input.len() as u64;
        if !self.pending.is_empty() {
            let take = (CHUNK_SIZE - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() < CHUNK_SIZE {
                return Ok(());
            }
            let pending = std::mem::take(&mut self.pending);
            self.seal_full_chunks(&pending, out)?;
            self.pending = pending;
            self.pending.clear();
        }
        let whole = input.len() / CHUNK_SIZE * CHUNK_SIZE;
        self.seal_full_chunks(&input[..whole], out)?;
        self.pending.extend_from_slice(&input[whole..]);
        Ok(())
    }

    /// Seals whole chunks in place, laid out as they appear in the object.
    ///
    /// `slots` is `k × ENCRYPTED_CHUNK_SIZE` bytes: each slot holds the next `CHUNK_SIZE`
    /// bytes of plaintext followed by `TAG_LEN` bytes of any value. On success every slot holds
    /// its sealed chunk, so `slots` are the next `k` chunks of the object: exactly the bytes
    /// [`ObjectEncryptor::update`] would have appended for the same plaintext. This spares
    /// the copy `update` makes: a reader can read plaintext straight into the slots (for
    /// example with [`std::io::Read::read_vectored`]) and write the sealed slots out as they
    /// are. Large calls are sealed across cores unless parallelism is switched off.
    ///
    /// Only at a chunk boundary: every earlier `update` must have fed a multiple of
    /// `CHUNK_SIZE` bytes in total (`Error::InvalidArgument` otherwise, or when `slots.len()`
    /// is not a multiple of `ENCRYPTED_CHUNK_SIZE`). Mixing the two is fine: feed the
    /// remainder that does not fill a slot to `update`, then call `finish`. After an error
    /// the contents of `slots` are unspecified and the object must be abandoned.
    pub fn seal_slots(&mut self, slots: &mut [u8]) -> Result<()> {
        if !self.pending.is_empty() {
            return Err(Error::InvalidArgument(
                "seal_slots called with a partial chunk pending",
            ));
        }
        let n = slots.len() / ENCRYPTED_CHUNK_SIZE;
        if n * ENCRYPTED_CHUNK_SIZE != slots.len() {
            return Err(Error::InvalidArgument(
                "seal_slots needs a whole number of chunk slots",
            ));
        }
        self.seal_into_slots(slots, None)?;
        self.plaintext_len += (n * CHUNK_SIZE) as u64;
        Ok(())
    }

    /// Checksums and seals every slot of `slots` (chunks `next_chunk`, `next_chunk + 1`, …),
    /// first copying each slot's plaintext from `src` when given; across cores for large
    /// calls, each task copying its own chunks so the copy is spread across cores too.
    fn seal_into_slots(&mut self, slots: &mut [u8], src: Option<&[u8]>) -> Result<()> {
        let n = slots.len() / ENCRYPTED_CHUNK_SIZE;
        let first = self.next_chunk;
        let sealer = &self.sealer;
        if self.parallel && n >= PARALLEL_MIN_CHUNKS {
            let g = group_size(n);
            let crcs = slots
                .par_chunks_mut(g * ENCRYPTED_CHUNK_SIZE)
                .enumerate()
                .map(|(gi, group)| {
                    let src = src.map(|s| &s[gi * g * CHUNK_SIZE..]);
                    let mut crc = new_crc();
                    seal_group(sealer, first + (gi * g) as u64, group, src, &mut crc)?;
                    Ok(crc)
                })
                .collect::<Result<Vec<Crc>>>()?;
            crcs.iter().for_each(|c| self.crc.combine(c));
        } else {
            seal_group(sealer, first, slots, src, &mut self.crc)?;
        }
        self.next_chunk += n as u64;
        Ok(())
    }

    fn seal_full_chunks(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let n = plain.len() / CHUNK_SIZE;
        if n == 0 {
            return Ok(());
        }
        let start = out.len();
        let result = if self.parallel && n >= PARALLEL_MIN_CHUNKS {
            out.resize(start + n * ENCRYPTED_CHUNK_SIZE, 0);
            self.seal_into_slots(&mut out[start..], Some(plain))
        } else {
            // Copy, checksum and seal each chunk while it is in cache.
            out.reserve(n * ENCRYPTED_CHUNK_SIZE);
            let first = self.next_chunk;
            let sealer = &self.sealer;
            let crc = &mut self.crc;
            let sealed = plain
                .chunks_exact(CHUNK_SIZE)
                .enumerate()
                .try_for_each(|(i, chunk)| {
                    let at = out.len();
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(&[0u8; TAG_LEN]);
                    crc.update(chunk);
                    sealer.seal_in_place(first + i as u64, &mut out[at..])
                });
            if sealed.is_ok() {
                self.next_chunk += n as u64;
            }
            sealed
        };
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Seals the final (short, possibly empty) chunk and the trailer.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<Summary> {
        self.crc.update(&self.pending);
        let crc = crc_value(&self.crc);
        let start = out.len();
        out.extend_from_slice(&self.pending);
        out.extend_from_slice(&[0u8; TAG_LEN]);
        self.sealer
            .seal_in_place(self.next_chunk, &mut out[start..])?;
        out.extend_from_slice(&self.side.seal_trailer(self.plaintext_len, crc)?);
        Ok(Summary {
            plaintext_len: self.plaintext_len,
            crc32c: crc,
        })
    }
}

/// Decrypts one object after its header was parsed and its DEK unwrapped.
///
/// `update` releases plaintext only for chunks that authenticated and that cannot be the final
/// chunk; `finish` checks the final chunk, the trailer's length and CRC-32C. A caller that
/// must not expose unverified output (a file being restored) withholds everything until
/// `finish` succeeds.
pub struct ObjectDecryptor {
    dek: SecretKey,
    context: Vec<u8>,
    opener: Option<ChunkOpener>,
    side: SideKeys,
    buf: Vec<u8>,
    next_chunk: u64,
    plaintext_len: u64,
    crc: Crc,
    parallel: bool,
}

impl ObjectDecryptor {
    /// Opens the metadata block and prepares to decrypt the payload that follows the header.
    pub fn new(dek: SecretKey, context: &Context, header: &Header) -> Result<(Self, Metadata)> {
        let ctx = context.encode();
        let side = SideKeys::derive(&dek, &ctx)?;
        let metadata = header.open_metadata(&side)?;
        let dec = ObjectDecryptor {
            dek,
            context: ctx,
            opener: None,
            side,
            buf: Vec::new(),
            next_chunk: 0,
            plaintext_len: 0,
            crc: new_crc(),
            parallel: true,
        };
        Ok((dec, metadata))
    }

    pub fn set_parallel(&mut self, parallel: bool) {
        self.parallel = parallel;
    }

    /// Feeds payload bytes (everything after the header), appending authenticated plaintext.
    pub fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if self.opener.is_none() {
            let take = (PREFIX_LEN - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.buf.len() < PREFIX_LEN {
                return Ok(());
            }
            let mut prefix = [0u8; PREFIX_LEN];
            prefix.copy_from_slice(&self.buf);
            self.opener = Some(ChunkOpener::new(&self.dek, &self.context, &prefix)?);
            self.buf.clear();
        }
        let total = self.buf.len() + input.len();
        // A chunk followed by at least an empty final chunk and the trailer is not final.
        let n = total.saturating_sub(MIN_TAIL) / ENCRYPTED_CHUNK_SIZE;
        if n == 0 {
            self.buf.extend_from_slice(input);
            return Ok(());
        }
        // Chunks that begin in `buf` are gathered into `head`; the rest open straight from
        // `input`, so each ciphertext byte is copied once.
        let k = n.min(self.buf.len().div_ceil(ENCRYPTED_CHUNK_SIZE));
        let from_buf = self.buf.len().min(k * ENCRYPTED_CHUNK_SIZE);
        let from_input = k * ENCRYPTED_CHUNK_SIZE - from_buf;
        if k > 0 {
            let mut head = Vec::with_capacity(k * ENCRYPTED_CHUNK_SIZE);
            head.extend_from_slice(&self.buf[..from_buf]);
            head.extend_from_slice(&input[..from_input]);
            self.open_full_chunks(&head, out)?;
        }
        let rest = &input[from_input..];
        let direct = (n - k) * ENCRYPTED_CHUNK_SIZE;
        self.open_full_chunks(&rest[..direct], out)?;
        self.buf.drain(..from_buf);
        self.buf.extend_from_slice(&rest[direct..]);
        Ok(())
    }

    /// How many whole chunks at the start of `len` bytes of payload (beginning at a chunk
    /// boundary) [`ObjectDecryptor::open_slots`] opens: those certainly not the final chunk,
    /// because at least an empty final chunk and the trailer follow them.
    pub fn ready_chunks(len: usize) -> usize {
        len.saturating_sub(MIN_TAIL) / ENCRYPTED_CHUNK_SIZE
    }

    /// Opens whole chunks in place, where they lie in the payload.
    ///
    /// `payload` continues the payload at a chunk boundary: the salt and commitment were fed
    /// to [`ObjectDecryptor::update`] and everything fed since ended at a chunk boundary
    /// (`Error::InvalidArgument` otherwise). Opens the first
    /// `k = ObjectDecryptor::ready_chunks(payload.len())` chunks and returns `k`; on success
    /// chunk `i`'s authenticated plaintext is
    /// `payload[i * ENCRYPTED_CHUNK_SIZE..][..CHUNK_SIZE]` (the tag bytes after it are left as
    /// they were), the same bytes `update` would have appended. This spares `update`'s copy:
    /// a writer can write the plaintext pieces out of the slots (for example with
    /// [`std::io::Write::write_vectored`]). The bytes after the `k` chunks are not consumed
    /// and left untouched: pass them again at the start of the next call, or to `update` and
    /// then `finish`. Large calls are opened across cores unless parallelism is switched off.
    ///
    /// As with `update`, the object is verified as a whole only by `finish`. After an error
    /// the contents of `payload` are unspecified and must not be released.
    pub fn open_slots(&mut self, payload: &mut [u8]) -> Result<usize> {
        if !self.buf.is_empty() {
            return Err(Error::InvalidArgument(
                "open_slots called off a chunk boundary",
            ));
        }
        let opener = self.opener.as_ref().ok_or(Error::InvalidArgument(
            "open_slots called before the salt and commitment were fed",
        ))?;
        let n = Self::ready_chunks(payload.len());
        let slots = &mut payload[..n * ENCRYPTED_CHUNK_SIZE];
        let first = self.next_chunk;
        if self.parallel && n >= PARALLEL_MIN_CHUNKS {
            let g = group_size(n);
            let crcs = slots
                .par_chunks_mut(g * ENCRYPTED_CHUNK_SIZE)
                .enumerate()
                .map(|(gi, group)| {
                    let mut crc = new_crc();
                    open_group(opener, first + (gi * g) as u64, group, &mut crc)?;
                    Ok(crc)
                })
                .collect::<Result<Vec<Crc>>>()?;
            crcs.iter().for_each(|c| self.crc.combine(c));
        } else {
            open_group(opener, first, slots, &mut self.crc)?;
        }
        self.plaintext_len += (n * CHUNK_SIZE) as u64;
        self.next_chunk += n as u64;
        Ok(n)
    }

    /// Opens whole non-final chunks from `src`, appending their plaintext to `out`. On
    /// failure nothing of this call stays in `out`.
    fn open_full_chunks(&mut self, src: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let n = src.len() / ENCRYPTED_CHUNK_SIZE;
        if n == 0 {
            return Ok(());
        }
        let opener = self
            .opener
            .as_ref()
            .ok_or(Error::Integrity("missing prefix"))?;
        let first = self.next_chunk;
        let start = out.len();
        out.reserve(n * CHUNK_SIZE);
        let result = if self.parallel && n >= PARALLEL_MIN_CHUNKS {
            out.resize(start + n * CHUNK_SIZE, 0);
            let g = group_size(n);
            out[start..]
                .par_chunks_mut(g * CHUNK_SIZE)
                .zip(src.par_chunks(g * ENCRYPTED_CHUNK_SIZE))
                .enumerate()
                .map(|(gi, (plain, cipher))| {
                    let mut crc = new_crc();
                    let pairs = plain
                        .chunks_mut(CHUNK_SIZE)
                        .zip(cipher.chunks(ENCRYPTED_CHUNK_SIZE));
                    for (i, (body, c)) in pairs.enumerate() {
                        let index = first + (gi * g + i) as u64;
                        body.copy_from_slice(&c[..CHUNK_SIZE]);
                        opener.open_detached(index, body, &c[CHUNK_SIZE..], false)?;
                        crc.update(body);
                    }
                    Ok(crc)
                })
                .collect::<Result<Vec<Crc>>>()
                .map(|crcs| crcs.iter().for_each(|c| self.crc.combine(c)))
        } else {
            src.chunks_exact(ENCRYPTED_CHUNK_SIZE)
                .enumerate()
                .try_for_each(|(i, c)| {
                    let at = out.len();
                    out.extend_from_slice(&c[..CHUNK_SIZE]);
                    let body = &mut out[at..];
                    opener.open_detached(first + i as u64, body, &c[CHUNK_SIZE..], false)?;
                    self.crc.update(body);
                    Ok(())
                })
        };
        if let Err(e) = result {
            out.truncate(start);
            return Err(e);
        }
        self.plaintext_len += (n * CHUNK_SIZE) as u64;
        self.next_chunk += n as u64;
        Ok(())
    }

    /// Authenticates the final chunk and the trailer, appending the final plaintext.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<Summary> {
        let opener = self
            .opener
            .take()
            .ok_or(Error::Integrity("object truncated"))?;
        if self.buf.len() < MIN_TAIL || self.buf.len() >= ENCRYPTED_CHUNK_SIZE + TRAILER_LEN {
            return Err(Error::Integrity("object truncated or extended"));
        }
        let split = self.buf.len() - TRAILER_LEN;
        let (chunk, trailer) = self.buf.split_at_mut(split);
        let len = opener.open_in_place(self.next_chunk, chunk, true)?;
        let final_plain = &chunk[..len];
        self.crc.update(final_plain);
        let crc = crc_value(&self.crc);
        self.plaintext_len += len as u64;
        let (stored_len, stored_crc) = self.side.open_trailer(trailer)?;
        if stored_len != self.plaintext_len {
            return Err(Error::Integrity("trailer length mismatch"));
        }
        if stored_crc != crc {
            return Err(Error::Integrity("plaintext checksum mismatch"));
        }
        out.extend_from_slice(final_plain);
        Ok(Summary {
            plaintext_len: self.plaintext_len,
            crc32c: crc,
        })
    }
}

/// Unwraps an object's DEK: the caller decides which key provider serves the reference.
pub trait DekUnwrapper {
    fn unwrap_dek(&mut self, wrapped: &WrappedKey, context: &Context) -> Result<SecretKey>;
}

impl<F> DekUnwrapper for F
where
    F: FnMut(&WrappedKey, &Context) -> Result<SecretKey>,
{
    fn unwrap_dek(&mut self, wrapped: &WrappedKey, context: &Context) -> Result<SecretKey> {
        self(wrapped, context)
    }
}

/// A DEK unwrapper for a single local wrapping key (a key-encryption key file).
pub struct LocalKek<'a>(pub &'a SecretKey);

impl DekUnwrapper for LocalKek<'_> {
    fn unwrap_dek(&mut self, wrapped: &WrappedKey, context: &Context) -> Result<SecretKey> {
        crate::header::dek_from_unwrapped(wrapped.unwrap(self.0, context)?)
    }
}

/// Encrypts a whole in-memory plaintext (convenience for small objects and tests).
pub fn encrypt_to_vec(
    dek: &SecretKey,
    wrapped_dek: &WrappedKey,
    context: &Context,
    metadata: &Metadata,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let (mut enc, mut out) = ObjectEncryptor::new(dek, wrapped_dek, context, metadata)?;
    out.reserve(crate::chunked::PayloadLayout::payload_len(plaintext.len() as u64) as usize);
    enc.update(plaintext, &mut out)?;
    enc.finish(&mut out)?;
    Ok(out)
}

/// Decrypts a whole in-memory object.
pub fn decrypt_from_slice(
    object: &[u8],
    context: &Context,
    unwrapper: &mut dyn DekUnwrapper,
) -> Result<(Vec<u8>, Metadata)> {
    let header_len = crate::header::header_len(
        object
            .get(..crate::header::FIXED_LEN)
            .ok_or(Error::Malformed("object truncated"))?,
    )?;
    let header = Header::parse(
        object
            .get(..header_len)
            .ok_or(Error::Malformed("object truncated"))?,
    )?;
    let dek = unwrapper.unwrap_dek(header.wrapped_dek(), context)?;
    let (mut dec, metadata) = ObjectDecryptor::new(dek, context, &header)?;
    let mut out = Vec::with_capacity(object.len());
    dec.update(&object[header_len..], &mut out)?;
    dec.finish(&mut out)?;
    Ok((out, metadata))
}
