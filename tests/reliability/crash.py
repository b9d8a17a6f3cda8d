#!/usr/bin/env python3
"""Crash consistency of `coffer server` (issue 7): SIGKILL at random moments under concurrent
writes, restart on the same data directory, and check what survived.

Each cycle:
  1. start `coffer server` on the data directory (root credentials in the environment only on
     the very first start), note what the start-up sweep says it removed;
  2. check the data directory and every key (see "Checks" below) against everything the
     previous cycles acknowledged;
  3. abort the multipart uploads a kill left open (and check their part blobs go);
  4. run THREADS worker threads for a random time: PUTs of small objects (0 B .. 300 KiB,
     chunk-boundary sizes included), large objects (8..10 MiB, which the server writes through
     its multipart blob writer), multipart uploads (two 5 MiB parts + a tail), and deletes,
     each under a random SSE mode (SSE-S3, SSE-KMS, SSE-C), on a small pool of keys so writes
     and deletes of one key race each other;
  5. SIGKILL the server while requests are in flight.
After the last cycle one more start runs the checks of step 2.

Checks (after every restart):
  - no staging file (`#` in the name) is left under <data>/blobs;
  - the number of blob files equals what the visible objects (1 per single PUT, N per
    N-part multipart object: the ETag's `-N`) plus the open multipart uploads' parts need;
  - for every key, the visible state (GET: content SHA-256, or 404) is one the history
    allows. Every request's interval [sent, answered] is recorded; the final state must be the
    result of an operation X that is acknowledged (200/204) or was in flight at the kill, and
    no acknowledged operation on the key may have *started* after X was acknowledged (that one
    would have to win). Operations that failed with an error response are never allowed.
    The verdicts:
      lost       the key is absent (or unreadable) although an acknowledged PUT must be there;
      partial    the body matches no PUT of that key at all (truncated, mixed, foreign bytes);
      stale      the body is an older PUT that a later acknowledged write replaced, or the
                 key is present although an acknowledged DELETE must have removed it;
      unreadable GET fails (integrity error, 5xx) for a key that is listed;
    plus: listing and GETs agree (keys and sizes); no request got an error response or lost
    its connection while the server was up; the server never panicked.

Prints one line per cycle and the summary
  `crash: cycles N, objects verified V, lost 0, partial 0, stale 0, unreadable 0, …`.
Exit status 1 if any check failed. The data directory is kept on failure.

Usage: python3 tests/reliability/crash.py --coffer target/debug/coffer [--cycles 10] [--seed S]
"""

import argparse
import hashlib
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

MIB = harness.MIB
PART = 5 * MIB
BUCKET = "crash"
ABSENT = "absent"
SSE_C_KEY = hashlib.sha256(b"coffer reliability sse-c key").digest()
SSE_C = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSE_C_KEY}
MODES = {
    "sse-s3": {"ServerSideEncryption": "AES256"},
    "sse-kms": {"ServerSideEncryption": "aws:kms"},
    "sse-c": SSE_C,
}
SMALL_SIZES = [0, 1, 100, 16383, 16384, 16385, 32768, 65537]


class Op:
    __slots__ = ("n", "key", "kind", "mode", "size", "sha", "start", "end", "outcome", "detail",
                 "thread")

    def __init__(self, n, key, kind, mode, size=0, sha=None):
        self.n, self.key, self.kind, self.mode, self.size, self.sha = n, key, kind, mode, size, sha
        self.start = None   # when the deciding request was sent (monotonic)
        self.end = None     # when its response arrived
        self.outcome = "notsent"  # ok | err | unknown (in flight at the kill) | notsent
        self.detail = ""
        self.thread = None

    @property
    def state(self):
        return ABSENT if self.kind == "delete" else self.sha

    def __repr__(self):
        return (f"#{self.n} {self.kind} {self.key} {self.mode} {self.size}B "
                f"{(self.sha or '')[:12]} {self.outcome}")


class Prior:
    """A key's verified state at the start of a cycle (an op of an earlier cycle, or absent)."""

    def __init__(self, state, label):
        self.state, self.label = state, label


class Cycle:
    def __init__(self, srv, keys, rng, threads, duration, stats, failures):
        self.srv, self.keys, self.rng = srv, keys, rng
        self.threads, self.duration = threads, duration
        self.stats, self.failures = stats, failures
        self.ops = []
        self.lock = threading.Lock()
        self.killed = threading.Event()
        self.anomalies = []
        self.counter = 0

    def new_op(self, *a, **kw):
        with self.lock:
            self.counter += 1
            op = Op(self.counter, *a, **kw)
            self.ops.append(op)
            return op

    # -- the workload ---------------------------------------------------------------------

    def worker(self, idx, seed, s3):
        rng = random.Random(seed)
        while not self.killed.is_set():
            key = rng.choice(self.keys)
            mode = rng.choice(list(MODES))
            r = rng.random()
            if r < 0.45:
                size = rng.choice(SMALL_SIZES) if rng.random() < 0.4 else rng.randrange(300 * 1024)
                self.put(s3, key, mode, size, idx)
            elif r < 0.62:
                self.put(s3, key, mode, 8 * MIB + rng.randrange(2 * MIB), idx)
            elif r < 0.75:
                self.multipart(s3, key, mode, rng.randrange(1, MIB), idx)
            else:
                self.delete(s3, key, idx)

    def body(self, op, size):
        # Unique content per operation: the SHA-256 names the PUT that wrote it.
        data = op.n.to_bytes(8, "big") + os.urandom(max(size - 8, 0))
        data = data[:size]
        op.sha = hashlib.sha256(data).hexdigest()
        op.size = size
        return data

    def run(self, op, fn):
        """Runs the deciding request of `op` and records its interval and outcome."""
        op.start = time.monotonic()
        op.outcome = "unknown"
        try:
            fn()
        except ClientError as e:
            op.end = time.monotonic()
            op.outcome = "err"
            meta = e.response.get("ResponseMetadata", {})
            op.detail = f"{meta.get('HTTPStatusCode')} {e.response.get('Error', {}).get('Code')}"
            self.anomalies.append(f"{op!r}: error response {op.detail}")
            return False
        except Exception as e:  # noqa: BLE001 - connection errors: in flight at the kill
            op.detail = f"{type(e).__name__}: {e}"[:200]
            if not self.killed.is_set():
                self.anomalies.append(f"{op!r}: connection failed while the server was up: "
                                      f"{op.detail}")
            return False
        op.end = time.monotonic()
        op.outcome = "ok"
        return True

    def put(self, s3, key, mode, size, idx):
        op = self.new_op(key, "put-large" if size >= 8 * MIB else "put-small", mode)
        op.thread = idx
        data = self.body(op, size)
        self.run(op, lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=data, **MODES[mode]))

    def delete(self, s3, key, idx):
        op = self.new_op(key, "delete", None)
        op.thread = idx
        self.run(op, lambda: s3.delete_object(Bucket=BUCKET, Key=key))

    def multipart(self, s3, key, mode, tail, idx):
        op = self.new_op(key, "multipart", mode)
        op.thread = idx
        data = self.body(op, 2 * PART + tail)
        read = SSE_C if mode == "sse-c" else {}
        # Create and parts are not the deciding request: the object becomes visible (or
        # not) with CompleteMultipartUpload. Failures before it leave an open upload.
        try:
            up = s3.create_multipart_upload(Bucket=BUCKET, Key=key, **MODES[mode])
            parts = []
            for n, off in enumerate(range(0, len(data), PART), start=1):
                if self.killed.is_set():
                    return
                r = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up["UploadId"],
                                   PartNumber=n, Body=data[off:off + PART], **read)
                parts.append({"PartNumber": n, "ETag": r["ETag"]})
        except ClientError as e:
            self.anomalies.append(f"{op!r}: create/part error response {e.response.get('Error')}")
            op.outcome = "err"
            return
        except Exception as e:  # noqa: BLE001
            if not self.killed.is_set():
                self.anomalies.append(f"{op!r}: create/part connection failed while the "
                                      f"server was up: {type(e).__name__}: {e}")
            return
        if self.killed.is_set():
            return
        self.run(op, lambda: s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": parts},
            **read))

    def workload(self):
        """Runs the workers, SIGKILLs the server after a random time; returns the kill time."""
        # Clients are made here, not in the threads: boto3 sessions are not thread-safe to build.
        clients = [self.srv.client(read_timeout=60) for _ in range(self.threads)]
        ts = [threading.Thread(target=self.worker, args=(i, self.rng.getrandbits(64), clients[i]),
                               daemon=True) for i in range(self.threads)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        time.sleep(self.duration)
        self.killed.set()
        self.srv.kill()
        kill_at = time.monotonic() - t0
        for t in ts:
            t.join(90)
            if t.is_alive():
                self.anomalies.append("a worker thread did not finish within 90 s of the kill")
        return kill_at


# --------------------------------------------------------------------------------------------
# Checks after a restart
# --------------------------------------------------------------------------------------------


def get_state(s3, key):
    """('absent' | sha256 hex, size) of key, or raises on an error response other than 404."""
    for extra in ({}, SSE_C):
        try:
            r = s3.get_object(Bucket=BUCKET, Key=key, **extra)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                return ABSENT, None
            if not extra and code == "InvalidRequest":
                continue  # an SSE-C object: try again with the key
            raise
        data = r["Body"].read()
        if r.get("ContentLength") != len(data):
            raise AssertionError(f"Content-Length {r.get('ContentLength')} but {len(data)} bytes")
        return hashlib.sha256(data).hexdigest(), len(data)
    raise AssertionError("unreachable")


def allowed_states(ops, prior):
    """The states the key may be in: see the module docstring."""
    acked = [o for o in ops if o.outcome == "ok"]
    allowed = {}
    if not acked:
        allowed[prior.state] = prior.label
    for o in ops:
        if o.outcome == "ok":
            if not any(y.start > o.end for y in acked):
                allowed[o.state] = repr(o)
        elif o.outcome == "unknown":
            allowed[o.state] = repr(o)
    return allowed


def list_all(s3):
    objs, token = {}, None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = s3.list_objects_v2(Bucket=BUCKET, **kw)
        for o in r.get("Contents", []):
            objs[o["Key"]] = (o["ETag"].strip('"'), o["Size"])
        if not r.get("IsTruncated"):
            return objs
        token = r["NextContinuationToken"]


def open_uploads(s3):
    ups = []
    r = s3.list_multipart_uploads(Bucket=BUCKET)
    for u in r.get("Uploads", []):
        parts = s3.list_parts(Bucket=BUCKET, Key=u["Key"], UploadId=u["UploadId"])
        ups.append((u["Key"], u["UploadId"], len(parts.get("Parts", []))))
    return ups


def segments(etag):
    """Blobs an object needs: N for a multipart ETag `md5-N`, else 1."""
    return int(etag.rsplit("-", 1)[1]) if "-" in etag else 1


def verify(srv, data_dir, keys, history, priors, stats, failures, label):
    """Runs every check after a restart; updates `priors` to the verified states."""
    s3 = srv.client()
    staging = harness.staging_files(data_dir)
    if staging:
        failures.append(f"{label}: {len(staging)} staging file(s) left after restart: "
                        f"{[p.name for p in staging[:5]]}")
    listed = list_all(s3)
    uploads = open_uploads(s3)
    need = sum(segments(e) for e, _ in listed.values()) + sum(n for _, _, n in uploads)
    have = len(harness.committed_blobs(data_dir))
    stats["blob_checks"] += 1
    if have != need:
        failures.append(f"{label}: {have} blob files but the {len(listed)} visible objects and "
                        f"{len(uploads)} open uploads need {need}")
    for key in keys:
        ops = history.get(key, [])
        allowed = allowed_states(ops, priors[key])
        try:
            state, size = get_state(s3, key)
        except Exception as e:  # noqa: BLE001
            stats["unreadable"] += 1
            failures.append(f"{label}: {key}: unreadable: {type(e).__name__}: {e}; allowed: "
                            f"{list(allowed.values())}")
            priors[key] = Prior(None, "unreadable")
            continue
        if (key in listed) != (state != ABSENT):
            failures.append(f"{label}: {key}: listing says {'present' if key in listed else 'absent'}"
                            f" but GET says {'absent' if state == ABSENT else 'present'}")
        elif key in listed and listed[key][1] != size:
            failures.append(f"{label}: {key}: listed size {listed[key][1]} but GET returned {size}")
        if state in allowed:
            if state != ABSENT:
                stats["verified"] += 1
            priors[key] = Prior(state, allowed[state])
            continue
        known = {o.state: o for o in ops}
        known.setdefault(priors[key].state, priors[key].label)
        candidates = list(allowed.values())
        if state == ABSENT:
            verdict = "lost"
        elif state in known:
            verdict = "stale"
        else:
            verdict = "partial"
        stats[verdict] += 1
        shown = known.get(state, "no PUT of this key") if state != ABSENT else "absent"
        failures.append(f"{label}: {key}: {verdict.upper()}: found {shown!r} "
                        f"({'' if state == ABSENT else state[:16] + '…, '}{size} B); allowed: "
                        f"{candidates}")
        priors[key] = Prior(state, f"{verdict} state")
    return s3, listed, uploads


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--coffer", required=True, help="path to the coffer binary")
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--threads", type=int, default=6)
    ap.add_argument("--keys", type=int, default=16, help="size of the key pool")
    ap.add_argument("--max-run", type=float, default=4.0,
                    help="longest workload before the kill, seconds (uniform from 0.2)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="coffer-crash-"))
    data = work / "data"
    log = work / "server.log"
    print(f"crash: seed {seed}, {args.cycles} cycles, {args.threads} threads, "
          f"{args.keys} keys, data {data}", flush=True)
    keys = [f"k/{i:02d}" for i in range(args.keys)]
    priors = {k: Prior(ABSENT, "never written") for k in keys}
    stats = {k: 0 for k in ("cycles", "verified", "lost", "partial", "stale", "unreadable", "blob_checks",
                            "acked", "in_flight", "swept_staging", "swept_orphans", "aborted",
                            "requests")}
    kinds_in_flight = {}
    failures = []
    t_start = time.monotonic()

    srv = harness.start_server(args.coffer, data, log_path=log, first_start=True)
    srv.client().create_bucket(Bucket=BUCKET)
    history = {}
    cycle = 0
    baseline_files = None
    try:
        for cycle in range(1, args.cycles + 2):
            label = f"cycle {cycle}"
            if cycle > 1:
                try:
                    srv = harness.start_server(args.coffer, data, log_path=log, first_start=False)
                except harness.StartError as e:
                    failures.append(f"{label}: the server did not restart: {e}\n"
                                    f"{e.stdout}\n{e.stderr[-3000:]}")
                    break
                st, orph = srv.sweep()
                stats["swept_staging"] += st
                stats["swept_orphans"] += orph
                nfail = len(failures)
                stats["cycles"] += 1
                # Nothing else may pile up in the data directory either.
                others = {str(p.relative_to(data)) for p in data.rglob("*")
                          if p.is_file() and p.relative_to(data).parts[0] != "blobs"}
                if baseline_files is None:
                    baseline_files = others
                elif others - baseline_files:
                    failures.append(f"{label}: new files in the data directory: "
                                    f"{sorted(others - baseline_files)[:10]}")
                s3, listed, uploads = verify(srv, data, keys, history, priors, stats, failures,
                                             label)
                # Abort what the kill left open; their part blobs must go.
                for key, upload_id, _ in uploads:
                    s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
                    stats["aborted"] += 1
                need = sum(segments(e) for e, _ in list_all(s3).values())
                have = len(harness.committed_blobs(data))
                if uploads and have != need:
                    failures.append(f"{label}: after aborting {len(uploads)} uploads: {have} "
                                    f"blob files, objects need {need}")
                if "panicked" in srv.stderr():
                    failures.append(f"{label}: the server panicked (see {log})")
                print(f"  restart {cycle - 1}: ready in {srv.ready_seconds:.2f}s, sweep removed "
                      f"{st} staging + {orph} uncommitted, {len(listed)} objects, "
                      f"{len(uploads)} open uploads aborted, "
                      f"{'ok' if len(failures) == nfail else 'FAILED'}", flush=True)
            if cycle > args.cycles:
                break
            duration = rng.uniform(0.2, args.max_run)
            c = Cycle(srv, keys, rng, args.threads, duration, stats, failures)
            kill_at = c.workload()
            history = {}
            for o in c.ops:
                history.setdefault(o.key, []).append(o)
            acked = sum(1 for o in c.ops if o.outcome == "ok")
            unknown = [o for o in c.ops if o.outcome == "unknown"]
            stats["acked"] += acked
            stats["in_flight"] += len(unknown)
            stats["requests"] += sum(1 for o in c.ops if o.outcome != "notsent")
            for o in unknown:
                kinds_in_flight[o.kind] = kinds_in_flight.get(o.kind, 0) + 1
            for a in c.anomalies:
                failures.append(f"{label}: {a}")
            print(f"cycle {cycle}: SIGKILL at {kill_at:.2f}s, {len(c.ops)} ops, {acked} "
                  f"acknowledged, {len(unknown)} in flight "
                  f"({', '.join(sorted(o.kind for o in unknown)) or '-'})", flush=True)
    finally:
        if srv.alive():
            srv.stop()
    elapsed = time.monotonic() - t_start
    print()
    for f in failures:
        print(f"FAIL {f}")
    ran = stats["cycles"]
    print(f"crash: in flight at the kills: "
          f"{', '.join(f'{k} {v}' for k, v in sorted(kinds_in_flight.items())) or 'none'}; "
          f"sweeps removed {stats['swept_staging']} staging file(s) and "
          f"{stats['swept_orphans']} uncommitted blob(s); {stats['aborted']} open uploads "
          f"aborted")
    print(f"crash: cycles {ran}, objects verified {stats['verified']}, "
          f"acknowledged writes {stats['acked']}, lost {stats['lost']}, "
          f"partial {stats['partial']}, stale {stats['stale']}, "
          f"unreadable {stats['unreadable']}, failed checks {len(failures)} "
          f"({elapsed:.0f}s, seed {seed})")
    if failures or args.keep:
        print(f"crash: data directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
