//! `coffer keygen`, `coffer encrypt`, `coffer decrypt`: local envelope encryption with a key
//! file. Streaming with bounded memory (a few MiB whatever the file size); decryption to a
//! file writes a temporary file beside the output and renames it only after the whole object
//! authenticated, so a failed decryption leaves no partial plaintext at OUTPUT.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;
use coffer_format::keyfile::KeyFile;
use coffer_format::stream::open_object;
use coffer_format::stream::IO_BATCH;

/// Plaintext bytes per pipeline batch: large enough that each batch spreads across cores and
/// syscalls are few, small enough that memory stays bounded (a few batches in flight).
const PIPELINE_BATCH: usize = 4 * IO_BATCH;
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
    /// verified; standard output receives each chunk as it verifies, and a failure at the end
    /// (truncation, wrong checksum) is reported by a non-zero exit status.
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

/// Where output goes: a temporary file renamed into place on success, or stdout.
enum Sink {
    File {
        tmp: tempfile::NamedTempFile,
        dest: PathBuf,
    },
    Stdout(io::StdoutLock<'static>),
}

impl Sink {
    fn open(output: &Option<PathBuf>, binary: bool) -> Result<Sink> {
        match output {
            Some(p) if p.as_os_str() != "-" => {
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
            Sink::Stdout(mut s) => Ok(s.flush()?),
        }
    }
}

pub fn encrypt(args: &CryptArgs) -> Result<()> {
    let key = load_key(&args.key_file)?;
    let context = parse_context(&args.context)?;
    let input = open_input(&args.input)?;
    let mut sink = Sink::open(&args.output, true)?;
    let dek = SecretKey::generate()?;
    let wrapped = WrappedKey::wrap(key.reference(), key.key(), dek.expose(), &context)?;
    let (encryptor, first) = ObjectEncryptor::new(&dek, &wrapped, &context, &Metadata::new())?;
    drop(dek);
    let out = sink.writer();
    out.write_all(&first)?;
    pipeline::run(input, out, Box::new(encryptor), PIPELINE_BATCH)
        .with_context(|| format!("encrypting {}", input_name(&args.input)))?;
    sink.commit()
}

impl pipeline::Transform for ObjectEncryptor {
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        Ok(ObjectEncryptor::update(self, input, out)?)
    }
    fn finish(self: Box<Self>, out: &mut Vec<u8>) -> Result<()> {
        ObjectEncryptor::finish(*self, out)?;
        Ok(())
    }
}

impl pipeline::Transform for ObjectDecryptor {
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        Ok(ObjectDecryptor::update(self, input, out)?)
    }
    fn finish(self: Box<Self>, out: &mut Vec<u8>) -> Result<()> {
        ObjectDecryptor::finish(*self, out)?;
        Ok(())
    }
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
    pipeline::run(
        input,
        sink.writer(),
        Box::new(decryptor),
        PIPELINE_BATCH + PIPELINE_BATCH / 64,
    )
    .map_err(|e| match e.downcast_ref::<coffer_format::Error>() {
        Some(fe) if fe.is_integrity() => integrity_error(&name, fe),
        _ => e.context(format!("decrypting {name}")),
    })?;
    // The pipeline ended without error only after the final chunk and trailer verified.
    sink.commit()
}

fn integrity_error(name: &str, e: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow!(
        "decryption failed: {name} is not an intact Coffer object for this key and context \
         (altered, truncated, or encrypted with other --context values); nothing was written \
         to the output file ({e})"
    )
}
