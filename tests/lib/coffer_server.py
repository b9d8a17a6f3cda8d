"""The one `Server` of the Python suites (tests/s3, tests/authz, tests/reliability): starts the
real `coffer server` binary, reads what an operator sees — its stdout lines (`endpoint: …`,
`ca-bundle: …`, `ready`, the start-up sweep line), its stderr log, its /proc entries — and
stops it. Nothing here talks to the server's internals.

Each suite adds its own clients and raw-request helpers on top; they import this module
with `sys.path.insert(0, <repo>/tests/lib)`.
"""

import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

SWEEP_RE = re.compile(r"removed (\d+) interrupted write\(s\) and (\d+) uncommitted blob\(s\)")


class StartError(Exception):
    """The server exited (or never printed `ready`) instead of starting."""

    def __init__(self, msg, code, stdout, stderr):
        super().__init__(msg)
        self.code, self.stdout, self.stderr = code, stdout, stderr


class Server:
    """One `coffer server` process on `data_dir`, listening on a free port of 127.0.0.1.

    `credentials=(access key, secret key)` are the root's, used by `client()`; with
    `first_start=True` they are passed in the environment (they are stored on first start),
    otherwise the server starts with a clean environment and must find them in its database. The working directory is `cwd` (created; a fresh temporary
    directory, removed on stop, when not given) — the server must leave it empty. stderr goes
    to `log_path` (a temporary file outside the data directory when not given). The process
    runs in its own session, so a signal to it never reaches the suite. Raises `StartError`
    when the server does not print `ready` within `ready_timeout` seconds."""

    def __init__(self, binary, data_dir, *, credentials, first_start=True, cwd=None,
                 log_path=None, extra_args=(), env_extra=None, ready_timeout=120):
        self.credentials = credentials
        self.binary = str(Path(binary).resolve())
        self.data = Path(data_dir)
        self._own_cwd = cwd is None
        self.cwd = Path(tempfile.mkdtemp(prefix="coffer-cwd-")) if cwd is None else Path(cwd)
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.log_path = Path(log_path) if log_path else Path(
            tempfile.mkdtemp(prefix="coffer-log-")) / "stderr.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COFFER_"))}
        if first_start:
            env["COFFER_ROOT_ACCESS_KEY"], env["COFFER_ROOT_SECRET_KEY"] = credentials
        env.update(env_extra or {})
        log = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [self.binary, "server", "--data-dir", str(self.data), "--listen", "127.0.0.1:0",
             *extra_args],
            cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=log, text=True, start_new_session=True)
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
            self._remove_cwd()
            raise StartError(f"server did not start (exit {code}): {self.lines}\n"
                             f"{self.stderr()[-3000:]}", code, list(self.lines), self.stderr())
        self.ready_seconds = time.monotonic() - self.started_at
        self.endpoint = self.value("endpoint")
        self.ca = self.value("ca-bundle")
        m = re.match(r"^(https?)://([^:/]+):(\d+)$", self.endpoint or "")
        assert m, f"endpoint line: {self.endpoint!r}"
        self.scheme, self.host, self.port = m.group(1), m.group(2), int(m.group(3))

    # -- what the process printed --------------------------------------------------------------

    def value(self, name):
        """The value of the first `name: value` line on stdout, or None."""
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

    def ssl_context(self, http11_only=False):
        """A TLS context trusting the server's CA; `http11_only` offers only HTTP/1.1 in ALPN
        (for raw requests written as HTTP/1.1 over the socket)."""
        ctx = ssl.create_default_context(cafile=self.ca)
        if http11_only:
            ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def client(self, access_key=None, secret_key=None, *, pool=10, read_timeout=120,
               session=None):
        """A boto3 S3 client (SigV4, path-style) as the root, or as `access_key`/`secret_key`.
        It never retries: a retry would blur what was acknowledged and hide a first failure
        (botocore's `max_attempts` counts retries; `total_max_attempts` counts attempts).
        Pass one `session` to make many clients quickly from one thread (it caches the
        service model). Thread-safe once made."""
        import boto3
        from botocore.config import Config
        ak, sk = self.credentials
        return (session or boto3.session.Session()).client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=access_key or ak,
            aws_secret_access_key=secret_key or sk, region_name="us-east-1",
            verify=self.ca if self.scheme == "https" else False,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          retries={"total_max_attempts": 1, "mode": "standard"},
                          max_pool_connections=pool, connect_timeout=20,
                          read_timeout=read_timeout, tcp_keepalive=True))

    # -- the process -------------------------------------------------------------------------

    def alive(self):
        return self.proc.poll() is None

    def cpu_seconds(self):
        """User + system CPU the server process has used (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def rss_mib(self):
        """Peak resident set size (VmHWM) so far, MiB."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def kill(self):
        """SIGKILL: no shutdown code runs."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._remove_cwd()

    def stop(self, timeout=40):
        """SIGTERM, then wait; returns the exit status (None: SIGKILLed after `timeout`)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        self._remove_cwd()
        return code

    def stop_problem(self, timeout=40):
        """SIGTERM: the server must exit 0 within `timeout` seconds with no panic in its log.
        Returns what went wrong, or None."""
        if not self.alive():
            return f"server already exited with {self.proc.returncode}"
        code = self.stop(timeout)
        if code is None:
            return f"no exit within {timeout} s of SIGTERM"
        if code != 0:
            return f"exit status {code} after SIGTERM"
        if "panicked" in self.stderr():
            return "the server log shows a panic"
        return None

    def _remove_cwd(self):
        if self._own_cwd:
            shutil.rmtree(self.cwd, ignore_errors=True)
