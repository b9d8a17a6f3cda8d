//! The client commands: `coffer cp`, `ls`, `rm`, `mb`, `cat` against any S3 endpoint, with
//! client-side encryption (`--client-encrypt`) and server-side encryption (`--sse`), alone
//! or combined. Client-encrypted objects are marked in their metadata and decrypted
//! transparently on download; other S3 clients receive ciphertext.

use std::io::IsTerminal;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, ValueEnum};
use coffer_client::{Kek, Keyring, Progress, ServerSide, Transfers};
use coffer_format::SecretKey;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zeroize::Zeroizing;

use crate::profile::{keyring, load_profile, parse_kek, ConnectionArgs, Profile};

/// Options shared by the commands that read or write objects.
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// Key-encryption key: a KMS key id, ARN or alias/NAME; file:PATH (a `coffer keygen`
    /// key file); or `passphrase` (COFFER_PASSPHRASE or --passphrase-file) [default: the
    /// profile's `kek`]. Downloads of KMS-wrapped objects need none: the object names its key.
    #[arg(long, value_name = "KEK")]
    pub kek: Option<String>,
    /// File holding the passphrase for --kek passphrase (first line).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Server-side encryption: aws:kms, AES256 or sse-c (on top of client-side encryption
    /// when both are asked for).
    #[arg(long, value_enum, value_name = "MODE")]
    pub sse: Option<SseMode>,
    /// KMS key for --sse aws:kms [default: the store's].
    #[arg(long, value_name = "KEY-ID", requires = "sse")]
    pub sse_kms_key_id: Option<String>,
    /// SSE-C key file: 32 raw bytes, 64 hex digits or base64 (implies --sse sse-c).
    #[arg(long, value_name = "FILE")]
    pub sse_c_key_file: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseMode {
    #[value(name = "aws:kms")]
    AwsKms,
    #[value(name = "AES256")]
    Aes256,
    #[value(name = "sse-c")]
    SseC,
}

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Source: a local path or s3://BUCKET/KEY (a prefix with -r).
    #[arg(value_name = "SRC")]
    src: String,
    /// Destination: a local path or s3://BUCKET/KEY (a key ending in / takes the file's name).
    #[arg(value_name = "DST")]
    dst: String,
    /// Copy a directory tree (upload) or every object under a prefix (download).
    #[arg(short, long)]
    recursive: bool,
    /// Encrypt on this machine before upload (the store never sees plaintext).
    #[arg(long)]
    client_encrypt: bool,
    #[command(flatten)]
    keys: KeyArgs,
    /// Part (and download range) size in MiB (≥ 5).
    #[arg(long, default_value_t = 8, value_name = "MIB")]
    part_size: usize,
    /// Parts in flight at once.
    #[arg(short = 'j', long, default_value_t = 4, value_name = "N")]
    concurrency: usize,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// s3://BUCKET[/PREFIX]; without it, the buckets.
    #[arg(value_name = "S3URI")]
    target: Option<String>,
    /// Every key under the prefix, not only the next level.
    #[arg(short, long)]
    recursive: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// s3://BUCKET/KEY (a prefix with -r).
    #[arg(value_name = "S3URI")]
    target: String,
    /// Delete every object under the prefix.
    #[arg(short, long)]
    recursive: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(Args, Debug)]
pub struct MbArgs {
    /// s3://BUCKET
    #[arg(value_name = "S3URI")]
    target: String,
    #[command(flatten)]
    connection: ConnectionArgs,
}

#[derive(Args, Debug)]
pub struct CatArgs {
    /// s3://BUCKET/KEY
    #[arg(value_name = "S3URI")]
    target: String,
    #[command(flatten)]
    keys: KeyArgs,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// An `s3://bucket/key` location.
#[derive(Debug, Clone, PartialEq, Eq)]
struct S3Location {
    bucket: String,
    key: String,
}

fn parse_s3(uri: &str) -> Option<Result<S3Location>> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Some(Err(anyhow!(
            "{uri:?}: no bucket (expected s3://BUCKET/KEY)"
        )));
    }
    Some(Ok(S3Location {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    }))
}

fn require_s3(uri: &str) -> Result<S3Location> {
    parse_s3(uri).unwrap_or_else(|| Err(anyhow!("{uri:?} is not an s3://BUCKET/KEY location")))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

struct Session {
    profile: Profile,
    endpoint: coffer_client::Endpoint,
    transfers: Transfers,
}

fn session(connection: &ConnectionArgs, part_mib: usize, concurrency: usize) -> Result<Session> {
    let profile = load_profile(&connection.profile)?;
    let endpoint = connection.endpoint(&profile)?;
    if part_mib < 5 {
        bail!("--part-size {part_mib}: S3 parts are at least 5 MiB");
    }
    let transfers = Transfers::new(endpoint.s3_client()?)
        .with_part_size(part_mib.saturating_mul(1 << 20))
        .with_concurrency(concurrency);
    Ok(Session {
        profile,
        endpoint,
        transfers,
    })
}

impl KeyArgs {
    fn server_side(&self) -> Result<ServerSide> {
        let mode = match (self.sse, &self.sse_c_key_file) {
            (None, Some(_)) => Some(SseMode::SseC),
            (Some(SseMode::SseC), None) => {
                bail!("--sse sse-c needs the key: --sse-c-key-file FILE")
            }
            (Some(m), Some(_)) if m != SseMode::SseC => {
                bail!("--sse-c-key-file goes with --sse sse-c only")
            }
            (m, _) => m,
        };
        if self.sse_kms_key_id.is_some() && mode != Some(SseMode::AwsKms) {
            bail!("--sse-kms-key-id goes with --sse aws:kms only");
        }
        Ok(match mode {
            None => ServerSide::Default,
            Some(SseMode::Aes256) => ServerSide::S3Managed,
            Some(SseMode::AwsKms) => ServerSide::Kms {
                key_id: self.sse_kms_key_id.clone(),
            },
            Some(SseMode::SseC) => {
                let path = self
                    .sse_c_key_file
                    .as_ref()
                    .ok_or_else(|| anyhow!("--sse sse-c needs --sse-c-key-file FILE"))?;
                ServerSide::CustomerKey(read_sse_c_key(path)?)
            }
        })
    }
}

/// An SSE-C key: 32 raw bytes, or 64 hex digits, or base64 of 32 bytes.
fn read_sse_c_key(path: &Path) -> Result<SecretKey> {
    use base64::Engine as _;
    let raw = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("cannot read SSE-C key {}", path.display()))?,
    );
    if raw.len() == 32 {
        return Ok(SecretKey::from_slice(&raw)?);
    }
    let text = std::str::from_utf8(&raw).unwrap_or("").trim();
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let bytes = Zeroizing::new(hex::decode(text)?);
        return Ok(SecretKey::from_slice(&bytes)?);
    }
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text) {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() == 32 {
            return Ok(SecretKey::from_slice(&bytes)?);
        }
    }
    bail!(
        "SSE-C key {}: expected 32 raw bytes, 64 hex digits or base64 of 32 bytes",
        path.display()
    )
}

/// A progress bar on stderr when it is a terminal (and not --quiet); nothing otherwise.
struct Bar(ProgressBar);

impl Bar {
    fn new(label: &str, quiet: bool) -> Bar {
        let bar = ProgressBar::with_draw_target(
            None,
            if quiet || !std::io::stderr().is_terminal() {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr()
            },
        );
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar(bar)
    }

    fn done(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.0.set_length(total);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

pub fn cp(args: CpArgs) -> Result<()> {
    let src = parse_s3(&args.src).transpose()?;
    let dst = parse_s3(&args.dst).transpose()?;
    match (&src, &dst) {
        (Some(_), Some(_)) => {
            bail!("copying between two S3 locations is not supported: download, then upload")
        }
        (None, None) => bail!(
            "neither {:?} nor {:?} is an s3:// location: use cp(1) for local copies",
            args.src,
            args.dst
        ),
        _ => {}
    }
    if (args.client_encrypt || args.keys.kek.is_some()) && src.is_some() && args.keys.kek.is_none()
    {
        bail!("--client-encrypt applies to uploads; downloads decrypt client-encrypted objects by themselves");
    }
    let sse = args.keys.server_side()?;
    let s = session(&args.connection, args.part_size, args.concurrency)?;
    let rt = runtime()?;
    match (src, dst) {
        (None, Some(to)) => {
            let kek = if args.client_encrypt {
                let spec = args
                    .keys
                    .kek
                    .as_deref()
                    .or(s.profile.kek.as_deref())
                    .ok_or_else(|| {
                        anyhow!("--client-encrypt needs a key-encryption key: --kek KEY-ID|alias/NAME|file:PATH|passphrase (or `kek` in the profile)")
                    })?;
                Some(parse_kek(
                    spec,
                    &s.endpoint,
                    args.keys.passphrase_file.as_ref(),
                )?)
            } else {
                if args.keys.kek.is_some() {
                    bail!("--kek without --client-encrypt: add --client-encrypt to encrypt on this machine");
                }
                None
            };
            rt.block_on(upload(
                &s,
                Path::new(&args.src),
                &to,
                args.recursive,
                kek.as_ref(),
                &sse,
                args.quiet,
            ))
        }
        (Some(from), None) => {
            let ring = keyring(
                args.keys.kek.as_deref(),
                &s.profile,
                &s.endpoint,
                args.keys.passphrase_file.as_ref(),
            )?;
            rt.block_on(download(
                &s,
                &from,
                Path::new(&args.dst),
                args.recursive,
                &ring,
                &sse,
                args.quiet,
            ))
        }
        _ => unreachable!("checked above"),
    }
}

fn join_key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else if prefix.ends_with('/') {
        format!("{prefix}{name}")
    } else {
        format!("{prefix}/{name}")
    }
}

/// Every regular file under `dir`, as (path, key suffix with `/` separators), sorted.
fn walk(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .map_err(|_| anyhow!("{} is outside {}", path.display(), dir.display()))?;
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| anyhow!("{}: file name is not UTF-8", path.display()))?;
                out.push((path, parts.join("/")));
            }
        }
    }
    out.sort();
    Ok(out)
}

async fn upload(
    s: &Session,
    src: &Path,
    to: &S3Location,
    recursive: bool,
    kek: Option<&Kek>,
    sse: &ServerSide,
    quiet: bool,
) -> Result<()> {
    let meta = std::fs::metadata(src).with_context(|| format!("cannot read {}", src.display()))?;
    let jobs = if meta.is_dir() {
        if !recursive {
            bail!("{} is a directory: add -r to copy it", src.display());
        }
        walk(src)?
            .into_iter()
            .map(|(path, rel)| (path, join_key(&to.key, &rel)))
            .collect()
    } else {
        let key = if to.key.is_empty() || to.key.ends_with('/') {
            let name = src
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| anyhow!("{}: no UTF-8 file name", src.display()))?;
            join_key(&to.key, name)
        } else {
            to.key.clone()
        };
        vec![(src.to_path_buf(), key)]
    };
    for (path, key) in jobs {
        let bar = Bar::new(&key, quiet);
        let result = s
            .transfers
            .upload_file(&path, &to.bucket, &key, kek, sse, &bar)
            .await;
        bar.done();
        result.map_err(anyhow::Error::new)?;
        if !quiet {
            eprintln!(
                "upload: {} -> s3://{}/{}{}",
                path.display(),
                to.bucket,
                key,
                if kek.is_some() {
                    " (client-encrypted)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// The relative path an object key maps to under a download directory, refusing keys that
/// would escape it (`..`, absolute paths).
fn safe_relative(rel: &str) -> Result<PathBuf> {
    let path = PathBuf::from(rel);
    if rel.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("refusing object key {rel:?}: it would be written outside the destination");
    }
    Ok(path)
}

async fn list_keys(s: &Session, bucket: &str, prefix: &str) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut pages = s
        .transfers
        .s3()
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| sdk_error("ListObjectsV2", &format!("s3://{bucket}/{prefix}"), &e))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    Ok(keys)
}

async fn download(
    s: &Session,
    from: &S3Location,
    dst: &Path,
    recursive: bool,
    ring: &Keyring,
    sse: &ServerSide,
    quiet: bool,
) -> Result<()> {
    let jobs: Vec<(String, PathBuf)> = if recursive {
        let prefix = if from.key.is_empty() || from.key.ends_with('/') {
            from.key.clone()
        } else {
            format!("{}/", from.key)
        };
        let keys = list_keys(s, &from.bucket, &prefix).await?;
        if keys.is_empty() {
            bail!("no objects under s3://{}/{}", from.bucket, prefix);
        }
        keys.into_iter()
            .map(|k| {
                let rel = safe_relative(&k[prefix.len()..])?;
                Ok((k, dst.join(rel)))
            })
            .collect::<Result<_>>()?
    } else {
        if from.key.is_empty() || from.key.ends_with('/') {
            bail!(
                "s3://{}/{} names no object: give a key, or -r for a prefix",
                from.bucket,
                from.key
            );
        }
        let dest = if dst.is_dir() || args_ends_with_slash(dst) {
            let name = from.key.rsplit('/').next().unwrap_or(&from.key);
            dst.join(safe_relative(name)?)
        } else {
            dst.to_path_buf()
        };
        vec![(from.key.clone(), dest)]
    };
    for (key, dest) in jobs {
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let bar = Bar::new(&key, quiet);
        let result = s
            .transfers
            .download_file(&from.bucket, &key, &dest, ring, sse, &bar)
            .await;
        bar.done();
        let summary = result.map_err(|e| download_error(e, &dest))?;
        if !quiet {
            eprintln!(
                "download: s3://{}/{} -> {}{}",
                from.bucket,
                key,
                dest.display(),
                match &summary.key {
                    Some(k) => format!(" (decrypted with {k})"),
                    None => String::new(),
                }
            );
        }
    }
    Ok(())
}

fn args_ends_with_slash(p: &Path) -> bool {
    p.as_os_str().to_str().is_some_and(|s| s.ends_with('/'))
}

fn download_error(e: coffer_client::Error, dest: &Path) -> anyhow::Error {
    let written = format!("nothing was written to {}", dest.display());
    if e.is_integrity() {
        anyhow!(
            "the object failed its integrity check ({e}); {written}\n\
             hint: it was altered, truncated, or copied from another bucket or key (client-side \
             encryption binds both)"
        )
    } else {
        anyhow!("{e}\n({written})")
    }
}

fn sdk_error<E>(
    op: &'static str,
    target: &str,
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> anyhow::Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    anyhow::Error::new(coffer_client::transfer::s3_error(op, target, e))
}

pub fn cat(args: CatArgs) -> Result<()> {
    let from = require_s3(&args.target)?;
    let sse = args.keys.server_side()?;
    let s = session(&args.connection, 8, 4)?;
    let ring = keyring(
        args.keys.kek.as_deref(),
        &s.profile,
        &s.endpoint,
        args.keys.passphrase_file.as_ref(),
    )?;
    let rt = runtime()?;
    rt.block_on(async {
        s.transfers
            .download_to_writer(
                &from.bucket,
                &from.key,
                std::io::stdout(),
                &ring,
                &sse,
                &coffer_client::NoProgress,
            )
            .await
    })
    .map_err(|e| {
        if e.is_integrity() {
            anyhow!("the object failed its integrity check ({e}); the output is incomplete")
        } else {
            anyhow::Error::new(e)
        }
    })?;
    Ok(())
}

pub fn ls(args: LsArgs) -> Result<()> {
    let s = session(&args.connection, 8, 4)?;
    let rt = runtime()?;
    rt.block_on(async {
        let Some(target) = &args.target else {
            let out = s
                .transfers
                .s3()
                .list_buckets()
                .send()
                .await
                .map_err(|e| sdk_error("ListBuckets", "", &e))?;
            for b in out.buckets() {
                println!("{}", b.name().unwrap_or_default());
            }
            return Ok(());
        };
        let loc = require_s3(target)?;
        let mut req = s
            .transfers
            .s3()
            .list_objects_v2()
            .bucket(&loc.bucket)
            .prefix(&loc.key);
        if !args.recursive {
            req = req.delimiter("/");
        }
        let mut pages = req.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error("ListObjectsV2", target, &e))?;
            for p in page.common_prefixes() {
                println!("{:>30} PRE {}", "", p.prefix().unwrap_or_default());
            }
            for o in page.contents() {
                let when = o
                    .last_modified()
                    .map(|t| t.fmt(aws_smithy_types_fmt()).unwrap_or_default())
                    .unwrap_or_default();
                println!(
                    "{:>20} {:>10} {}",
                    when,
                    o.size().unwrap_or(0),
                    o.key().unwrap_or_default()
                );
            }
        }
        Ok(())
    })
}

fn aws_smithy_types_fmt() -> aws_sdk_s3::primitives::DateTimeFormat {
    aws_sdk_s3::primitives::DateTimeFormat::DateTime
}

pub fn rm(args: RmArgs) -> Result<()> {
    let loc = require_s3(&args.target)?;
    let s = session(&args.connection, 8, 4)?;
    let rt = runtime()?;
    rt.block_on(async {
        let keys = if args.recursive {
            list_keys(&s, &loc.bucket, &loc.key).await?
        } else {
            if loc.key.is_empty() {
                bail!(
                    "{}: give a key, or -r to delete everything under a prefix",
                    args.target
                );
            }
            vec![loc.key.clone()]
        };
        for key in keys {
            s.transfers
                .s3()
                .delete_object()
                .bucket(&loc.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| {
                    sdk_error("DeleteObject", &format!("s3://{}/{key}", loc.bucket), &e)
                })?;
            println!("delete: s3://{}/{key}", loc.bucket);
        }
        Ok(())
    })
}

pub fn mb(args: MbArgs) -> Result<()> {
    let loc = require_s3(&args.target)?;
    if !loc.key.is_empty() {
        bail!("{}: a bucket name has no /KEY part", args.target);
    }
    let s = session(&args.connection, 8, 4)?;
    let rt = runtime()?;
    rt.block_on(async {
        s.transfers
            .s3()
            .create_bucket()
            .bucket(&loc.bucket)
            .send()
            .await
            .map_err(|e| sdk_error("CreateBucket", &args.target, &e))?;
        println!("make_bucket: {}", loc.bucket);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_locations_and_safe_paths() {
        let loc = parse_s3("s3://b/a/b.txt").and_then(Result::ok);
        assert_eq!(
            loc,
            Some(S3Location {
                bucket: "b".into(),
                key: "a/b.txt".into()
            })
        );
        assert!(parse_s3("/tmp/x").is_none());
        assert!(parse_s3("s3:///k").is_some_and(|r| r.is_err()));
        assert!(safe_relative("a/b/c").is_ok());
        assert!(safe_relative("../etc/passwd").is_err());
        assert!(safe_relative("/etc/passwd").is_err());
        assert!(safe_relative("a/../../x").is_err());
        assert!(safe_relative("").is_err());
        assert_eq!(join_key("", "f"), "f");
        assert_eq!(join_key("p", "f"), "p/f");
        assert_eq!(join_key("p/", "f"), "p/f");
    }
}
