#!/usr/bin/env python3
"""Disk full (issue 7, resource limits): `coffer server` with its data directory on a small
filesystem (a 64 MiB tmpfs; a loop-mounted ext4 image if tmpfs cannot be mounted), filled
until writes fail.

Checks:
  - every write the full disk stops gets a clean `507 InsufficientStorage` — single PUTs
    through the large-body path (8 MiB) and the small one, multipart parts, zero-byte PUTs
    (which fail in the metadata database rather than the blob store) — never a 500, a reset
    connection or a success;
  - a failed write leaves nothing: the key is not visible (HEAD 404, not listed), no staging
    file and no extra blob file remains;
  - every object stored before stays readable with its exact content, and the server keeps
    answering;
  - the server restarts on the full disk and serves the same objects;
  - after deleting some objects, uploads (single and multipart) work again.

Needs root (mount). When neither a tmpfs nor a loop device can be mounted it prints
`diskfull: SKIPPED: <reason>` and exits 77, which tests/reliability/run.sh reports as skipped —
it never pretends to have run.

Usage: python3 tests/reliability/diskfull.py --coffer target/debug/coffer [--size-mib 64]
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

MIB = harness.MIB
BUCKET = "full"
SSE_C_KEY = hashlib.sha256(b"coffer diskfull sse-c key").digest()
SSE_C = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSE_C_KEY}
MODES = {
    "sse-s3": ({"ServerSideEncryption": "AES256"}, {}),
    "sse-kms": ({"ServerSideEncryption": "aws:kms"}, {}),
    "sse-c": (SSE_C, SSE_C),
}
SKIP = 77
BALLAST = 1 * MIB


def sh(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def mount_small_fs(mnt, size_mib, work):
    """Mounts a size_mib filesystem on mnt; returns (description, cleanup) or raises OSError
    with the reasons."""
    r = sh("mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(mnt))
    if r.returncode == 0:
        return f"tmpfs of {size_mib} MiB", lambda: sh("umount", str(mnt))
    reasons = [f"mount -t tmpfs: {r.stderr.strip() or r.returncode}"]
    img = work / "disk.img"
    with open(img, "wb") as f:
        f.truncate(size_mib * MIB)
    r = sh("mkfs.ext4", "-q", "-F", str(img))
    if r.returncode == 0:
        r = sh("mount", "-o", "loop", str(img), str(mnt))
        if r.returncode == 0:
            return f"loop-mounted ext4 image of {size_mib} MiB", lambda: sh("umount", str(mnt))
        reasons.append(f"mount -o loop: {r.stderr.strip() or r.returncode}")
    else:
        reasons.append(f"mkfs.ext4: {r.stderr.strip() or r.returncode}")
    raise OSError("; ".join(reasons))


class Run:
    def __init__(self, binary, data, log):
        self.binary, self.data, self.log = binary, data, log
        self.stored = {}      # key -> (sha256, mode)
        self.failures = []
        self.errors_507 = 0
        self.srv = None
        self.s3 = None

    def start(self, first):
        self.srv = harness.start_server(self.binary, self.data, log_path=self.log, first_start=first)
        self.s3 = self.srv.client()

    def fail(self, msg):
        self.failures.append(msg)
        print(f"FAIL {msg}", flush=True)

    def put(self, key, size, mode):
        """True if stored; False after a clean 507; records anything else as a failure."""
        body = os.urandom(size)
        blobs_before = len(harness.committed_blobs(self.data))
        try:
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=body, **MODES[mode][0])
        except ClientError as e:
            return self.refused(key, e, blobs_before, f"PUT {size} B")
        except Exception as e:  # noqa: BLE001
            self.fail(f"PUT {key} ({size} B): no clean error: {type(e).__name__}: {e}")
            return False
        self.stored[key] = (hashlib.sha256(body).hexdigest(), mode)
        return True

    def refused(self, key, e, blobs_before, what):
        st = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = e.response.get("Error", {}).get("Code")
        if (st, code) != (507, "InsufficientStorage"):
            self.fail(f"{what} {key}: expected 507 InsufficientStorage, got {st} {code}")
        else:
            self.errors_507 += 1
        self.no_trace(key, blobs_before, what)
        return False

    def no_trace(self, key, blobs_before, what):
        try:
            self.s3.head_object(Bucket=BUCKET, Key=key)
            self.fail(f"{what} {key} failed but the key is visible")
        except ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                self.fail(f"HEAD {key} after a failed write: {e.response.get('Error')}")
        staging = harness.staging_files(self.data)
        if staging:
            self.fail(f"{what} {key}: {len(staging)} staging file(s) left: {staging[:3]}")
        after = len(harness.committed_blobs(self.data))
        if after > blobs_before:
            self.fail(f"{what} {key}: {after - blobs_before} blob file(s) left behind")

    def multipart(self, key, mode, sizes):
        """Uploads parts of `sizes`; True if completed, False after a clean 507."""
        w, r = MODES[mode]
        up = self.s3.create_multipart_upload(Bucket=BUCKET, Key=key, **w)
        parts, data = [], b""
        for n, size in enumerate(sizes, start=1):
            body = os.urandom(size)
            blobs_before = len(harness.committed_blobs(self.data))
            try:
                res = self.s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up["UploadId"],
                                          PartNumber=n, Body=body, **r)
            except ClientError as e:
                self.refused(key, e, blobs_before, f"UploadPart {n} ({size} B)")
                self.s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up["UploadId"])
                return False
            except Exception as e:  # noqa: BLE001
                self.fail(f"UploadPart {key} {n}: no clean error: {type(e).__name__}: {e}")
                return False
            parts.append({"PartNumber": n, "ETag": res["ETag"]})
            data += body
        try:
            self.s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up["UploadId"],
                                              MultipartUpload={"Parts": parts}, **r)
        except ClientError as e:
            self.refused(key, e, 10**9, "CompleteMultipartUpload")
            self.s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up["UploadId"])
            return False
        self.stored[key] = (hashlib.sha256(data).hexdigest(), mode)
        return True

    def verify_all(self, when):
        bad = 0
        for key, (sha, mode) in self.stored.items():
            try:
                r = self.s3.get_object(Bucket=BUCKET, Key=key, **MODES[mode][1])
                got = hashlib.sha256(r["Body"].read()).hexdigest()
                if got != sha:
                    bad += 1
                    self.fail(f"{when}: {key} content differs")
            except Exception as e:  # noqa: BLE001
                bad += 1
                self.fail(f"{when}: {key} unreadable: {type(e).__name__}: {e}")
        listed = set()
        token = None
        while True:
            kw = {"ContinuationToken": token} if token else {}
            r = self.s3.list_objects_v2(Bucket=BUCKET, **kw)
            listed |= {o["Key"] for o in r.get("Contents", [])}
            if not r.get("IsTruncated"):
                break
            token = r["NextContinuationToken"]
        if listed != set(self.stored):
            self.fail(f"{when}: listing differs: extra {sorted(listed - set(self.stored))[:5]}, "
                      f"missing {sorted(set(self.stored) - listed)[:5]}")
        if len(harness.committed_blobs(self.data)) < len(self.stored):
            self.fail(f"{when}: fewer blob files than objects")
        print(f"  {when}: {len(self.stored) - bad} of {len(self.stored)} objects intact",
              flush=True)

    def fill(self, prefix, size, mode, limit=1000):
        """PUTs `size` objects until one is refused; returns how many were stored."""
        for i in range(limit):
            if not self.put(f"{prefix}/{i:04d}", size, mode):
                return i
        self.fail(f"{prefix}: {limit} PUTs of {size} B never filled the disk")
        return limit


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--coffer", required=True)
    ap.add_argument("--size-mib", type=int, default=64)
    args = ap.parse_args()
    binary = str(Path(args.coffer).resolve())
    work = Path(tempfile.mkdtemp(prefix="coffer-diskfull-"))
    mnt = work / "mnt"
    mnt.mkdir()
    t0 = time.monotonic()
    try:
        fs, unmount = mount_small_fs(mnt, args.size_mib, work)
    except OSError as e:
        print(f"diskfull: SKIPPED: no small filesystem can be mounted here ({e})")
        shutil.rmtree(work, ignore_errors=True)
        return SKIP
    print(f"diskfull: data directory on a {fs} at {mnt}", flush=True)
    run = Run(binary, mnt / "data", work / "server.log")
    try:
        # Space an operator can free by hand later (outside the data directory).
        ballast = mnt / "ballast"
        ballast.write_bytes(b"\0" * BALLAST)
        run.start(first=True)
        s3 = run.s3
        s3.create_bucket(Bucket=BUCKET)
        for i, mode in enumerate(MODES):
            assert run.put(f"keep/{mode}", 100_000 + i, mode), "could not store the first objects"
        assert run.multipart("keep/multipart", "sse-kms", [5 * MIB, 1000])

        # 1. Large bodies (the blob store's multipart writer) until the disk is full.
        n = run.fill("big", 8 * MIB, "sse-s3")
        df = shutil.disk_usage(mnt)
        print(f"  8 MiB PUTs: {n} stored, then refused; {df.free // 1024} KiB free", flush=True)
        # 2. While full: every kind of write must be refused cleanly (or fit).
        run.multipart("refused/multipart", "sse-s3", [5 * MIB, 5 * MIB])
        n = run.fill("mid", 1 * MIB, "sse-kms")
        print(f"  1 MiB PUTs: {n} more stored", flush=True)
        n = run.fill("small", 16 * 1024, "sse-c")
        print(f"  16 KiB PUTs: {n} more stored", flush=True)
        n = run.fill("empty", 0, "sse-s3", limit=5000)
        df = shutil.disk_usage(mnt)
        print(f"  0-byte PUTs: {n} more stored; {df.free} bytes free; "
              f"{run.errors_507} writes refused with 507 so far", flush=True)
        run.verify_all("while full")
        if not run.srv.alive():
            run.fail("the server exited while the disk was full")

        # 3. A restart on the full disk.
        code = run.srv.stop()
        if code != 0:
            run.fail(f"exit status {code} after SIGTERM on a full disk")
        try:
            run.start(first=False)
            st, orph = run.srv.sweep()
            print(f"  restarted on the full disk; sweep removed {st} staging + {orph} "
                  f"uncommitted", flush=True)
            run.verify_all("after a restart on the full disk")
        except harness.StartError as e:
            run.fail(f"the server did not restart on the full disk: {e}\n{e.stderr[-2000:]}")
            raise

        # 4. The last bytes taken by something else (a filler file outside the data
        # directory): 0 bytes free, and the database's write-ahead log is fresh after the
        # restart, so any change needs new space. Reads must still work, writes must be
        # refused with 507 — and a DeleteObject must still work, since deleting is the only
        # way a client can make room. If it is refused, that is a failure; then the filler and
        # a 1 MiB ballast file are removed (an operator freeing space by hand) and the run
        # goes on.
        filler = mnt / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        free = shutil.disk_usage(mnt).free
        wal = {p.name: p.stat().st_size for p in run.data.glob("server.db*")}
        print(f"  filler file took the rest: {free} bytes free; database files {wal}",
              flush=True)
        run.verify_all("at 0 bytes free")
        run.put("refused/at-zero", 0, "sse-s3")
        # Writes that touch only the database (CreateMultipartUpload) until it is refused
        # too: now the database's log has no room left either.
        opened = []
        for i in range(5000):
            try:
                up = run.s3.create_multipart_upload(Bucket=BUCKET, Key=f"db-only/{i}")
                opened.append((f"db-only/{i}", up["UploadId"]))
            except ClientError as e:
                run.refused(f"db-only/{i}", e, 10**9, "CreateMultipartUpload")
                break
        else:
            run.fail("5000 CreateMultipartUpload never filled the database")
        print(f"  CreateMultipartUpload: {len(opened)} accepted, then refused", flush=True)
        big = sorted(k for k in run.stored if k.startswith("big/"))
        doomed = big[: max(2, len(big) // 2)]
        try:
            run.s3.delete_object(Bucket=BUCKET, Key=doomed[0])
            del run.stored[doomed.pop(0)]
        except ClientError as e:
            meta = e.response.get("ResponseMetadata", {})
            run.fail(f"DeleteObject on the full disk ({free} bytes free) was refused: "
                     f"{meta.get('HTTPStatusCode')} {e.response.get('Error', {}).get('Code')} "
                     f"— a client cannot free space through S3")
            ballast.unlink()
            print(f"  removed the {BALLAST // 1024} KiB ballast file by hand", flush=True)
        filler.unlink()
        for key in doomed:
            run.s3.delete_object(Bucket=BUCKET, Key=key)
            del run.stored[key]
        for key, upload_id in opened:
            run.s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
        df = shutil.disk_usage(mnt)
        print(f"  deleted {max(2, len(big) // 2)} objects with DeleteObject: "
              f"{df.free // 1024} KiB free", flush=True)
        ok = run.put("again/single", 8 * MIB, "sse-c")
        ok = run.put("again/small", 1000, "sse-s3") and ok
        ok = run.multipart("again/multipart", "sse-kms", [5 * MIB, 123]) and ok
        if not ok:
            run.fail("uploads still refused after space was freed")
        run.verify_all("after freeing space")
        if "panicked" in run.srv.stderr():
            run.fail("the server panicked")
        code = run.srv.stop()
        if code != 0:
            run.fail(f"exit status {code} after SIGTERM")
    except Exception as e:  # noqa: BLE001
        run.fail(f"harness error: {type(e).__name__}: {e}")
    finally:
        if run.srv and run.srv.alive():
            run.srv.kill()
        unmount()
    print()
    for f in run.failures:
        print(f"FAIL {f}")
    print(f"diskfull: {run.errors_507} writes refused with 507 InsufficientStorage, "
          f"{len(run.stored)} objects intact at the end, failed checks {len(run.failures)} "
          f"({time.monotonic() - t0:.0f}s, {fs})")
    if run.failures:
        print(f"diskfull: server log kept: {work / 'server.log'}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
