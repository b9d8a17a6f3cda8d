//! std `Read`/`Write` front-ends: [`EncryptWriter`] and [`DecryptReader`].

use std::io::{self, Read, Write};

use crate::context::{Context, Metadata};
use crate::header::{header_len, Header, FIXED_LEN};
use crate::object::{DekUnwrapper, ObjectDecryptor, ObjectEncryptor, Summary};
use crate::secret::SecretKey;
use crate::wrapped_key::WrappedKey;
use crate::Result;

/// Plaintext/ciphertext batch size for the stream adapters: 64 chunks, so a batch is sealed
/// or opened across cores, while memory stays bounded (~2 MiB per adapter).
pub const IO_BATCH: usize = 64 * crate::chunked::CHUNK_SIZE;

/// Encrypts everything written to it into `inner`. Call [`EncryptWriter::finish`]: dropping
/// the writer without it leaves an object without its final chunk, which never decrypts.
pub struct EncryptWriter<W: Write> {
    inner: W,
    enc: ObjectEncryptor,
    out: Vec<u8>,
}

impl<W: Write> EncryptWriter<W> {
    pub fn new(
        mut inner: W,
        dek: &SecretKey,
        wrapped_dek: &WrappedKey,
        context: &Context,
        metadata: &Metadata,
    ) -> Result<Self> {
        let (enc, first) = ObjectEncryptor::new(dek, wrapped_dek, context, metadata)?;
        inner.write_all(&first)?;
        Ok(EncryptWriter {
            inner,
            enc,
            out: Vec::with_capacity(IO_BATCH + IO_BATCH / 64),
        })
    }

    pub fn set_parallel(&mut self, parallel: bool) {
        self.enc.set_parallel(parallel);
    }

    /// Writes the final chunk and trailer, flushes, and returns the inner writer.
    pub fn finish(mut self) -> Result<(W, Summary)> {
        self.out.clear();
        let summary = self.enc.finish(&mut self.out)?;
        self.inner.write_all(&self.out)?;
        self.inner.flush()?;
        Ok((self.inner, summary))
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = buf.len().min(IO_BATCH);
        self.out.clear();
        self.enc.update(&buf[..take], &mut self.out)?;
        self.inner.write_all(&self.out)?;
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts an object read from `inner`. Each `read` returns only authenticated plaintext;
/// the end of the object (final chunk, trailer, checksum) is verified before `read` returns
/// 0, so a reader that sees `Ok(0)` has seen the whole, authentic plaintext.
pub struct DecryptReader<R: Read> {
    inner: R,
    dec: Option<ObjectDecryptor>,
    metadata: Metadata,
    header: Header,
    scratch: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    summary: Option<Summary>,
    failed: bool,
}

/// Reads and parses the header at the start of `inner`.
pub fn read_header<R: Read>(inner: &mut R) -> Result<Header> {
    let mut fixed = [0u8; FIXED_LEN];
    inner.read_exact(&mut fixed).map_err(truncated)?;
    let len = header_len(&fixed)?;
    let mut bytes = vec![0u8; len];
    bytes[..FIXED_LEN].copy_from_slice(&fixed);
    inner
        .read_exact(&mut bytes[FIXED_LEN..])
        .map_err(truncated)?;
    Header::parse(&bytes)
}

fn truncated(e: io::Error) -> crate::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        crate::Error::Malformed("object truncated in its header")
    } else {
        crate::Error::Io(e)
    }
}

/// Reads the header at the start of `inner`, unwraps the DEK with `unwrapper` and opens the
/// metadata block: what every streaming decryption starts with. `inner` is left at the
/// payload.
pub fn open_object<R: Read>(
    inner: &mut R,
    context: &Context,
    unwrapper: &mut dyn DekUnwrapper,
) -> Result<(Header, ObjectDecryptor, Metadata)> {
    let header = read_header(inner)?;
    let dek = unwrapper.unwrap_dek(header.wrapped_dek(), context)?;
    let (dec, metadata) = ObjectDecryptor::new(dek, context, &header)?;
    Ok((header, dec, metadata))
}

impl<R: Read> DecryptReader<R> {
    /// Reads the header, unwraps the DEK with `unwrapper`, and opens the metadata block.
    pub fn new(mut inner: R, context: &Context, unwrapper: &mut dyn DekUnwrapper) -> Result<Self> {
        let (header, dec, metadata) = open_object(&mut inner, context, unwrapper)?;
        Ok(DecryptReader {
            inner,
            dec: Some(dec),
            metadata,
            header,
            scratch: vec![0u8; IO_BATCH + IO_BATCH / 64],
            out: Vec::with_capacity(IO_BATCH + IO_BATCH / 64),
            pos: 0,
            summary: None,
            failed: false,
        })
    }

    pub fn set_parallel(&mut self, parallel: bool) {
        if let Some(d) = self.dec.as_mut() {
            d.set_parallel(parallel);
        }
    }

    /// The decrypted object metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The object header (key reference, wrapped DEK).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Length and checksum, once the whole object was read and verified.
    pub fn summary(&self) -> Option<Summary> {
        self.summary
    }

    fn fill(&mut self) -> Result<()> {
        self.out.clear();
        self.pos = 0;
        while self.out.is_empty() {
            let Some(dec) = self.dec.as_mut() else {
                return Ok(());
            };
            let n = match self.inner.read(&mut self.scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                let dec = self.dec.take().ok_or(crate::Error::Integrity("finished"))?;
                self.summary = Some(dec.finish(&mut self.out)?);
                return Ok(());
            }
            dec.update(&self.scratch[..n], &mut self.out)?;
        }
        Ok(())
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "object failed integrity checks",
            ));
        }
        if self.pos == self.out.len() {
            if let Err(e) = self.fill() {
                // Poisoned: no byte after a failure is ever released.
                self.failed = true;
                self.dec = None;
                self.out.clear();
                self.pos = 0;
                return Err(e.into());
            }
        }
        let n = (self.out.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
