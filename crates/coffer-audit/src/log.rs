//! [`AuditLog`]: open or recover a log directory (spec §7) and append to it through one
//! writer thread that commits records in groups (spec §8).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use aws_lc_rs::hmac;
use coffer_format::SecretKey;
use tokio::sync::oneshot;

use crate::error::{io, AuditError, Result};
use crate::files::{self, Anchor, AnchorState, ChainEnd, LOCK_FILE};
use crate::record::{Event, Outcome, Phase, Record};
use crate::sink::AuditSink;
use crate::verify::VerifyReport;

/// Default size at which the writer starts a new file.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;

/// Most records committed with one write and one fdatasync.
const MAX_BATCH: usize = 1024;

/// How a log is opened.
#[derive(Clone, Debug, Default)]
pub struct AuditOptions {
    /// Start a new file when the current one would grow past this (0 = 64 MiB). A record is
    /// never split: a file holds at least one record, whatever its size.
    pub max_file_bytes: u64,
    /// Keep encryption-context values, not only the keys (off by default: values can be
    /// personal data).
    pub include_context_values: bool,
}

enum Reply {
    Async(oneshot::Sender<Result<u64>>),
    Blocking(mpsc::SyncSender<Result<u64>>),
}

impl Reply {
    fn send(self, result: Result<u64>) {
        // A caller that went away (a dropped future) no longer needs the answer; the record
        // is written (or not) all the same.
        match self {
            Reply::Async(tx) => drop(tx.send(result)),
            Reply::Blocking(tx) => drop(tx.send(result)),
        }
    }
}

struct Job {
    record: Record,
    reply: Reply,
}

/// A tamper-evident audit log, appended to durably before the caller proceeds: the file
/// implementation of [`AuditSink`], and the one the server uses.
///
/// `append` returns the record's seq only after the record is written and fdatasync'ed and
/// the anchor updated. Any write or sync failure fails that call and every later one until
/// the log is reopened (fail-closed, spec §8): the caller must then refuse the operation.
/// The log is `Send + Sync`; share it in an `Arc`. Dropping it waits for the writer thread
/// to finish the records already submitted.
pub struct AuditLog {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    include_context_values: bool,
    dir: PathBuf,
    /// For [`AuditSink::verify`]; the writer thread has its own copy.
    mac_key: hmac::Key,
    /// The writer's failure, once it has failed (for [`AuditSink::ready`]).
    failed: Arc<OnceLock<String>>,
}

/// [`AuditSink::ready`] is `Err` when the log's filesystem has less free space than this:
/// the log may still have preallocated room, but it is about to fail closed.
pub const READY_MIN_FREE_BYTES: u64 = 64 * 1024;

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            // A panicked writer has already failed its callers; nothing more to report.
            drop(t.join());
        }
    }
}

impl AuditLog {
    /// Opens the log in `dir` (created, mode 0700, if absent) with the audit MAC key
    /// (`Kms::derive_subsystem_key("audit/mac/v1")`). An existing log's tail is checked
    /// against the anchor first; a log that is not intact there is refused with
    /// [`AuditError::Corrupt`] (spec §7). Only one `AuditLog` may have a directory open.
    pub fn open(dir: &Path, key: SecretKey, opts: AuditOptions) -> Result<AuditLog> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(format!("create {}", dir.display())))?;
        let mac_key = crate::mac_key(&key);
        drop(key);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(LOCK_FILE))
            .map_err(io(format!("open {}", dir.join(LOCK_FILE).display())))?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(AuditError::Locked(dir.into())),
            Err(e) => return Err(io(format!("lock {}", dir.display()))(e.into())),
        }
        let dir_handle = File::open(dir).map_err(io(format!("open {}", dir.display())))?;
        let corrupt = |reason: String| AuditError::Corrupt {
            dir: dir.into(),
            reason,
        };
        let numbers = files::list(dir)?;
        let anchor = files::read_anchor(dir, &mac_key)?;
        let tail = match (numbers.is_empty(), anchor) {
            (true, AnchorState::Missing) => {
                create_log_file(dir, &dir_handle, 1)?;
                let genesis = ChainEnd::genesis();
                let anchor =
                    Anchor::new(0, &genesis.hash, 1, &mac_key).map_err(AuditError::Failed)?;
                files::write_anchor(dir, &dir_handle, &anchor)?;
                Tail {
                    file_no: 1,
                    file_len: 0,
                    end: genesis,
                    end_file: 1,
                    anchor_behind: false,
                    removed_tail: None,
                }
            }
            (true, _) => {
                return Err(corrupt(
                    "the anchor exists but there are no log files".into(),
                ))
            }
            (false, AnchorState::Missing) => {
                return Err(corrupt(format!(
                    "log files exist but the anchor {} is missing",
                    files::ANCHOR_FILE
                )))
            }
            (false, AnchorState::Invalid(reason)) => {
                return Err(corrupt(format!("anchor invalid: {reason}")))
            }
            (false, AnchorState::Valid(anchor)) => recover_tail(dir, &numbers, &anchor, &mac_key)
                .map_err(|e| match e {
                Recovery::Io(e) => e,
                Recovery::Corrupt(reason) => corrupt(reason),
            })?,
        };
        let path = dir.join(files::file_name(tail.file_no));
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(format!("open {}", path.display())))?;
        preallocate(&file, tail.file_len);
        let writer = Writer {
            dir: dir.into(),
            dir_handle,
            key: mac_key.clone(),
            max_file_bytes: if opts.max_file_bytes == 0 {
                DEFAULT_MAX_FILE_BYTES
            } else {
                opts.max_file_bytes
            },
            file,
            file_no: tail.file_no,
            file_len: tail.file_len,
            end: tail.end,
            end_file: tail.end_file,
            failed: None,
            failed_shared: Arc::default(),
            _lock: lock,
        };
        let failed = Arc::clone(&writer.failed_shared);
        if tail.anchor_behind {
            // Records past the anchor carry valid MACs: they are authentic, only their
            // anchor update was lost. Adopt them.
            writer.write_anchor()?;
        }
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("coffer-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(io("start the audit writer thread"))?;
        let log = AuditLog {
            tx: Some(tx),
            thread: Some(thread),
            include_context_values: opts.include_context_values,
            dir: dir.into(),
            mac_key,
            failed,
        };
        if let Some((file, offset, removed)) = tail.removed_tail {
            // The repair is itself on the record.
            log.append_blocking(Event {
                request_id: "audit-open".into(),
                phase: Phase::Response,
                action: "audit:RemoveIncompleteRecord".into(),
                resource: Some(format!("{file}@{offset}+{removed}")),
                outcome: Outcome::Success,
                ..Event::default()
            })?;
        }
        Ok(log)
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn submit(&self, ev: Event, reply: Reply) -> Result<()> {
        let record = Record::from_event(ev, self.include_context_values)?;
        self.tx
            .as_ref()
            .ok_or(AuditError::Closed)?
            .send(Job { record, reply })
            .map_err(|_| AuditError::Closed)
    }

    /// Appends `ev` and returns its seq once it is durable. Dropping the future does not
    /// withdraw the record.
    pub async fn append(&self, ev: Event) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.submit(ev, Reply::Async(tx))?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// [`AuditLog::append`] for threads outside an async runtime (blocks the thread).
    pub fn append_blocking(&self, ev: Event) -> Result<u64> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(ev, Reply::Blocking(tx))?;
        rx.recv().map_err(|_| AuditError::Closed)?
    }
}

/// Room kept allocated past the end of the current log file (`fallocate` with
/// `KEEP_SIZE`): records go into space nothing else can take, so on a full disk the trail
/// (and with it reads and deletes, which must be recorded) keeps working for about
/// [`PREALLOCATE`] / 600 bytes ≈ 7 000 records; the server refuses uploads on a full disk
/// meanwhile. Best effort: a filesystem without `fallocate` just has no reserve.
pub const PREALLOCATE: u64 = 4 << 20;

/// Keeps at least half of [`PREALLOCATE`] allocated past `len` (one `fallocate` per
/// 2 MiB of records).
pub(crate) fn preallocate(file: &File, len: u64) {
    use std::os::unix::fs::MetadataExt;
    let allocated = file.metadata().map(|m| m.blocks() * 512).unwrap_or(0);
    if allocated < len + PREALLOCATE / 2 {
        let _ = rustix::fs::fallocate(
            file,
            rustix::fs::FallocateFlags::KEEP_SIZE,
            len,
            PREALLOCATE,
        );
    }
}

/// Frees the room preallocated past `len`.
fn release_preallocation(file: &File, len: u64) {
    let _ = rustix::fs::fallocate(
        file,
        rustix::fs::FallocateFlags::KEEP_SIZE | rustix::fs::FallocateFlags::PUNCH_HOLE,
        len,
        PREALLOCATE * 2,
    );
}

fn create_log_file(dir: &Path, dir_handle: &File, number: u32) -> Result<File> {
    let path = dir.join(files::file_name(number));
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io(format!("create {}", path.display())))?;
    dir_handle
        .sync_all()
        .map_err(io(format!("sync directory {}", dir.display())))?;
    preallocate(&file, 0);
    Ok(file)
}

/// Where appending resumes.
struct Tail {
    file_no: u32,
    file_len: u64,
    end: ChainEnd,
    end_file: u32,
    anchor_behind: bool,
    /// (file, offset, bytes) of an incomplete last line that was cut off.
    removed_tail: Option<(String, u64, u64)>,
}

enum Recovery {
    Io(AuditError),
    Corrupt(String),
}

impl From<AuditError> for Recovery {
    fn from(e: AuditError) -> Self {
        Recovery::Io(e)
    }
}

/// Scans from the anchor's file to the last file (spec §7): the chain there must be valid
/// and contain the anchored record. An incomplete last line is cut off.
fn recover_tail(
    dir: &Path,
    numbers: &[u32],
    anchor: &Anchor,
    key: &hmac::Key,
) -> Result<Tail, Recovery> {
    let anchor_no = files::file_number(&anchor.file)
        .ok_or_else(|| Recovery::Corrupt("anchor names no log file".into()))?;
    let first = numbers
        .iter()
        .position(|&n| n == anchor_no)
        .ok_or_else(|| {
            Recovery::Corrupt(format!(
                "{}, the file the anchor names, is missing",
                anchor.file
            ))
        })?;
    let tail = &numbers[first..];
    if let Some(w) = tail.windows(2).find(|w| w[1] != w[0] + 1) {
        return Err(Recovery::Corrupt(format!(
            "{} is missing",
            files::file_name(w[0] + 1)
        )));
    }
    let mut chain = (anchor_no == 1).then(ChainEnd::genesis);
    let mut found = anchor.seq == 0 && anchor.is_empty_log();
    let mut end_file = anchor_no;
    let mut last = (anchor_no, 0u64, false);
    for (i, &n) in tail.iter().enumerate() {
        let is_last = i + 1 == tail.len();
        let scan = files::scan_file(dir, n, key, chain.as_ref(), anchor.seq)?
            .map_err(|bad| Recovery::Corrupt(bad.to_string()))?;
        if n == anchor_no && scan.wanted_hash.as_deref() == Some(anchor.hash.as_str()) {
            found = true;
        }
        if !is_last && (scan.partial_tail || scan.records == 0) {
            return Err(Recovery::Corrupt(format!(
                "{} is incomplete or empty but is not the last file",
                files::file_name(n)
            )));
        }
        if scan.records > 0 {
            end_file = n;
            chain = Some(scan.end);
        }
        last = (n, scan.complete_len, scan.partial_tail);
    }
    if !found {
        return Err(Recovery::Corrupt(format!(
            "the log does not hold the anchored record seq {} in {} (truncated or rewritten)",
            anchor.seq, anchor.file
        )));
    }
    let end = chain.unwrap_or_else(ChainEnd::genesis);
    let (file_no, complete_len, partial) = last;
    let mut removed_tail = None;
    if partial {
        let name = files::file_name(file_no);
        let path = dir.join(&name);
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io(format!("open {}", path.display())))?;
        let len = f
            .metadata()
            .map_err(io(format!("stat {}", path.display())))?
            .len();
        f.set_len(complete_len)
            .and_then(|()| f.sync_data())
            .map_err(io(format!("truncate {}", path.display())))?;
        removed_tail = Some((name, complete_len, len - complete_len));
    }
    Ok(Tail {
        file_no,
        file_len: complete_len,
        anchor_behind: end.seq > anchor.seq,
        end,
        end_file,
        removed_tail,
    })
}

/// The writer thread's state. Only this thread touches the files.
struct Writer {
    dir: PathBuf,
    dir_handle: File,
    key: hmac::Key,
    max_file_bytes: u64,
    /// The current file, opened for append.
    file: File,
    file_no: u32,
    /// Committed length of the current file.
    file_len: u64,
    /// The last durable record, and the file holding it.
    end: ChainEnd,
    end_file: u32,
    /// Set by the first failed batch; every later batch fails with it.
    failed: Option<String>,
    /// The same, for [`AuditLog`]'s readiness check.
    failed_shared: Arc<OnceLock<String>>,
    /// Holds the directory's flock for the writer's life.
    _lock: File,
}

/// A file touched by a batch and its length before the batch, to cut the batch off again.
struct Undo {
    file: File,
    len: u64,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            match self.commit(&mut jobs) {
                Ok(first_seq) => {
                    for (seq, job) in (first_seq..).zip(jobs) {
                        job.reply.send(Ok(seq));
                    }
                }
                Err(message) => {
                    for job in jobs {
                        job.reply.send(Err(AuditError::Failed(message.clone())));
                    }
                }
            }
        }
    }

    fn commit(&mut self, jobs: &mut [Job]) -> Result<u64, String> {
        if let Some(message) = &self.failed {
            return Err(message.clone());
        }
        let mut undo = Vec::new();
        let result = self.try_commit(jobs, &mut undo).map_err(|e| e.to_string());
        if let Err(message) = &result {
            // Cut the batch off every file it reached, so no record that was not
            // acknowledged stays in the log (best effort: the disk is failing).
            for u in undo {
                drop(u.file.set_len(u.len).and_then(|()| u.file.sync_data()));
            }
            self.failed = Some(message.clone());
            let _ = self.failed_shared.set(message.clone());
        }
        result
    }

    fn try_commit(&mut self, jobs: &mut [Job], undo: &mut Vec<Undo>) -> Result<u64> {
        let first_seq = self.end.seq + 1;
        let mut end = self.end.clone();
        let mut end_file = self.end_file;
        undo.push(Undo {
            file: self.file.try_clone().map_err(io("dup the audit file"))?,
            len: self.file_len,
        });
        let mut buf = Vec::with_capacity(jobs.len() * 512);
        for job in jobs.iter_mut() {
            let r = &mut job.record;
            r.seq = end.seq + 1;
            r.prev = end.hash.clone();
            r.seal(&self.key)?;
            let mut line = r.line_bytes()?;
            line.push(b'\n');
            let pending = self.file_len + buf.len() as u64;
            if pending > 0 && pending + line.len() as u64 > self.max_file_bytes {
                self.flush(&buf)?;
                buf.clear();
                self.rotate(undo)?;
            }
            buf.extend_from_slice(&line);
            end = ChainEnd {
                seq: r.seq,
                hash: r.hash.clone(),
            };
            end_file = self.file_no;
        }
        self.flush(&buf)?;
        self.end = end;
        self.end_file = end_file;
        self.write_anchor()?;
        Ok(first_seq)
    }

    /// One write and one fdatasync for the whole buffer.
    fn flush(&mut self, buf: &[u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let name = files::file_name(self.file_no);
        self.file
            .write_all(buf)
            .map_err(io(format!("write {name}")))?;
        self.file.sync_data().map_err(io(format!("sync {name}")))?;
        self.file_len += buf.len() as u64;
        preallocate(&self.file, self.file_len);
        Ok(())
    }

    fn rotate(&mut self, undo: &mut Vec<Undo>) -> Result<()> {
        let next = self.file_no + 1;
        let file = create_log_file(&self.dir, &self.dir_handle, next)?;
        // The finished file gives back its preallocated room.
        release_preallocation(&self.file, self.file_len);
        undo.push(Undo {
            file: file.try_clone().map_err(io("dup the audit file"))?,
            len: 0,
        });
        self.file = file;
        self.file_no = next;
        self.file_len = 0;
        Ok(())
    }

    fn write_anchor(&self) -> Result<()> {
        let anchor = Anchor::new(self.end.seq, &self.end.hash, self.end_file, &self.key)
            .map_err(AuditError::Failed)?;
        files::write_anchor(&self.dir, &self.dir_handle, &anchor)
    }
}

/// The contract's rules map onto spec §7-8: durability is write + fdatasync + anchor update
/// per batch, all-or-nothing is the undo of a failed batch, fail-closed is the writer's
/// `failed` state, and a reopen is [`AuditLog::open`]'s tail recovery.
#[async_trait]
impl AuditSink for AuditLog {
    async fn append(&self, event: Event) -> Result<u64> {
        AuditLog::append(self, event).await
    }

    /// [`verify`](crate::verify()) of the log's directory with the log's key.
    fn verify(&self) -> Result<VerifyReport> {
        crate::verify::verify_with(&self.dir, &self.mac_key)
    }

    /// `Err` once the writer has failed (until the log is reopened), or while the log's
    /// filesystem has less than [`READY_MIN_FREE_BYTES`] free.
    fn ready(&self) -> std::result::Result<(), String> {
        if let Some(message) = self.failed.get() {
            return Err(format!(
                "the audit log failed (fail-closed until restart): {message}"
            ));
        }
        let fs = rustix::fs::statvfs(&self.dir)
            .map_err(|e| format!("statvfs {}: {e}", self.dir.display()))?;
        let free = fs.f_bavail.saturating_mul(fs.f_frsize);
        if free < READY_MIN_FREE_BYTES {
            return Err(format!(
                "the audit filesystem ({}) is full: {free} bytes free",
                self.dir.display()
            ));
        }
        Ok(())
    }
}

// The server shares the log in an `Arc` across tasks.
const _: fn() = || {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<AuditLog>();
};
