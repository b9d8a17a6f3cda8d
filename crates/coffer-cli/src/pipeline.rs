//! A three-stage pipeline for streaming crypto that works in place: a reader thread fills a
//! batch buffer, a compute thread seals or opens the batch where it lies, and the caller's
//! thread writes it out. The stages overlap, so a file moves at close to the speed of the
//! slowest stage. A fixed ring of buffers circulates (reader → compute → writer → reader):
//! memory stays bounded, and after start-up no buffer is allocated, grown or zero-filled.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::sync::mpsc::sync_channel;

use anyhow::{anyhow, Result};

/// One batch and what the stages record about it.
pub struct Batch {
    /// The batch's bytes; its length never changes. The stages agree on the layout.
    pub buf: Vec<u8>,
    /// Bytes of `buf` the reader filled.
    pub len: usize,
    /// Set by the reader: the input ended with this batch.
    pub last: bool,
    /// Set by the compute stage: how many chunk slots at the start of `buf` to write.
    pub chunks: usize,
    /// Set by the compute stage: bytes to write after the slots.
    pub tail: Vec<u8>,
}

/// Runs batches of `batch_len` bytes, `buffers` of them at most, through `read` (on its own
/// thread, until it marks a batch `last`), `compute` (on its own thread) and `write` (on the
/// calling thread). Returns the first error of any stage; output written before an error is
/// the caller's to discard.
pub fn run<R, C, W>(
    buffers: usize,
    batch_len: usize,
    mut read: R,
    mut compute: C,
    mut write: W,
) -> Result<()>
where
    R: FnMut(&mut Batch) -> io::Result<()> + Send,
    C: FnMut(&mut Batch) -> Result<()> + Send,
    W: FnMut(&Batch) -> io::Result<()>,
{
    let (read_tx, read_rx) = sync_channel::<io::Result<Batch>>(buffers);
    let (done_tx, done_rx) = sync_channel::<Result<Batch>>(buffers);
    // Never full: at most `buffers` batches exist.
    let (free_tx, free_rx) = sync_channel::<Batch>(buffers);
    std::thread::scope(move |s| {
        s.spawn(move || {
            let mut made = 0;
            loop {
                let mut batch = match free_rx.try_recv() {
                    Ok(b) => b,
                    Err(_) if made < buffers => {
                        made += 1;
                        Batch {
                            buf: vec![0; batch_len],
                            len: 0,
                            last: false,
                            chunks: 0,
                            tail: Vec::new(),
                        }
                    }
                    Err(_) => match free_rx.recv() {
                        Ok(b) => b,
                        Err(_) => return, // the writer stopped
                    },
                };
                batch.len = 0;
                batch.last = false;
                batch.chunks = 0;
                batch.tail.clear();
                let result = read(&mut batch);
                let stop = result.is_err() || batch.last;
                if read_tx.send(result.map(|()| batch)).is_err() || stop {
                    return;
                }
            }
        });
        s.spawn(move || {
            for item in read_rx {
                let result = item
                    .map_err(|e| anyhow!(e).context("reading input"))
                    .and_then(|mut batch| compute(&mut batch).map(|()| batch));
                let stop = result.is_err();
                if done_tx.send(result).is_err() || stop {
                    return;
                }
            }
        });
        for item in done_rx {
            let batch = item?;
            write(&batch)?;
            if batch.last {
                return Ok(());
            }
            let _ = free_tx.send(batch);
        }
        Err(anyhow!("the pipeline stopped before the end of the input"))
    })
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub fn fill(input: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads into `bufs` (several, with one system call where the reader supports it) until
/// they are all full or the input ends; returns the bytes read.
pub fn fill_vectored(input: &mut dyn Read, mut bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    let mut left: usize = bufs.iter().map(|b| b.len()).sum();
    let mut n = 0;
    while left > 0 {
        match input.read_vectored(bufs) {
            Ok(0) => break,
            Ok(k) if k > left => {
                return Err(io::Error::other(
                    "read_vectored reported more than it was given",
                ))
            }
            Ok(k) => {
                n += k;
                left -= k;
                IoSliceMut::advance_slices(&mut bufs, k);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Writes all of `bufs` (with one system call where the writer supports it).
pub fn write_all_vectored(out: &mut dyn Write, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut left: usize = bufs.iter().map(|b| b.len()).sum();
    while left > 0 {
        match out.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) if k > left => {
                return Err(io::Error::other(
                    "write_vectored reported more than it was given",
                ))
            }
            Ok(k) => {
                left -= k;
                IoSlice::advance_slices(&mut bufs, k);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
