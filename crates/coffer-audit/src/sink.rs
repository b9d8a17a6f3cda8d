//! [`AuditSink`]: where the audit trail's records go, behind a small trait with a written
//! contract (STYLE.md §7). Implemented by [`AuditLog`](crate::AuditLog) (the files of
//! spec/audit-log.md) and [`MemorySink`](crate::MemorySink) (the reference model); both pass
//! [`conformance::run`](crate::conformance::run).

use async_trait::async_trait;

use crate::error::Result;
use crate::record::Event;
use crate::verify::VerifyReport;

/// An append-only, hash-chained, MACed audit trail that acknowledges a record only once it
/// is durable, so a caller that records a request before acting never acts unaudited.
///
/// # Contract
/// - **Durable before acknowledged.** [`append`](Self::append) returns the record's `seq`
///   only once the record is in the sink's storage as a later reader (or a reopened sink)
///   will find it: for [`AuditLog`](crate::AuditLog), written, fdatasync'ed and the anchor
///   updated (spec §8). [`MemorySink`](crate::MemorySink) keeps records in memory: durable
///   for the sink's life only.
/// - **One chain, in order.** The sink, not the caller, assigns `seq`, `prev`, `hash` and
///   `mac` (spec §4). Seqs start at 1 and go up by one in stored order, with no gap and no
///   reuse, across restarts; each record's `prev` is the hash of the one before (zeros for
///   seq 1). An append that returned before another was called has the lower seq. The record
///   stored is [`Event`] as given, except that encryption-context values are dropped unless
///   the sink was opened with `include_context_values` (spec §10).
/// - **All or nothing.** An append that fails leaves no trace of its event in the storage,
///   neither a whole record nor part of one. (The file sink cuts a failed batch off again;
///   if that truncation fails too, what stays is whole, authentic records that reopening
///   adopts — spec §8 — never a torn one.)
/// - **Fail-closed.** A storage failure (a write, sync, file creation or anchor update that
///   fails) fails the append with [`AuditError::Failed`](crate::AuditError::Failed), and
///   every later append with `Failed` too, even once the cause has gone, until the storage is
///   opened again: after a failed sync the storage's state is unknown (spec §8). The caller
///   MUST NOT perform an operation whose `request` record was not acknowledged, and must not
///   report success for one whose `response` record was not (the server answers 503 and 500).
/// - **Caller errors close nothing.** An event that breaks spec §2 (empty action, phase and
///   outcome that do not pair, a field too long) is refused with
///   [`AuditError::InvalidEvent`](crate::AuditError::InvalidEvent) before anything is
///   written; no seq is used up and the sink stays open.
/// - **Cancellation.** Dropping an `append` future before it completes never tears the
///   chain: the record is appended whole or not at all (the file sink writes it once the
///   future was first polled), and later appends follow it without a gap.
/// - **Concurrency.** `Send + Sync`: share one sink in an `Arc` and append from any number
///   of tasks at once; each append gets its own seq. One sink per storage:
///   [`AuditLog::open`](crate::AuditLog::open) of a directory another sink holds fails with
///   [`AuditError::Locked`](crate::AuditError::Locked).
/// - **Verification.** [`verify`](Self::verify) reads the trail back from the storage and
///   checks every record's form, seq, chain link, hash and MAC, and the chain's end against
///   the anchor (spec §9). It reports the trail intact only if the storage holds exactly the
///   acknowledged records, in order and unaltered: an edit, forgery, deletion, insertion,
///   reordering, or loss of the end shows as [`VerifyReport::first_bad`], the first record
///   that is not what was appended (with the count of valid records before it). What it
///   cannot see is spec §11's residual risks: a holder of the MAC key writing a new valid
///   trail, and records and anchor rolled back together. Content problems are in the report;
///   `Err` means the storage could not be read.
///
/// # Why `append` is async
/// The server appends from the request path — inside the connection's task, on a Tokio
/// worker, twice per request — and from a streamed response body's `poll_frame` when the
/// body fails. An async `append` lets the file sink hand the record to its group-commit
/// writer thread over a channel and park the task until the batch is durable: the worker
/// serves other connections meanwhile, and concurrent requests share one fdatasync. That is
/// exactly what `AuditLog::append` did before this trait existed; the trait adds one boxed
/// future (`async-trait`) and one virtual call per record — nanoseconds beside a sync —
/// and no thread hop. A blocking `fn append` would either stall the worker for the sync or
/// need a `spawn_blocking` hop per record on the request path. `poll_frame` cannot await,
/// so it spawns a task that awaits `append` (before the trait it spawned a blocking task
/// that called `append_blocking`: a hop to the blocking pool, now gone). Code outside a
/// runtime uses [`AuditLog::append_blocking`](crate::AuditLog::append_blocking).
///
/// `verify` is synchronous: it reads the whole trail, so on a live server run it on a
/// blocking thread. For the file sink, a verify racing an append may see the append's
/// incomplete last line (spec §9); re-run it.
#[async_trait]
pub trait AuditSink: Send + Sync {
    /// Appends `event` as the next record of the chain; returns its `seq` once it is durable.
    async fn append(&self, event: Event) -> Result<u64>;

    /// Checks the stored trail with the sink's key (see the contract).
    fn verify(&self) -> Result<VerifyReport>;

    /// Whether the sink can take records now, without writing one: `Err` names why not (it
    /// has failed, or it is about to: e.g. its filesystem is full). A server's readiness
    /// check; [`append`](AuditSink::append) stays the authority (fail-closed either way).
    fn ready(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}
