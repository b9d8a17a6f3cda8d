#!/usr/bin/env python3
"""Concurrent load on `coffer server` (issue 7, "Concurrent load").

N client threads (default 32; 64 with --long), each with its own boto3 client and its own key
prefix, run a random mix of PUT (small and MiB-sized), GET, range GET, HEAD, list, delete,
DeleteObjects, copy and multipart (complete and abort) for a bounded time against one server
on loopback, under all three key models (SSE-S3, SSE-KMS with and without an encryption
context, SSE-C with a per-client key). Every client keeps an exact model of what it wrote
(bodies are regenerated from a seed), so every answer is checked: bodies and ranges byte for
byte, ETags (MD5, and md5-of-md5s-N for multipart), sizes, the encryption the server reports,
listings (the exact key set with sizes and ETags), 404 after delete. At the end each client
lists its prefix once more, HEADs every object it believes exists and GETs a sample of them,
and no multipart upload may be left open.

Any error — an exception, a 5xx, a mismatch — counts; the run fails unless there are none.
Printed: requests and errors, p50/p99/max latency per S3 operation, throughput (requests/s and
MiB/s each way), and the CPU used by the client (Python, GIL-bound) and by the server, since
both share this machine.

  python3 tests/reliability/load.py --coffer target/debug/coffer             # CI: 32 x 60 s
  python3 tests/reliability/load.py --coffer target/release/coffer --long    # 64 x 600 s

The last line is `load: R requests, E errors, ...`; the exit status is 1 on any error.
"""

import argparse
import hashlib
import os
import random
import resource
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lhlib  # noqa: E402

from botocore.exceptions import ClientError  # noqa: E402

KIB, MIB = 1 << 10, 1 << 20
PART = 5 * MIB
MAX_KEYS_PER_CLIENT = 40
BUCKETS = ("load-alpha", "load-beta")

# Operation mix (relative weights).
MIX = [
    ("put_small", 24), ("put_large", 4), ("multipart", 2), ("multipart_abort", 1),
    ("get", 20), ("get_range", 15), ("head", 5), ("list", 7), ("delete", 7),
    ("delete_batch", 3), ("get_missing", 3), ("copy", 4),
]


def body_for(seed, size):
    return random.Random(seed).randbytes(size)


def small_size(rng):
    r = rng.random()
    if r < 0.05:
        return 0
    if r < 0.45:
        return rng.randint(1, 2 * KIB)
    if r < 0.85:
        return rng.randint(2 * KIB, 64 * KIB)
    return rng.randint(64 * KIB, 256 * KIB)


class Obj:
    """What a client believes one of its keys holds."""
    __slots__ = ("seed", "size", "mode", "etag", "parts")

    def __init__(self, seed, size, mode, etag, parts=None):
        self.seed, self.size, self.mode, self.etag, self.parts = seed, size, mode, etag, parts

    def body(self):
        if self.parts is None:
            return body_for(self.seed, self.size)
        return b"".join(body_for(s, n) for s, n in self.parts)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = {}
        self.errors = []
        self.error_count = 0
        self.bytes_up = 0
        self.bytes_down = 0

    def record(self, op, seconds, up=0, down=0):
        with self.lock:
            self.lat.setdefault(op, []).append(seconds)
            self.bytes_up += up
            self.bytes_down += down

    def error(self, client, what):
        with self.lock:
            self.error_count += 1
            if len(self.errors) < 25:
                self.errors.append(f"client {client}: {what}")
        print(f"ERROR client {client}: {what.splitlines()[0][:300]}", flush=True)

    def requests(self):
        return sum(len(v) for v in self.lat.values())


class Mismatch(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Mismatch(what)


class Client(threading.Thread):
    def __init__(self, idx, srv, stats, deadline, seed, session):
        super().__init__(daemon=True, name=f"load-{idx}")
        self.idx, self.stats, self.deadline = idx, stats, deadline
        self.rng = random.Random(seed * 1000 + idx)
        self.s3 = srv.client(pool=2, read_timeout=300, session=session)
        self.bucket = BUCKETS[idx % len(BUCKETS)]
        self.prefix = f"c{idx:03d}/"
        self.ssec_key = self.rng.randbytes(32)
        self.model = {}          # key -> Obj
        self.gone = set()        # keys deleted (must be 404)
        self.next_key = 0
        self.ops = 0
        self.seed_counter = (seed * 1000 + idx) << 32
        names = [n for n, _ in MIX]
        weights = [w for _, w in MIX]
        self.pick = lambda: self.rng.choices(names, weights)[0]

    # -- helpers -----------------------------------------------------------------------

    def new_seed(self):
        self.seed_counter += 1
        return self.seed_counter

    def mode(self):
        return self.rng.choice(["sse-s3", "default", "sse-kms", "sse-kms-ctx", "sse-c"])

    def write_args(self, mode):
        if mode == "sse-s3":
            return {"ServerSideEncryption": "AES256"}
        if mode == "sse-kms":
            return {"ServerSideEncryption": "aws:kms"}
        if mode == "sse-kms-ctx":
            import base64
            import json
            ctx = base64.b64encode(json.dumps({"client": str(self.idx)}).encode()).decode()
            return {"ServerSideEncryption": "aws:kms", "SSEKMSEncryptionContext": ctx}
        if mode == "sse-c":
            return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": self.ssec_key}
        return {}

    def read_args(self, mode):
        if mode == "sse-c":
            return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": self.ssec_key}
        return {}

    def check_sse(self, resp, mode, what):
        sse = resp.get("ServerSideEncryption")
        if mode == "sse-c":
            expect(sse is None and resp.get("SSECustomerAlgorithm") == "AES256",
                   f"{what}: SSE-C not reported ({sse}, {resp.get('SSECustomerAlgorithm')})")
        elif mode.startswith("sse-kms"):
            expect(sse == "aws:kms" and (resp.get("SSEKMSKeyId") or "").startswith("arn:aws:kms:"),
                   f"{what}: expected aws:kms with a key ARN, got {sse} {resp.get('SSEKMSKeyId')}")
        else:
            expect(sse == "AES256", f"{what}: expected AES256, got {sse}")

    def call(self, op, fn, up=0, **kw):
        t0 = time.monotonic()
        try:
            r = fn(**kw)
            down = 0
            if "Body" in r and hasattr(r["Body"], "read"):
                r["_data"] = r["Body"].read()
                down = len(r["_data"])
        finally:
            # Failed calls count too: their latency is part of the picture.
            self.stats.record(op, time.monotonic() - t0, up, 0)
        with self.stats.lock:
            self.stats.bytes_down += down
        return r

    def expect_404(self, op, fn, what, **kw):
        t0 = time.monotonic()
        try:
            fn(**kw)
        except ClientError as e:
            st = e.response["ResponseMetadata"]["HTTPStatusCode"]
            expect(st == 404, f"{what}: expected 404, got {st} {e.response['Error'].get('Code')}")
            return
        finally:
            self.stats.record(op, time.monotonic() - t0)
        raise Mismatch(f"{what}: expected 404, got success")

    def fresh_key(self):
        self.next_key += 1
        return f"{self.prefix}k{self.next_key:05d}-{self.rng.choice(['a', 'b/c', 'd.e', 'f g', 'ü'])}"

    def target_key(self):
        """A key to write: a new one, or (often, and always at the cap) an existing one."""
        if self.model and (len(self.model) >= MAX_KEYS_PER_CLIENT or self.rng.random() < 0.3):
            return self.rng.choice(list(self.model))
        return self.fresh_key()

    def existing(self):
        return self.rng.choice(list(self.model)) if self.model else None

    def commit(self, key, obj):
        self.model[key] = obj
        self.gone.discard(key)

    # -- operations --------------------------------------------------------------------

    def op_put_small(self, size=None):
        key, mode, seed = self.target_key(), self.mode(), self.new_seed()
        size = small_size(self.rng) if size is None else size
        body = body_for(seed, size)
        r = self.call("PutObject", self.s3.put_object, up=size, Bucket=self.bucket, Key=key,
                      Body=body, **self.write_args(mode))
        etag = hashlib.md5(body).hexdigest()
        expect(r["ETag"] == f'"{etag}"', f"PUT {key}: ETag {r['ETag']} != md5 {etag}")
        self.check_sse(r, mode, f"PUT {key}")
        self.commit(key, Obj(seed, size, mode, etag))

    def op_put_large(self):
        self.op_put_small(size=self.rng.randint(1 * MIB, 4 * MIB))

    def op_multipart(self, abort=False):
        key, mode = self.target_key(), self.mode()
        parts = [(self.new_seed(), PART), (self.new_seed(), self.rng.randint(1, MIB))]
        if self.rng.random() < 0.3:
            parts.insert(1, (self.new_seed(), PART))
        up = self.call("CreateMultipartUpload", self.s3.create_multipart_upload,
                       Bucket=self.bucket, Key=key, **self.write_args(mode))
        self.check_sse(up, mode, f"create multipart {key}")
        uid = up["UploadId"]
        done, md5s = [], []
        for n, (seed, size) in enumerate(parts, 1):
            if abort and n == 2:
                break
            data = body_for(seed, size)
            r = self.call("UploadPart", self.s3.upload_part, up=size, Bucket=self.bucket, Key=key,
                          UploadId=uid, PartNumber=n, Body=data, **self.read_args(mode))
            md5 = hashlib.md5(data).digest()
            expect(r["ETag"] == f'"{md5.hex()}"', f"part {n} of {key}: ETag {r['ETag']}")
            done.append({"PartNumber": n, "ETag": r["ETag"]})
            md5s.append(md5)
        if abort:
            self.call("AbortMultipartUpload", self.s3.abort_multipart_upload, Bucket=self.bucket,
                      Key=key, UploadId=uid)
            # The key keeps whatever it held before.
            return
        r = self.call("CompleteMultipartUpload", self.s3.complete_multipart_upload,
                      Bucket=self.bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": done},
                      **self.read_args(mode))
        etag = f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{len(parts)}"
        expect(r["ETag"] == f'"{etag}"', f"complete {key}: ETag {r['ETag']} != {etag}")
        self.commit(key, Obj(None, sum(n for _, n in parts), mode, etag, parts=parts))

    def op_multipart_abort(self):
        self.op_multipart(abort=True)

    def op_get(self):
        key = self.existing()
        if key is None:
            return self.op_put_small()
        o = self.model[key]
        r = self.call("GetObject", self.s3.get_object, Bucket=self.bucket, Key=key,
                      **self.read_args(o.mode))
        data = r["_data"]
        expect(len(data) == o.size, f"GET {key}: {len(data)} bytes, expected {o.size}")
        expect(data == o.body(), f"GET {key}: body differs from what was written")
        expect(r["ETag"] == f'"{o.etag}"', f"GET {key}: ETag {r['ETag']} != {o.etag}")
        self.check_sse(r, o.mode, f"GET {key}")

    def op_get_range(self):
        key = self.existing()
        if key is None or self.model[key].size == 0:
            return self.op_put_small()
        o = self.model[key]
        n = o.size
        kind = self.rng.random()
        if kind < 0.15:
            k = self.rng.randint(1, n)
            spec, start, end = f"bytes=-{k}", n - k, n - 1
        elif kind < 0.3:
            start = self.rng.randrange(n)
            spec, end = f"bytes={start}-", n - 1
        else:
            start = self.rng.randrange(n)
            length = self.rng.choice([1, 16 * KIB, 16 * KIB + 1, self.rng.randint(1, 3 * MIB)])
            end_req = start + length - 1
            spec, end = f"bytes={start}-{end_req}", min(end_req, n - 1)
        r = self.call("GetObject(range)", self.s3.get_object, Bucket=self.bucket, Key=key,
                      Range=spec, **self.read_args(o.mode))
        expect(r["ContentRange"] == f"bytes {start}-{end}/{n}",
               f"GET {key} {spec}: Content-Range {r.get('ContentRange')}, expected bytes {start}-{end}/{n}")
        expect(r["_data"] == o.body()[start:end + 1], f"GET {key} {spec}: bytes differ")

    def op_head(self):
        key = self.existing()
        if key is None:
            return self.op_put_small()
        o = self.model[key]
        r = self.call("HeadObject", self.s3.head_object, Bucket=self.bucket, Key=key,
                      **self.read_args(o.mode))
        expect(r["ContentLength"] == o.size, f"HEAD {key}: length {r['ContentLength']} != {o.size}")
        expect(r["ETag"] == f'"{o.etag}"', f"HEAD {key}: ETag {r['ETag']}")
        self.check_sse(r, o.mode, f"HEAD {key}")

    def list_prefix(self, page=None):
        page = page or self.rng.choice([7, 50, 1000])
        got, token = {}, None
        while True:
            kw = {"Bucket": self.bucket, "Prefix": self.prefix, "MaxKeys": page}
            if token:
                kw["ContinuationToken"] = token
            r = self.call("ListObjectsV2", self.s3.list_objects_v2, **kw)
            for c in r.get("Contents", []):
                expect(c["Key"] not in got, f"list: {c['Key']} listed twice")
                got[c["Key"]] = (c["Size"], c["ETag"].strip('"'))
            if not r.get("IsTruncated"):
                break
            token = r["NextContinuationToken"]
        want = {k: (o.size, o.etag) for k, o in self.model.items()}
        if got != want:
            extra = sorted(set(got) - set(want))[:5]
            missing = sorted(set(want) - set(got))[:5]
            differ = [k for k in set(got) & set(want) if got[k] != want[k]][:5]
            raise Mismatch(f"list {self.prefix}: extra {extra}, missing {missing}, differ {differ}")

    def op_list(self):
        self.list_prefix()

    def op_delete(self):
        key = self.existing()
        if key is None:
            return self.op_put_small()
        r = self.call("DeleteObject", self.s3.delete_object, Bucket=self.bucket, Key=key)
        expect(r["ResponseMetadata"]["HTTPStatusCode"] == 204, f"DELETE {key}: {r['ResponseMetadata']['HTTPStatusCode']}")
        del self.model[key]
        self.gone.add(key)

    def op_delete_batch(self):
        if not self.model:
            return self.op_put_small()
        keys = self.rng.sample(list(self.model), min(len(self.model), self.rng.randint(1, 5)))
        ghost = self.fresh_key()  # never written: S3 reports it deleted too
        r = self.call("DeleteObjects", self.s3.delete_objects, Bucket=self.bucket,
                      Delete={"Objects": [{"Key": k} for k in keys + [ghost]]})
        expect(not r.get("Errors"), f"DeleteObjects: errors {r.get('Errors')}")
        deleted = {d["Key"] for d in r.get("Deleted", [])}
        expect(deleted == set(keys) | {ghost}, f"DeleteObjects: deleted {sorted(deleted)} != {sorted(keys + [ghost])}")
        for k in keys:
            del self.model[k]
            self.gone.add(k)
        self.gone.add(ghost)

    def op_get_missing(self):
        key = self.rng.choice(sorted(self.gone)) if self.gone and self.rng.random() < 0.7 else self.fresh_key()
        self.expect_404("GetObject(missing)", self.s3.get_object, f"GET deleted/never-written {key}",
                        Bucket=self.bucket, Key=key)

    def op_copy(self):
        src = self.existing()
        if src is None:
            return self.op_put_small()
        o = self.model[src]
        dst, mode = self.target_key(), self.mode()
        if dst == src:
            # S3 refuses a copy onto itself that changes nothing (400 InvalidRequest).
            dst = self.fresh_key()
        extra = {}
        if o.mode == "sse-c":
            extra = {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": self.ssec_key}
        r = self.call("CopyObject", self.s3.copy_object, Bucket=self.bucket, Key=dst,
                      CopySource={"Bucket": self.bucket, "Key": src}, **self.write_args(mode), **extra)
        self.check_sse(r, mode, f"COPY {src} -> {dst}")
        # A copy is a single-part object: its ETag is the MD5 of the whole body.
        body = o.body()
        etag = hashlib.md5(body).hexdigest()
        expect(r["CopyObjectResult"]["ETag"] == f'"{etag}"',
               f"COPY {src} -> {dst}: ETag {r['CopyObjectResult']['ETag']} != {etag}")
        if o.parts is None:
            self.commit(dst, Obj(o.seed, o.size, mode, etag))
        else:
            self.commit(dst, Obj(None, o.size, mode, etag, parts=o.parts))

    # -- the loop ----------------------------------------------------------------------

    def run(self):
        while time.monotonic() < self.deadline:
            op = self.pick()
            try:
                getattr(self, "op_" + op)()
            except Mismatch as e:
                self.stats.error(self.idx, f"{op}: {e}")
            except Exception as e:  # noqa: BLE001 - every failure is an error, the run goes on
                self.stats.error(self.idx, f"{op}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}")
            self.ops += 1

    def final_check(self, sample):
        """Listing equals the model; every object HEADs right; a sample GETs right; no
        multipart upload left open."""
        try:
            self.list_prefix(page=1000)
            keys = list(self.model)
            for key in keys:
                o = self.model[key]
                r = self.call("HeadObject", self.s3.head_object, Bucket=self.bucket, Key=key,
                              **self.read_args(o.mode))
                expect(r["ContentLength"] == o.size and r["ETag"] == f'"{o.etag}"',
                       f"final HEAD {key}: {r['ContentLength']} {r['ETag']} != {o.size} {o.etag}")
            for key in self.rng.sample(keys, min(sample, len(keys))):
                o = self.model[key]
                r = self.call("GetObject", self.s3.get_object, Bucket=self.bucket, Key=key,
                              **self.read_args(o.mode))
                expect(r["_data"] == o.body(), f"final GET {key}: body differs")
            for key in self.rng.sample(sorted(self.gone), min(sample, len(self.gone))):
                self.expect_404("HeadObject(missing)", self.s3.head_object, f"final HEAD deleted {key}",
                                Bucket=self.bucket, Key=key)
            r = self.call("ListMultipartUploads", self.s3.list_multipart_uploads, Bucket=self.bucket,
                          Prefix=self.prefix)
            expect(not r.get("Uploads"), f"open multipart uploads left: {[u['Key'] for u in r.get('Uploads', [])]}")
        except Mismatch as e:
            self.stats.error(self.idx, f"final check: {e}")
        except Exception as e:  # noqa: BLE001
            self.stats.error(self.idx, f"final check: {type(e).__name__}: {e}")


def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--coffer", required=True, help="path to the coffer binary")
    ap.add_argument("--clients", type=int, help="client threads (default 32; 64 with --long)")
    ap.add_argument("--seconds", type=float, help="duration of the mixed load (default 60; 600 with --long)")
    ap.add_argument("--long", action="store_true", help="long mode: 64 clients for 600 s")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = ap.parse_args()
    clients = args.clients or (64 if args.long else 32)
    seconds = args.seconds or (600.0 if args.long else 60.0)
    binary = Path(args.coffer).resolve()
    root = lhlib.new_root("coffer-load-")
    print(f"load: {clients} clients x {seconds:.0f} s, seed {args.seed}, binary {binary}, "
          f"{os.cpu_count()} CPUs; data in {root}", flush=True)
    stats = Stats()
    srv = None
    failures = []
    try:
        srv = lhlib.start_server(binary, root)
        admin = srv.client()
        for b in BUCKETS:
            admin.create_bucket(Bucket=b)
        t_setup = time.monotonic()
        deadline = t_setup + 10**9  # set below, once every client exists
        import boto3
        session = boto3.session.Session()
        workers = [Client(i, srv, stats, deadline, args.seed, session) for i in range(clients)]
        print(f"  {clients} boto3 clients ready in {time.monotonic() - t_setup:.1f} s", flush=True)
        cpu0, srv_cpu0, t0 = cpu_self(), srv.cpu_seconds(), time.monotonic()
        for w in workers:
            w.deadline = t0 + seconds
            w.start()
        last = t0
        while any(w.is_alive() for w in workers):
            time.sleep(1)
            if time.monotonic() - last >= 15:
                last = time.monotonic()
                print(f"  {last - t0:5.0f} s: {stats.requests()} requests, {stats.error_count} errors, "
                      f"server RSS peak {srv.rss_mib():.0f} MiB", flush=True)
            if not srv.alive():
                failures.append(f"the server exited with {srv.proc.returncode} during the load")
                break
        wall = time.monotonic() - t0
        cpu_client, cpu_server = cpu_self() - cpu0, srv.cpu_seconds() - srv_cpu0
        requests_load = stats.requests()
        up_mib, down_mib = stats.bytes_up / MIB, stats.bytes_down / MIB
        ops = sum(w.ops for w in workers)

        print("  final verification (listing, HEAD of every object, sampled GETs, no open uploads)...", flush=True)
        t_fin = time.monotonic()
        sample = 3 if not args.long else 10
        finals = [threading.Thread(target=w.final_check, args=(sample,)) for w in workers]
        for t in finals:
            t.start()
        for t in finals:
            t.join()
        objects = sum(len(w.model) for w in workers)
        print(f"  verified {objects} objects in {time.monotonic() - t_fin:.1f} s", flush=True)

        rss = srv.rss_mib()
        if not srv.alive():
            failures.append(f"the server exited with {srv.proc.returncode}")
        else:
            problem = srv.stop_problem()
            if problem:
                failures.append(problem)
        if "panicked" in srv.stderr():
            failures.append("the server log shows a panic")

        print()
        print(f"{'operation':26s} {'count':>7s} {'p50 ms':>9s} {'p99 ms':>9s} {'max ms':>9s}")
        for op in sorted(stats.lat):
            v = stats.lat[op]
            print(f"{op:26s} {len(v):7d} {lhlib.percentile(v, 50) * 1000:9.1f} "
                  f"{lhlib.percentile(v, 99) * 1000:9.1f} {max(v) * 1000:9.1f}")
        allv = [x for v in stats.lat.values() for x in v]
        print(f"{'all':26s} {len(allv):7d} {lhlib.percentile(allv, 50) * 1000:9.1f} "
              f"{lhlib.percentile(allv, 99) * 1000:9.1f} {max(allv) * 1000:9.1f}")
        print()
        print(f"load phase: {wall:.1f} s, {ops} operations, {requests_load} requests "
              f"({requests_load / wall:.0f} req/s), {up_mib:.0f} MiB up ({up_mib / wall:.1f} MiB/s), "
              f"{down_mib:.0f} MiB down ({down_mib / wall:.1f} MiB/s); server peak RSS {rss:.0f} MiB")
        print(f"CPU during the load phase ({os.cpu_count()} CPUs): client (boto3, Python threads) "
              f"{cpu_client / wall:.2f} cores, server {cpu_server / wall:.2f} cores — client and server "
              f"share the machine, so these figures bound each other")
        if stats.errors:
            print("\nFirst errors:")
            for e in stats.errors:
                print("  - " + e.replace("\n", "\n    ")[:2000])
        for f in failures:
            print(f"FAIL: {f}")
            if "panic" in f or "exited" in f:
                print(srv.stderr()[-4000:])
        total_errors = stats.error_count + len(failures)
        print(f"load: {stats.requests()} requests, {total_errors} errors, {clients} clients, "
              f"{wall:.0f} s, {requests_load / wall:.0f} req/s, p50 {lhlib.percentile(allv, 50) * 1000:.1f} ms, "
              f"p99 {lhlib.percentile(allv, 99) * 1000:.1f} ms, {objects} objects verified at the end")
        return 1 if total_errors else 0
    finally:
        if srv is not None:
            srv.kill()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
