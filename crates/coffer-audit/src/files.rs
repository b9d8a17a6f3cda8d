//! The directory layout (spec §5), the anchor (§6) and the scan of a log file shared by
//! `open`, `verify` and `query`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};

use crate::chain::ChainCheck;
pub use crate::chain::ChainEnd;
use crate::error::{io, Result};
use crate::record::{FORMAT_VERSION, MAX_LINE, ZERO_HASH};

/// The anchor file's name.
pub const ANCHOR_FILE: &str = "audit.head";
const ANCHOR_TEMP: &str = "audit.head.tmp";
/// Held with flock(2) by the one writer of a directory.
pub const LOCK_FILE: &str = "audit.lock";
/// Domain separation of the anchor MAC (spec §6). Frozen.
const ANCHOR_MAC_LABEL: &[u8] = b"coffer-audit/anchor/v1\n";
/// Largest anchor file a reader accepts.
const MAX_ANCHOR: u64 = 4096;

/// `audit-000001.jsonl` for 1 (more digits past 999999).
pub fn file_name(number: u32) -> String {
    format!("audit-{number:06}.jsonl")
}

/// The number of a log file name, if it is one in canonical form.
pub fn file_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = digits.parse().ok()?;
    (n > 0 && file_name(n) == name).then_some(n)
}

/// The log files in `dir`, sorted by number.
pub fn list(dir: &Path) -> Result<Vec<u32>> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(format!("list {}", dir.display())))? {
        let entry = entry.map_err(io(format!("list {}", dir.display())))?;
        if let Some(n) = entry.file_name().to_str().and_then(file_number) {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// The end of the chain as last made durable: `seq` 0 / zero hash / file 1 for an empty log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    pub v: u32,
    pub seq: u64,
    pub hash: String,
    pub file: String,
    pub mac: String,
}

#[derive(Serialize)]
struct AnchorBody<'a> {
    v: u32,
    seq: u64,
    hash: &'a str,
    file: &'a str,
}

fn anchor_mac_input(a: &Anchor) -> Result<Vec<u8>, String> {
    let mut input = ANCHOR_MAC_LABEL.to_vec();
    serde_json::to_writer(
        &mut input,
        &AnchorBody {
            v: a.v,
            seq: a.seq,
            hash: &a.hash,
            file: &a.file,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(input)
}

impl Anchor {
    pub fn new(seq: u64, hash: &str, file: u32, key: &hmac::Key) -> Result<Anchor, String> {
        let mut a = Anchor {
            v: FORMAT_VERSION,
            seq,
            hash: hash.to_owned(),
            file: file_name(file),
            mac: String::new(),
        };
        a.mac = hex::encode(hmac::sign(key, &anchor_mac_input(&a)?));
        Ok(a)
    }

    /// The anchor of an empty log.
    pub fn is_empty_log(&self) -> bool {
        self.seq == 0 && self.hash == ZERO_HASH && file_number(&self.file) == Some(1)
    }

    /// Parses and authenticates an anchor file's bytes (spec §6).
    pub fn parse(bytes: &[u8], key: &hmac::Key) -> Result<Anchor, String> {
        let line = bytes
            .strip_suffix(b"\n")
            .ok_or("anchor does not end with a newline")?;
        let a: Anchor = serde_json::from_slice(line).map_err(|e| format!("not an anchor: {e}"))?;
        if a.v != FORMAT_VERSION {
            return Err(format!("unknown anchor version {}", a.v));
        }
        if serde_json::to_vec(&a).ok().as_deref() != Some(line) {
            return Err("anchor not in canonical form".into());
        }
        if file_number(&a.file).is_none() {
            return Err(format!("anchor names {:?}, not a log file", a.file));
        }
        let tag = hex::decode(&a.mac).map_err(|_| "anchor mac is not hex".to_owned())?;
        hmac::verify(key, &anchor_mac_input(&a)?, &tag)
            .map_err(|_| "anchor MAC does not verify (forged, edited, or wrong key)".to_owned())?;
        Ok(a)
    }
}

/// What reading the anchor found.
pub enum AnchorState {
    Missing,
    Invalid(String),
    Valid(Anchor),
}

pub fn read_anchor(dir: &Path, key: &hmac::Key) -> Result<AnchorState> {
    let path = dir.join(ANCHOR_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AnchorState::Missing),
        Err(e) => return Err(io(format!("open {}", path.display()))(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_ANCHOR + 1)
        .read_to_end(&mut bytes)
        .map_err(io(format!("read {}", path.display())))?;
    if bytes.len() as u64 > MAX_ANCHOR {
        return Ok(AnchorState::Invalid("anchor file too large".into()));
    }
    Ok(match Anchor::parse(&bytes, key) {
        Ok(a) => AnchorState::Valid(a),
        Err(reason) => AnchorState::Invalid(reason),
    })
}

/// Replaces the anchor atomically: the new anchor goes into `audit.head.tmp` (rewritten in
/// place), is fdatasync'ed, and is then swapped with `audit.head` by one
/// `renameat2(RENAME_EXCHANGE)`, then the directory is fsync'ed (spec §6 says why an atomic
/// replacement and not an in-place write). Both files stay allocated, so updating the anchor
/// needs no free space: on a full disk the log keeps working in its preallocated room
/// (where `RENAME_EXCHANGE` is not supported, a plain rename is used).
pub fn write_anchor(dir: &Path, dir_handle: &File, anchor: &Anchor) -> Result<()> {
    let temp = dir.join(ANCHOR_TEMP);
    let head = dir.join(ANCHOR_FILE);
    let mut bytes = serde_json::to_vec(anchor)
        .map_err(|e| crate::AuditError::Failed(format!("serialize anchor: {e}")))?;
    bytes.push(b'\n');
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&temp)
        .map_err(io(format!("open {}", temp.display())))?;
    f.write_all(&bytes)
        .and_then(|()| f.set_len(bytes.len() as u64))
        .map_err(io(format!("write {}", temp.display())))?;
    f.sync_data()
        .map_err(io(format!("sync {}", temp.display())))?;
    drop(f);
    let exchanged = head.exists()
        && rustix::fs::renameat_with(
            rustix::fs::CWD,
            &temp,
            rustix::fs::CWD,
            &head,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .is_ok();
    if !exchanged {
        fs::rename(&temp, &head)
            .map_err(io(format!("rename {} to {ANCHOR_FILE}", temp.display())))?;
    }
    dir_handle
        .sync_all()
        .map_err(io(format!("sync directory {}", dir.display())))
}

/// The first bad record (or place) in the log (spec §9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRecord {
    /// File name (in the log directory) where the problem is.
    pub file: String,
    /// 1-based line number; 0 when the problem is not a line (a missing file, the anchor).
    pub line: u64,
    /// The record's seq if it could be read, or the seq that was expected.
    pub seq: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "file {} line {} seq ", self.file, self.line)?;
        match self.seq {
            Some(s) => write!(f, "{s}")?,
            None => f.write_str("-")?,
        }
        write!(f, ": {}", self.reason)
    }
}

/// The result of scanning one file.
pub struct FileScan {
    /// Complete, valid records.
    pub records: u64,
    /// After the last valid record.
    pub end: ChainEnd,
    /// Length of the complete lines (where a partial tail starts).
    pub complete_len: u64,
    /// Bytes after the last newline (an interrupted write, or a truncation).
    pub partial_tail: bool,
    /// Hash of the record whose seq is `want_seq`, if it is in this file.
    pub wanted_hash: Option<String>,
}

/// Reads and checks every line of log file `number` (spec §9, steps 1-6). `start` is the
/// chain end before the file; `None` trusts the first record's `seq` and `prev` (used by
/// `open`, which scans only the tail). The outer error is an I/O failure, the inner one the
/// first bad record.
pub fn scan_file(
    dir: &Path,
    number: u32,
    key: &hmac::Key,
    start: Option<&ChainEnd>,
    want_seq: u64,
) -> Result<Result<FileScan, BadRecord>> {
    let name = file_name(number);
    let path = dir.join(&name);
    let file = File::open(&path).map_err(io(format!("open {}", path.display())))?;
    let mut reader = BufReader::new(file);
    let mut scan = FileScan {
        records: 0,
        end: start.cloned().unwrap_or_else(ChainEnd::genesis),
        complete_len: 0,
        partial_tail: false,
        wanted_hash: None,
    };
    let mut chain = ChainCheck::new(key, start);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut buf)
            .map_err(io(format!("read {}", path.display())))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let bad = |seq: Option<u64>, reason: String| BadRecord {
            file: name.clone(),
            line: line_no,
            seq,
            reason,
        };
        let Some(line) = buf.strip_suffix(b"\n") else {
            if buf.len() > MAX_LINE {
                return Ok(Err(bad(None, format!("line longer than {MAX_LINE} bytes"))));
            }
            scan.partial_tail = true;
            break;
        };
        let record = match chain.next(line) {
            Ok(r) => r,
            Err((seq, reason)) => return Ok(Err(bad(seq, reason))),
        };
        if record.seq == want_seq {
            scan.wanted_hash = Some(record.hash);
        }
        scan.records += 1;
        scan.complete_len += buf.len() as u64;
    }
    scan.end = chain.end().clone();
    Ok(Ok(scan))
}
