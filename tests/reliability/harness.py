"""Shared pieces of the reliability suite (issue 7): start and stop the real `coffer server`
binary on a data directory, boto3 clients for it, the blob files on disk, and the object
format's layout (spec/object-format.md) for the tamper cases.

Nothing here talks to the server's internals: the harness sees what an operator sees — the
process, its stdout lines (`endpoint: …`, `ca-bundle: …`, `ready`, the start-up sweep line),
its stderr log, and the files under the data directory.
"""

import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

ACCESS_KEY = "COFFERRELIABILITYKEY"
SECRET_KEY = "coffer-reliability-root-secret-0123456789"
MIB = 1 << 20

SWEEP_RE = re.compile(r"removed (\d+) interrupted write\(s\) and (\d+) uncommitted blob\(s\)")


class StartError(Exception):
    """The server exited (or never printed `ready`) instead of starting."""

    def __init__(self, msg, code, stdout, stderr):
        super().__init__(msg)
        self.code, self.stdout, self.stderr = code, stdout, stderr


class Server:
    """One `coffer server` process on `data_dir` (HTTPS with the CA it generates).

    `first_start=True` passes the root credentials in the environment (they are stored on
    first start); later starts run with a clean environment and must find them in the
    database. stderr goes to `log_path` (outside the data directory)."""

    def __init__(self, binary, data_dir, log_path=None, first_start=True, extra_args=(),
                 ready_timeout=120):
        self.binary = str(Path(binary).resolve())
        self.data = Path(data_dir)
        self.log_path = Path(log_path) if log_path else Path(
            tempfile.mkdtemp(prefix="coffer-rel-log-")) / "stderr.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COFFER_"))}
        if first_start:
            env["COFFER_ROOT_ACCESS_KEY"] = ACCESS_KEY
            env["COFFER_ROOT_SECRET_KEY"] = SECRET_KEY
        self.cwd = Path(tempfile.mkdtemp(prefix="coffer-rel-cwd-"))
        log = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [self.binary, "server", "--data-dir", str(self.data), "--listen", "127.0.0.1:0",
             *extra_args],
            cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=log, text=True,
            # Its own process group, so a SIGKILL of the server never reaches the harness.
            start_new_session=True,
        )
        log.close()
        self.lines = []
        ready = threading.Event()

        def reader():
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                if line.strip() == "ready":
                    ready.set()
            ready.set()

        threading.Thread(target=reader, daemon=True).start()
        ready.wait(ready_timeout)
        if not any(l.strip() == "ready" for l in self.lines):
            code = self.proc.poll()
            if code is None:
                self.proc.kill()
                code = self.proc.wait()
            shutil.rmtree(self.cwd, ignore_errors=True)
            raise StartError(f"server did not start (exit {code})", code, list(self.lines),
                             self.stderr())
        self.ready_seconds = time.monotonic() - self.started_at
        self.endpoint = self.value("endpoint")
        self.ca = self.value("ca-bundle")

    def value(self, name):
        for l in self.lines:
            if l.startswith(name + ": "):
                return l.split(": ", 1)[1].strip()
        return None

    def sweep(self):
        """(staging files, uncommitted blobs) the start-up sweep removed (0, 0 if silent)."""
        for l in self.lines:
            m = SWEEP_RE.search(l)
            if m:
                return int(m.group(1)), int(m.group(2))
        return 0, 0

    def stderr(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        """SIGKILL: no shutdown code runs."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        shutil.rmtree(self.cwd, ignore_errors=True)

    def stop(self, timeout=30):
        """SIGTERM, then wait; returns the exit status (SIGKILL after `timeout`)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        shutil.rmtree(self.cwd, ignore_errors=True)
        return code

    def client(self, read_timeout=120):
        return client(self.endpoint, self.ca, read_timeout=read_timeout)


def client(endpoint, ca, read_timeout=120):
    """A boto3 S3 client that never retries (a retry would blur what was acknowledged, and
    hide a first failure). botocore's `max_attempts` counts retries; `total_max_attempts`
    counts attempts."""
    session = boto3.session.Session()
    return session.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name="us-east-1", verify=ca,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"total_max_attempts": 1, "mode": "standard"},
                      connect_timeout=10, read_timeout=read_timeout,
                      max_pool_connections=4))


# --------------------------------------------------------------------------------------------
# Blob files on disk
# --------------------------------------------------------------------------------------------


def blob_files(data_dir):
    """Every file under <data>/blobs/<fan>/ (names are random UUIDs; staging files carry a
    `#` suffix)."""
    root = Path(data_dir) / "blobs"
    if not root.is_dir():
        return []
    return sorted(p for fan in root.iterdir() if fan.is_dir() for p in fan.iterdir())


def committed_blobs(data_dir):
    return [p for p in blob_files(data_dir) if "#" not in p.name]


def staging_files(data_dir):
    return [p for p in blob_files(data_dir) if "#" in p.name]


# --------------------------------------------------------------------------------------------
# Object layout (spec/object-format.md, spec/wrapped-key.md)
# --------------------------------------------------------------------------------------------

CHUNK = 16384
ENC_CHUNK = CHUNK + 16
PREFIX = 24 + 32  # salt || commitment
TRAILER = 40


class Layout:
    """Byte regions of one stored object (a blob file)."""

    def __init__(self, blob):
        assert blob[:6] == b"COFFER", "not a Coffer object"
        self.total = len(blob)
        self.header_len = struct.unpack(">I", blob[8:12])[0]
        wk = 12
        id_len = blob[wk + 5]
        ct_len = struct.unpack(">H", blob[wk + 23 + id_len: wk + 25 + id_len])[0]
        self.wrapped = (wk, wk + 25 + id_len + ct_len)
        m = self.wrapped[1]
        meta_len = struct.unpack(">I", blob[m:m + 4])[0]
        self.metadata = (m + 4, m + 4 + meta_len)
        assert self.metadata[1] == self.header_len, "header fields do not end at header_len"
        self.salt = (self.header_len, self.header_len + 24)
        self.commitment = (self.header_len + 24, self.header_len + PREFIX)
        payload = self.total - self.header_len - TRAILER
        self.n_full = (payload - PREFIX) // ENC_CHUNK
        self.final_len = payload - PREFIX - self.n_full * ENC_CHUNK
        assert 16 <= self.final_len <= ENC_CHUNK - 1, "final chunk length out of range"
        self.n_chunks = self.n_full + 1
        self.trailer = (self.total - TRAILER, self.total)
        self.plain_len = self.n_full * CHUNK + self.final_len - 16

    def chunk(self, k):
        """(start, end) of encrypted chunk k (ciphertext || tag) in the file."""
        start = self.header_len + PREFIX + k * ENC_CHUNK
        end = start + (ENC_CHUNK if k < self.n_full else self.final_len)
        return start, end

    def plain_range(self, k):
        """Plaintext byte range (inclusive start, exclusive end) of chunk k."""
        return k * CHUNK, min((k + 1) * CHUNK, self.plain_len)
