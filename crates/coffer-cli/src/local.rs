//! `coffer keygen`, `coffer encrypt`, `coffer decrypt`: local envelope encryption with a key
//! file. Streaming with bounded memory (a few MiB whatever the file size); decryption to a
//! file writes a temporary file beside the output and renames it only after the whole object
//! authenticated, so a failed decryption leaves no partial plaintext at OUTPUT.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut, IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;
use coffer_format::chunked::{CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, PREFIX_LEN, TAG_LEN};
use coffer_format::header::TRAILER_LEN;
use coffer_format::keyfile::KeyFile;
use coffer_format::stream::open_object;
use coffer_format::{
    Context, KeyKind, Metadata, ObjectDecryptor, ObjectEncryptor, SecretKey, WrappedKey,
};

use crate::pipeline;

#[derive(Args)]
pub struct KeygenArgs {
    /// Where to write the new key file; it must not exist yet.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Args)]
pub struct CryptArgs {
    /// The key file made by `coffer keygen`.
    #[arg(short = 'k', long, value_name = "FILE")]
    key_file: PathBuf,
    /// Bind the ciphertext to NAME=VALUE (repeatable); decryption needs the same pairs.
    #[arg(short = 'c', long = "context", value_name = "NAME=VALUE")]
    context: Vec<String>,
    /// Output file (default: standard output). A file appears only once the whole input
    /// verified; standard output (or a device or FIFO named here, such as /dev/null) receives
    /// each chunk as it verifies, and a failure at the end (truncation, wrong checksum) is
    /// reported by a non-zero exit status.
    #[arg(short, long, value_name = "OUTPUT")]
    output: Option<PathBuf>,
    /// Input file (default or `-`: standard input).
    #[arg(value_name = "INPUT")]
    input: Option<PathBuf>,
}

pub fn keygen(args: &KeygenArgs) -> Result<()> {
    let key = KeyFile::generate()?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.output)
        .with_context(|| format!("cannot create key file {}", args.output.display()))?;
    file.write_all(key.encode().as_bytes())?;
    file.sync_all()?;
    eprintln!(
        "coffer: wrote key {} to {} (mode 0600). Back it up: data encrypted with it cannot be recovered without it.",
        hex_id(key.id()),
        args.output.display()
    );
    Ok(())
}

fn hex_id(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn load_key(path: &Path) -> Result<KeyFile> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?,
    );
    KeyFile::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn parse_context(pairs: &[String]) -> Result<Context> {
    let mut ctx = Context::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("--context {p:?}: expected NAME=VALUE"))?;
        if ctx.get(k).is_some() {
            bail!("--context: {k:?} given twice");
        }
        ctx.insert(k, v)
            .map_err(|e| anyhow!("--context {p:?}: {e}"))?;
    }
    Ok(ctx)
}

fn open_input(input: &Option<PathBuf>) -> Result<Box<dyn Read + Send>> {
    match input {
        None => Ok(Box::new(io::stdin())),
        Some(p) if p.as_os_str() == "-" => Ok(Box::new(io::stdin())),
        Some(p) => Ok(Box::new(
            File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        )),
    }
}

fn input_name(input: &Option<PathBuf>) -> String {
    match input {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "standard input".into(),
    }
}

/// Where output goes: a temporary file renamed into place on success, a device or FIFO
/// written in place, or stdout.
enum Sink {
    File {
        tmp: tempfile::NamedTempFile,
        dest: PathBuf,
    },
    /// An existing OUTPUT that is neither a regular file nor a directory (`/dev/null`, a FIFO):
    /// renaming a temporary file over it would replace the device node or FIFO itself.
    Special(File),
    Stdout(io::StdoutLock<'static>),
}

impl Sink {
    fn open(output: &Option<PathBuf>, binary: bool) -> Result<Sink> {
        match output {
            Some(p) if p.as_os_str() != "-" => {
                if std::fs::metadata(p).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
                    let file = OpenOptions::new()
                        .write(true)
                        .open(p)
                        .with_context(|| format!("cannot open {}", p.display()))?;
                    return Ok(Sink::Special(file));
                }
                let dir = match p.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let tmp = tempfile::Builder::new()
                    .prefix(".coffer-")
                    .suffix(".partial")
                    .tempfile_in(&dir)
                    .with_context(|| format!("cannot create a file in {}", dir.display()))?;
                Ok(Sink::File {
                    tmp,
                    dest: p.clone(),
                })
            }
            _ => {
                let out = io::stdout();
                if binary && out.is_terminal() {
                    bail!("refusing to write ciphertext to a terminal: use -o FILE or redirect");
                }
                Ok(Sink::Stdout(out.lock()))
            }
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::File { tmp, .. } => tmp.as_file_mut(),
            Sink::Special(f) => f,
            Sink::Stdout(s) => s,
        }
    }

    /// Makes the output visible: fsync and rename for a file.
    fn commit(self) -> Result<()> {
        match self {
            Sink::File { tmp, dest } => {
                tmp.as_file().sync_all()?;
                tmp.persist(&dest)
                    .map_err(|e| anyhow!("cannot write {}: {}", dest.display(), e.error))?;
                Ok(())
            }
            Sink::Special(mut f) => Ok(f.flush()?),
            Sink::Stdout(mut s) => Ok(s.flush()?),
        }
    }
}

/// Chunks per pipeline batch (2 MiB of plaintext): system calls and hand-offs between stages
/// stay few, and a batch stays small enough to be sealed while the read left it in cache
/// (on the 2-core development VM, 1–2 MiB batches took the least CPU time; 4 MiB ones more).
const BATCH_CHUNKS: usize = 128;
/// Batches in the pipeline's ring: one per stage, and one queued.
const BUFFERS: usize = 4;

/// Whether to seal/open each batch across cores. The reader and the writer spend most of
/// their time copying in the kernel, and one core seals faster than they move the data
/// (AES-GCM runs at several GB/s); with three cores or fewer, extra sealing threads only take
/// time from the writer, so they are used only when cores are left over.
fn parallel_crypto() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() > 3)
}

pub fn encrypt(args: &CryptArgs) -> Result<()> {
    let key = load_key(&args.key_file)?;
    let context = parse_context(&args.context)?;
    let mut input = open_input(&args.input)?;
    let mut sink = Sink::open(&args.output, true)?;
    let dek = SecretKey::generate()?;
    let wrapped = WrappedKey::wrap(key.reference(), key.key(), dek.expose(), &context)?;
    let (mut encryptor, first) = ObjectEncryptor::new(&dek, &wrapped, &context, &Metadata::new())?;
    drop(dek);
    encryptor.set_parallel(parallel_crypto());
    let out = sink.writer();
    out.write_all(&first)?;
    // Each batch is laid out as the object's chunks: the reader reads plaintext straight
    // into the first CHUNK_SIZE bytes of each slot, the compute stage seals the slots in
    // place, and the writer writes them as they are.
    let mut encryptor = Some(encryptor);
    pipeline::run(
        BUFFERS,
        BATCH_CHUNKS * ENCRYPTED_CHUNK_SIZE,
        |b| {
            let mut bufs: Vec<IoSliceMut> = b
                .buf
                .chunks_exact_mut(ENCRYPTED_CHUNK_SIZE)
                .map(|slot| IoSliceMut::new(&mut slot[..CHUNK_SIZE]))
                .collect();
            let capacity = bufs.len() * CHUNK_SIZE;
            b.len = pipeline::fill_vectored(&mut *input, &mut bufs)?;
            b.last = b.len < capacity;
            Ok(())
        },
        |b| {
            let enc = encryptor
                .as_mut()
                .ok_or_else(|| anyhow!("batch after the last one"))?;
            b.chunks = b.len / CHUNK_SIZE;
            let (slots, rest) = b.buf.split_at_mut(b.chunks * ENCRYPTED_CHUNK_SIZE);
            enc.seal_slots(slots)?;
            if b.last {
                enc.update(&rest[..b.len % CHUNK_SIZE], &mut b.tail)?;
                if let Some(enc) = encryptor.take() {
                    enc.finish(&mut b.tail)?;
                }
            }
            Ok(())
        },
        |b| {
            out.write_all(&b.buf[..b.chunks * ENCRYPTED_CHUNK_SIZE])?;
            out.write_all(&b.tail)
        },
    )
    .with_context(|| format!("encrypting {}", input_name(&args.input)))?;
    sink.commit()
}

pub fn decrypt(args: &CryptArgs) -> Result<()> {
    let key = load_key(&args.key_file)?;
    let context = parse_context(&args.context)?;
    let name = input_name(&args.input);
    let mut input = open_input(&args.input)?;
    let wrong_key: Cell<Option<String>> = Cell::new(None);
    let mut unwrap = |w: &WrappedKey, ctx: &Context| -> coffer_format::Result<SecretKey> {
        let r = w.reference();
        if r.kind != KeyKind::ClientKek || r.key_id != key.id() {
            wrong_key.set(Some(match r.kind {
                KeyKind::ClientKek => format!("key id {}", hex_id(&r.key_id)),
                other => format!("a {other:?} key, not a local key file"),
            }));
            return Err(coffer_format::Error::Integrity("key reference mismatch"));
        }
        w.unwrap(key.key(), ctx)?.into_key()
    };
    let decryptor = match open_object(&mut input, &context, &mut unwrap) {
        Ok((_header, d, _metadata)) => d,
        Err(coffer_format::Error::Io(e)) => return Err(e).context(format!("reading {name}")),
        Err(e) => {
            if let Some(other) = wrong_key.take() {
                bail!(
                    "{name} was encrypted with {other}; {} holds key id {}",
                    args.key_file.display(),
                    hex_id(key.id())
                );
            }
            return Err(integrity_error(&name, &e));
        }
    };
    let mut sink = Sink::open(&args.output, false)?;
    decrypt_payload(input, decryptor, sink.writer()).map_err(|e| {
        match e.downcast_ref::<coffer_format::Error>() {
            Some(fe) if fe.is_integrity() => integrity_error(&name, fe),
            _ => e.context(format!("decrypting {name}")),
        }
    })?;
    // The pipeline ended without error only after the final chunk and trailer verified.
    sink.commit()
}

/// Decrypts the payload (everything after the header) from `input` to `out`.
fn decrypt_payload(
    mut input: Box<dyn Read + Send>,
    mut decryptor: ObjectDecryptor,
    out: &mut dyn Write,
) -> Result<()> {
    decryptor.set_parallel(parallel_crypto());
    // The salt and commitment first, so that the batches start at a chunk boundary.
    let mut prefix = [0u8; PREFIX_LEN];
    let got = pipeline::fill(&mut *input, &mut prefix).context("reading input")?;
    let mut none = Vec::new();
    decryptor.update(&prefix[..got], &mut none)?;
    if got < PREFIX_LEN {
        decryptor.finish(&mut none)?; // fails: the object is truncated
        bail!("object truncated");
    }
    // Each batch is read as it lies in the object; the compute stage opens the chunks in
    // place and the writer writes the plaintext pieces out of their slots. The bytes after
    // the chunks a batch can open (those that may belong to the final chunk and trailer)
    // start the next batch: a batch holds whole chunks plus exactly that much.
    let mut decryptor = Some(decryptor);
    let mut carry = Vec::new();
    pipeline::run(
        BUFFERS,
        BATCH_CHUNKS * ENCRYPTED_CHUNK_SIZE + TAG_LEN + TRAILER_LEN,
        |b| {
            b.buf[..carry.len()].copy_from_slice(&carry);
            b.len = carry.len() + pipeline::fill(&mut *input, &mut b.buf[carry.len()..])?;
            b.last = b.len < b.buf.len();
            let opened = ObjectDecryptor::ready_chunks(b.len) * ENCRYPTED_CHUNK_SIZE;
            carry.clear();
            carry.extend_from_slice(&b.buf[opened..b.len]);
            Ok(())
        },
        |b| {
            let dec = decryptor
                .as_mut()
                .ok_or_else(|| anyhow!("batch after the last one"))?;
            b.chunks = dec.open_slots(&mut b.buf[..b.len])?;
            if b.last {
                dec.update(&b.buf[b.chunks * ENCRYPTED_CHUNK_SIZE..b.len], &mut b.tail)?;
                if let Some(dec) = decryptor.take() {
                    dec.finish(&mut b.tail)?;
                }
            }
            Ok(())
        },
        |b| {
            let mut bufs: Vec<IoSlice> = b
                .buf
                .chunks_exact(ENCRYPTED_CHUNK_SIZE)
                .take(b.chunks)
                .map(|slot| IoSlice::new(&slot[..CHUNK_SIZE]))
                .collect();
            pipeline::write_all_vectored(out, &mut bufs)?;
            out.write_all(&b.tail)
        },
    )
}

fn integrity_error(name: &str, e: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow!(
        "decryption failed: {name} is not an intact Coffer object for this key and context \
         (altered, truncated, or encrypted with other --context values); nothing was written \
         to the output file ({e})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_output_is_written_in_place_not_replaced() -> Result<()> {
        // Opening the sink is harmless even if this regresses: an uncommitted temporary file
        // is deleted on drop, so /dev/null is never replaced by the test itself.
        let sink = Sink::open(&Some(PathBuf::from("/dev/null")), false)?;
        assert!(matches!(sink, Sink::Special(_)));
        sink.commit()
    }
}
