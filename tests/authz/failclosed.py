#!/usr/bin/env python3
"""The audit trail is fail-closed (issue 5): when the audit log cannot be written, requests
fail and nothing changes.

The data directory's `audit/` is a small tmpfs (mounted before the first start; needs root —
CI runs as root), too small for the log's 4 MiB preallocation. After some normal requests
the remaining space is filled and cheap requests are made until the log's last page is full,
so the next audit write fails for real (ENOSPC). Then:
  - a PutObject of a new key and a DeleteObject of an existing key are refused (503), and so
    is every later request (the log stays failed until the server restarts);
  - after freeing the space and restarting, the new key does not exist, the old object is
    still there with its content, and `coffer audit verify` reports the log intact — the
    failed write left no partial record;
  - readiness (issue 17, the ops listener's /health/ready) is 200 before, 503 naming the
    audit trail once its filesystem is full (before and after the log fails), 200 again after
    the restart; liveness stays 200.

Usage: python3 tests/authz/failclosed.py --coffer path/to/coffer
Prints `failclosed: N passed, M failed`; exits 77 (skipped) if no tmpfs can be mounted.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "s3"))
from compat import Checks, Server  # noqa: E402

import requests  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

OPS = ["--ops-listen", "127.0.0.1:0"]


def health(server, what):
    r = requests.get(f"{server.value('ops').split()[0]}/health/{what}", verify=server.ca, timeout=30)
    return r.status_code, r.json()


def code_of(fn):
    try:
        fn()
        return "ok"
    except ClientError as e:
        return e.response.get("Error", {}).get("Code") or str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coffer", required=True)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="coffer-failclosed-"))
    audit = root / "data" / "audit"
    audit.mkdir(parents=True)
    os.chmod(root / "data", 0o700)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(audit)], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"failclosed: SKIPPED: cannot mount a tmpfs ({r.stderr.strip()})")
        shutil.rmtree(root, ignore_errors=True)
        return 77
    checks = Checks()
    check = checks.check
    server = None
    try:
        server = Server(args.coffer, root, extra_args=OPS)
        s3 = server.client()
        with check("readiness: 200 while the audit trail can be written"):
            assert health(server, "ready") == (200, {"status": "ready", "problems": []}), health(server, "ready")
        s3.create_bucket(Bucket="bkt")
        s3.put_object(Bucket="bkt", Key="old", Body=b"old content")
        # Fill what is left of the audit filesystem.
        with open(audit / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError:
                pass
        with check("readiness: 503 naming the audit trail once its filesystem is full; liveness 200"):
            status, body = health(server, "ready")
            assert status == 503 and body["status"] == "not ready", (status, body)
            assert any(p.startswith("audit:") and "full" in p for p in body["problems"]), body
            assert health(server, "live")[0] == 200
        # The log's current page (and any room preallocated on a larger filesystem) still
        # takes records: cheap requests until the first refusal.
        with check("requests are refused (503) once the audit log cannot take a record"):
            for i in range(20000):
                c = code_of(lambda: s3.head_bucket(Bucket="bkt"))
                if c != "ok":
                    break
            assert c in ("ServiceUnavailable", "503"), f"after {i} HEADs: {c}"
        with check("readiness: still 503 after the log failed closed"):
            status, body = health(server, "ready")
            assert status == 503 and any(p.startswith("audit:") for p in body["problems"]), (status, body)
        with check("PutObject refused with 503 ServiceUnavailable when the audit log cannot be written"):
            c = code_of(lambda: s3.put_object(Bucket="bkt", Key="new", Body=b"new content"))
            assert c in ("ServiceUnavailable", "503"), c
        with check("DeleteObject refused too"):
            c = code_of(lambda: s3.delete_object(Bucket="bkt", Key="old"))
            assert c in ("ServiceUnavailable", "503"), c
        with check("and GetObject (every request needs its record)"):
            c = code_of(lambda: s3.get_object(Bucket="bkt", Key="old"))
            assert c in ("ServiceUnavailable", "503", "InternalError"), c
        server.check_stop()
        server = None
        os.remove(audit / "filler")
        server = Server(args.coffer, root, extra_args=OPS)
        s3 = server.client()
        with check("readiness: 200 again after the space is freed and the server restarted"):
            assert health(server, "ready")[0] == 200, health(server, "ready")
        with check("after restart: the refused PutObject left no object"):
            c = code_of(lambda: s3.head_object(Bucket="bkt", Key="new"))
            assert c in ("404", "NoSuchKey"), c
        with check("after restart: the refused DeleteObject deleted nothing"):
            body = s3.get_object(Bucket="bkt", Key="old")["Body"].read()
            assert body == b"old content", body
        server.check_stop()
        server = None
        with check("coffer audit verify: the log is intact (no partial record)"):
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COFFER_"))}
            p = subprocess.run([args.coffer, "audit", "verify", "--data-dir", str(root / "data")], capture_output=True, text=True, env=env)
            assert p.returncode == 0, p.stdout + p.stderr
    finally:
        if server is not None:
            server.kill()
        subprocess.run(["umount", str(audit)], capture_output=True)
    print(f"failclosed: {len(checks.passed)} passed, {len(checks.failed)} failed")
    if not checks.failed:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
