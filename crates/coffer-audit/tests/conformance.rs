//! Every sink passes the conformance suite: the file log (one file, and one file per record
//! so every append rotates) and the in-memory reference model. Then broken sinks, each
//! breaking one rule, fail it: the suite's checks can fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use coffer_audit::conformance::{self, Harness};
use coffer_audit::{
    files, AuditError, AuditLog, AuditOptions, AuditSink, Event, MemorySink, SecretKey,
    VerifyReport,
};

fn key() -> SecretKey {
    SecretKey::from_slice(&[0x5a; 32]).unwrap()
}

// ---- the file log ----

const ANCHOR_FAULT: &str = "the anchor update fails (audit.head.tmp is a directory)";
const ROTATION_FAULT: &str = "the next log file cannot be created (a directory has its name)";

struct FileHarness {
    root: tempfile::TempDir,
    max_file_bytes: u64,
    count: usize,
    /// A directory put in the log's way by `inject`.
    obstacle: Option<PathBuf>,
}

impl FileHarness {
    fn new(max_file_bytes: u64) -> FileHarness {
        FileHarness {
            root: tempfile::tempdir().unwrap(),
            max_file_bytes,
            count: 0,
            obstacle: None,
        }
    }

    fn dir(&self) -> PathBuf {
        self.root.path().join(format!("log-{}", self.count))
    }

    fn open(&self) -> Arc<dyn AuditSink> {
        let opts = AuditOptions {
            max_file_bytes: self.max_file_bytes,
            ..AuditOptions::default()
        };
        Arc::new(AuditLog::open(&self.dir(), key(), opts).unwrap())
    }

    /// The log files (not an obstacle `inject` put there).
    fn numbers(&self) -> Vec<u32> {
        let dir = self.dir();
        let mut numbers = files::list(&dir).unwrap();
        numbers.retain(|&n| dir.join(files::file_name(n)).is_file());
        numbers
    }

    /// Each log file's lines, a torn last line included.
    fn files(&self) -> Vec<Vec<Vec<u8>>> {
        let dir = self.dir();
        self.numbers()
            .into_iter()
            .map(|n| {
                let bytes = std::fs::read(dir.join(files::file_name(n))).unwrap();
                let mut lines: Vec<Vec<u8>> =
                    bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                // The piece after the last newline: empty, or a torn record.
                if lines.last().is_some_and(Vec::is_empty) {
                    lines.pop();
                }
                lines
            })
            .collect()
    }
}

impl Harness for FileHarness {
    fn fresh(&mut self) -> Arc<dyn AuditSink> {
        self.count += 1;
        self.open()
    }

    fn reopen(&mut self) -> Option<Arc<dyn AuditSink>> {
        Some(self.open())
    }

    fn stored(&mut self) -> Vec<Vec<u8>> {
        self.files().concat()
    }

    /// Writes `lines` back into the same files, as many per file as before; the last file
    /// takes the rest, files past the lines are left empty.
    fn rewrite(&mut self, lines: Vec<Vec<u8>>) {
        let dir = self.dir();
        let counts: Vec<usize> = self.files().iter().map(Vec::len).collect();
        let mut rest = lines.into_iter();
        for (i, (count, n)) in counts.iter().zip(self.numbers()).enumerate() {
            let take = if i + 1 == counts.len() {
                usize::MAX
            } else {
                *count
            };
            let mut text = Vec::new();
            for line in rest.by_ref().take(take) {
                text.extend_from_slice(&line);
                text.push(b'\n');
            }
            std::fs::write(dir.join(files::file_name(n)), text).unwrap();
        }
    }

    fn faults(&self) -> Vec<&'static str> {
        let mut faults = vec![ANCHOR_FAULT];
        if self.max_file_bytes == 1 {
            // Every record opens a new file, so the next append needs one.
            faults.push(ROTATION_FAULT);
        }
        faults
    }

    /// Real errors from the kernel (EISDIR, EEXIST) that permissions could not produce for
    /// root; a full disk (ENOSPC) is tests/reliability/diskfull.py's, a write refused
    /// part-way (EFBIG) tests/log.rs's.
    fn inject(&mut self, fault: &str) {
        let dir = self.dir();
        let obstacle = match fault {
            ANCHOR_FAULT => {
                let temp = dir.join("audit.head.tmp");
                if temp.exists() {
                    std::fs::remove_file(&temp).unwrap();
                }
                temp
            }
            ROTATION_FAULT => {
                let next = self.numbers().last().copied().unwrap() + 1;
                dir.join(files::file_name(next))
            }
            other => panic!("unknown fault {other}"),
        };
        std::fs::create_dir(&obstacle).unwrap();
        self.obstacle = Some(obstacle);
    }

    fn repair(&mut self) {
        if let Some(obstacle) = self.obstacle.take() {
            std::fs::remove_dir(obstacle).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_log_passes_the_suite() {
    conformance::run(&mut FileHarness::new(0)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_log_rotating_at_every_record_passes_the_suite() {
    conformance::run(&mut FileHarness::new(1)).await.unwrap();
}

// ---- the in-memory model ----

/// A harness over `MemorySink`s, each seen through `wrap` (the sink itself, or a broken
/// version of it).
struct MemoryHarness {
    current: Option<Arc<MemorySink>>,
    wrap: fn(Arc<MemorySink>) -> Arc<dyn AuditSink>,
}

impl MemoryHarness {
    fn new(wrap: fn(Arc<MemorySink>) -> Arc<dyn AuditSink>) -> MemoryHarness {
        MemoryHarness {
            current: None,
            wrap,
        }
    }

    fn sink(&self) -> &MemorySink {
        self.current.as_ref().unwrap()
    }
}

impl Harness for MemoryHarness {
    fn fresh(&mut self) -> Arc<dyn AuditSink> {
        let sink = Arc::new(MemorySink::new(key(), &AuditOptions::default()));
        self.current = Some(Arc::clone(&sink));
        (self.wrap)(sink)
    }

    fn reopen(&mut self) -> Option<Arc<dyn AuditSink>> {
        None
    }

    fn stored(&mut self) -> Vec<Vec<u8>> {
        self.sink().lines()
    }

    fn rewrite(&mut self, lines: Vec<Vec<u8>>) {
        self.sink().replace_lines(lines);
    }

    fn faults(&self) -> Vec<&'static str> {
        vec!["the storage refuses writes"]
    }

    fn inject(&mut self, _fault: &str) {
        self.sink().set_storage_failing(true);
    }

    fn repair(&mut self) {
        self.sink().set_storage_failing(false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_sink_passes_the_suite() {
    conformance::run(&mut MemoryHarness::new(|s| s))
        .await
        .unwrap();
}

// ---- broken sinks fail it ----

/// Acknowledges what its storage refused (fail-open).
struct SwallowsFailures(Arc<MemorySink>);

#[async_trait]
impl AuditSink for SwallowsFailures {
    async fn append(&self, event: Event) -> coffer_audit::Result<u64> {
        match self.0.append(event).await {
            Err(AuditError::Failed(_)) => Ok(0),
            other => other,
        }
    }

    fn verify(&self) -> coffer_audit::Result<VerifyReport> {
        self.0.verify()
    }
}

/// Leaves a torn record behind when a write fails.
struct TearsOnFailure(Arc<MemorySink>);

#[async_trait]
impl AuditSink for TearsOnFailure {
    async fn append(&self, event: Event) -> coffer_audit::Result<u64> {
        let result = self.0.append(event).await;
        if let Err(AuditError::Failed(_)) = result {
            let mut lines = self.0.lines();
            lines.push(b"{\"v\":1,\"seq\":4,\"ti".to_vec());
            self.0.replace_lines(lines);
        }
        result
    }

    fn verify(&self) -> coffer_audit::Result<VerifyReport> {
        self.0.verify()
    }
}

/// Reports every trail intact.
struct BlindVerifier(Arc<MemorySink>);

#[async_trait]
impl AuditSink for BlindVerifier {
    async fn append(&self, event: Event) -> coffer_audit::Result<u64> {
        self.0.append(event).await
    }

    fn verify(&self) -> coffer_audit::Result<VerifyReport> {
        let records = self.0.lines().len() as u64;
        Ok(VerifyReport {
            records,
            last_seq: records,
            ..VerifyReport::default()
        })
    }
}

/// Numbers from 0.
struct CountsFromZero(Arc<MemorySink>);

#[async_trait]
impl AuditSink for CountsFromZero {
    async fn append(&self, event: Event) -> coffer_audit::Result<u64> {
        self.0.append(event).await.map(|seq| seq - 1)
    }

    fn verify(&self) -> coffer_audit::Result<VerifyReport> {
        self.0.verify()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[should_panic(expected = "an append the storage refuses fails with Failed")]
async fn a_sink_that_swallows_failures_fails_the_suite() {
    let mut h = MemoryHarness::new(|s| Arc::new(SwallowsFailures(s)));
    conformance::run(&mut h).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[should_panic(expected = "a failed append leaves no record, whole or partial")]
async fn a_sink_that_tears_records_fails_the_suite() {
    let mut h = MemoryHarness::new(|s| Arc::new(TearsOnFailure(s)));
    conformance::run(&mut h).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[should_panic(expected = "verify reports a field edited")]
async fn a_verifier_that_sees_nothing_fails_the_suite() {
    let mut h = MemoryHarness::new(|s| Arc::new(BlindVerifier(s)));
    conformance::run(&mut h).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[should_panic(expected = "seqs start at 1")]
async fn a_sink_that_counts_from_zero_fails_the_suite() {
    let mut h = MemoryHarness::new(|s| Arc::new(CountsFromZero(s)));
    conformance::run(&mut h).await.unwrap();
}
