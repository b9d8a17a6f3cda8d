//! Random-access range decryption: only the chunks covering a byte range are read and
//! decrypted (spec/object-format.md §6, §7; C2SP implementation notes).

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

use crate::chunked::{ChunkOpener, PayloadLayout, CHUNK_SIZE, PREFIX_LEN};
use crate::context::{Context, Metadata};
use crate::header::{Header, SideKeys, TRAILER_LEN};
use crate::object::DekUnwrapper;
use crate::secret::SecretKey;
use crate::{Error, Result};

/// A byte range as HTTP `Range: bytes=` expresses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-last`, both inclusive.
    Bounded { first: u64, last: u64 },
    /// `first-`: to the end.
    From(u64),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The half-open range for an object of `len` bytes (RFC 9110 §14.1.2 semantics: a last
    /// position past the end is clamped; a first position at or past the end, or an empty
    /// suffix, is not satisfiable).
    pub fn resolve(self, len: u64) -> Result<Range<u64>> {
        let r = match self {
            ByteRange::Bounded { first, last } if first <= last && first < len => {
                first..last.min(len - 1) + 1
            }
            ByteRange::From(first) if first < len => first..len,
            ByteRange::Suffix(n) if n > 0 && len > 0 => len - n.min(len)..len,
            _ => return Err(Error::RangeNotSatisfiable),
        };
        Ok(r)
    }

    /// Whether the range is positioned relative to the object's end.
    pub fn is_end_relative(self) -> bool {
        !matches!(self, ByteRange::Bounded { .. })
    }
}

/// Where everything is in a stored object of known total length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectLayout {
    pub header_len: u64,
    pub object_len: u64,
    pub payload: PayloadLayout,
}

impl ObjectLayout {
    pub fn new(header_len: u64, object_len: u64) -> Result<Self> {
        let payload_len = object_len
            .checked_sub(header_len + TRAILER_LEN as u64)
            .ok_or(Error::Integrity("object truncated"))?;
        Ok(ObjectLayout {
            header_len,
            object_len,
            payload: PayloadLayout::from_payload_len(payload_len)?,
        })
    }

    pub fn plaintext_len(&self) -> u64 {
        self.payload.plaintext_len
    }

    /// Object offsets of salt || commitment.
    pub fn prefix_span(&self) -> Range<u64> {
        self.header_len..self.header_len + PREFIX_LEN as u64
    }

    /// Object offsets of the trailer.
    pub fn trailer_span(&self) -> Range<u64> {
        self.object_len - TRAILER_LEN as u64..self.object_len
    }

    /// The chunks (inclusive) covering a non-empty plaintext range.
    pub fn chunks_for(&self, plain: &Range<u64>) -> (u64, u64) {
        let first = plain.start / CHUNK_SIZE as u64;
        let last = (plain.end.max(plain.start + 1) - 1) / CHUNK_SIZE as u64;
        (first, last.min(self.payload.chunks - 1))
    }

    /// Object offsets of chunks `first..=last`.
    pub fn chunk_span(&self, first: u64, last: u64) -> Range<u64> {
        let start = self.header_len + PayloadLayout::chunk_offset(first);
        let end =
            self.header_len + PayloadLayout::chunk_offset(last) + self.payload.chunk_len(last);
        start..end
    }
}

/// Decrypts chunks of one object in any order.
pub struct RangeDecryptor {
    opener: ChunkOpener,
    side: SideKeys,
    layout: ObjectLayout,
}

impl RangeDecryptor {
    /// `prefix` is the 56 bytes at [`ObjectLayout::prefix_span`]; the commitment is checked
    /// here, before any chunk is opened.
    pub fn new(
        dek: SecretKey,
        context: &Context,
        header: &Header,
        prefix: &[u8],
        layout: ObjectLayout,
    ) -> Result<(Self, Metadata)> {
        let ctx = context.encode();
        let side = SideKeys::derive(&dek, &ctx)?;
        let metadata = header.open_metadata(&side)?;
        let prefix: &[u8; PREFIX_LEN] = prefix
            .try_into()
            .map_err(|_| Error::Integrity("prefix length"))?;
        let opener = ChunkOpener::new(&dek, &ctx, prefix)?;
        Ok((
            RangeDecryptor {
                opener,
                side,
                layout,
            },
            metadata,
        ))
    }

    pub fn layout(&self) -> &ObjectLayout {
        &self.layout
    }

    /// Authenticates the trailer and checks its length against the layout: the object's
    /// length is then authentic without reading the final chunk.
    pub fn verify_trailer(&self, trailer: &[u8]) -> Result<()> {
        let (len, _crc) = self.side.open_trailer(trailer)?;
        if len != self.layout.plaintext_len() {
            return Err(Error::Integrity("trailer length mismatch"));
        }
        Ok(())
    }

    /// Opens chunks `first..` from `ciphertext` (exactly [`ObjectLayout::chunk_span`]),
    /// appending their plaintext to `out`.
    pub fn open_chunks(&self, first: u64, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let mut index = first;
        let mut rest = ciphertext;
        while !rest.is_empty() {
            let len = usize::try_from(self.layout.payload.chunk_len(index))
                .map_err(|_| Error::Integrity("chunk length"))?;
            if index >= self.layout.payload.chunks || rest.len() < len {
                return Err(Error::Integrity(
                    "range ciphertext does not match the layout",
                ));
            }
            let start = out.len();
            out.extend_from_slice(&rest[..len]);
            let is_final = index + 1 == self.layout.payload.chunks;
            let n = self
                .opener
                .open_in_place(index, &mut out[start..], is_final)?;
            out.truncate(start + n);
            rest = &rest[len..];
            index += 1;
        }
        Ok(())
    }
}

/// The result of a range read.
pub struct RangeOutput {
    pub data: Vec<u8>,
    /// The resolved plaintext range.
    pub range: Range<u64>,
    pub plaintext_len: u64,
    pub metadata: Metadata,
}

/// Decrypts `range` of the object in `reader`, reading only the header, the prefix, the
/// trailer and the chunks that cover the range (plus the final chunk for end-relative
/// ranges).
pub fn decrypt_range<R: Read + Seek>(
    reader: &mut R,
    context: &Context,
    unwrapper: &mut dyn DekUnwrapper,
    range: ByteRange,
) -> Result<RangeOutput> {
    let object_len = reader.seek(SeekFrom::End(0))?;
    reader.seek(SeekFrom::Start(0))?;
    let header = crate::stream::read_header(reader)?;
    let layout = ObjectLayout::new(header.len() as u64, object_len)?;
    let dek = unwrapper.unwrap_dek(header.wrapped_dek(), context)?;
    let prefix = read_span(reader, layout.prefix_span())?;
    let (dec, metadata) = RangeDecryptor::new(dek, context, &header, &prefix, layout)?;
    dec.verify_trailer(&read_span(reader, layout.trailer_span())?)?;
    let plain = range.resolve(layout.plaintext_len())?;
    let (first, mut last) = layout.chunks_for(&plain);
    if range.is_end_relative() {
        last = layout.payload.chunks - 1;
    }
    let ciphertext = read_span(reader, layout.chunk_span(first, last))?;
    let mut data = Vec::with_capacity(ciphertext.len());
    dec.open_chunks(first, &ciphertext, &mut data)?;
    let skip = (plain.start - first * CHUNK_SIZE as u64) as usize;
    let len = (plain.end - plain.start) as usize;
    data.drain(..skip);
    data.truncate(len);
    Ok(RangeOutput {
        data,
        range: plain,
        plaintext_len: layout.plaintext_len(),
        metadata,
    })
}

fn read_span<R: Read + Seek>(reader: &mut R, span: Range<u64>) -> Result<Vec<u8>> {
    let len = usize::try_from(span.end - span.start)
        .map_err(|_| Error::InvalidArgument("range too large for memory"))?;
    reader.seek(SeekFrom::Start(span.start))?;
    let mut buf = vec![0u8; len];
    reader.read_exact(&mut buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Integrity("object truncated")
        } else {
            Error::Io(e)
        }
    })?;
    Ok(buf)
}
