//! A three-stage pipeline for streaming crypto: a reader thread, a compute thread (which
//! itself seals or opens chunks across cores), and the caller's thread writing output. The
//! stages overlap, so a file moves at close to the speed of the slowest stage, with memory
//! bounded by a few batches. Buffers are recycled rather than reallocated.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use anyhow::{anyhow, Result};

/// Batches in flight between two stages.
const DEPTH: usize = 2;

/// Something that turns input batches into output bytes (an encryptor or decryptor).
pub trait Transform: Send {
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()>;
    fn finish(self: Box<Self>, out: &mut Vec<u8>) -> Result<()>;
}

fn fill(input: &mut dyn Read, buf: &mut Vec<u8>, batch: usize) -> io::Result<usize> {
    buf.resize(batch, 0);
    let mut n = 0;
    while n < batch {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(n)
}

/// Runs `input` through `transform` into `output`. Returns the first error of any stage;
/// output written before an error is the caller's to discard.
pub fn run(
    mut input: Box<dyn Read + Send>,
    output: &mut dyn Write,
    transform: Box<dyn Transform>,
    batch: usize,
) -> Result<()> {
    let (in_tx, in_rx): (SyncSender<io::Result<Vec<u8>>>, Receiver<_>) = sync_channel(DEPTH);
    let (in_back_tx, in_back_rx) = sync_channel::<Vec<u8>>(DEPTH + 1);
    let (out_tx, out_rx): (SyncSender<Result<Vec<u8>>>, Receiver<_>) = sync_channel(DEPTH);
    let (out_back_tx, out_back_rx) = sync_channel::<Vec<u8>>(DEPTH + 1);
    std::thread::scope(|s| {
        s.spawn(move || loop {
            let mut buf = in_back_rx.try_recv().unwrap_or_default();
            match fill(&mut *input, &mut buf, batch) {
                Ok(0) => break,
                Ok(_) => {
                    if in_tx.send(Ok(buf)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = in_tx.send(Err(e));
                    break;
                }
            }
        });
        s.spawn(move || {
            let mut transform = transform;
            let step = |t: &mut Box<dyn Transform>, data: &[u8], out: &mut Vec<u8>| {
                out.clear();
                t.update(data, out)
            };
            for item in in_rx {
                let mut out = out_back_rx.try_recv().unwrap_or_default();
                let result = item
                    .map_err(|e| anyhow!(e).context("reading input"))
                    .and_then(|data| {
                        let r = step(&mut transform, &data, &mut out);
                        let _ = in_back_tx.try_send(data);
                        r
                    });
                match result {
                    Ok(()) => {
                        if out_tx.send(Ok(out)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = out_tx.send(Err(e));
                        return;
                    }
                }
            }
            let mut out = Vec::new();
            let _ = out_tx.send(transform.finish(&mut out).map(|()| out));
        });
        for item in out_rx {
            let data = item?;
            output.write_all(&data)?;
            let _ = out_back_tx.try_send(data);
        }
        Ok(())
    })
}
