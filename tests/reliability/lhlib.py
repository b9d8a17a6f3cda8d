"""Shared pieces of tests/reliability/load.py and hostile.py: the server process, boto3
clients, a SigV4 signer with every knob exposed (date, region, signed headers, payload hash),
aws-chunked bodies, and raw HTTP/1.1 over TLS (bytes written exactly as given: lying
Content-Length, duplicated headers, control characters, slow senders).

Nothing here is specific to one test. The server process itself is the `Server` of
tests/lib/coffer_server.py, shared by every Python suite.
"""

import base64
import datetime as _dt
import hashlib
import json
import hmac
import re
import socket
import ssl
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from coffer_server import Server  # noqa: E402

ACCESS_KEY = "COFFERRELIABILITYKEY"
SECRET_KEY = "coffer-reliability-root-secret-0123456789"
REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MIB = 1 << 20


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------


def start_server(binary, root, extra_args=(), env_extra=None):
    """`coffer server` on `root/data`, working directory `root/cwd` (kept empty), stderr in
    `root/server-stderr.log`, as this suite's root (tests/lib/coffer_server.py)."""
    root = Path(root)
    return Server(binary, root / "data", credentials=(ACCESS_KEY, SECRET_KEY), cwd=root / "cwd",
                  log_path=root / "server-stderr.log", extra_args=extra_args,
                  env_extra=env_extra)


# --------------------------------------------------------------------------------------------
# SigV4 (own implementation so every field can be bent; checked against botocore at start)
# --------------------------------------------------------------------------------------------

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


def uri_encode(s, keep_slash=False):
    """AWS UriEncode: every byte but the unreserved set percent-encoded (upper-case hex)."""
    data = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s
    out = []
    for b in data:
        c = chr(b)
        if c in UNRESERVED or (keep_slash and c == "/"):
            out.append(c)
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


def amz_date(when=None):
    when = when or _dt.datetime.now(_dt.timezone.utc)
    return when.strftime("%Y%m%dT%H%M%SZ")


def signing_key(secret, datestamp, region=REGION, service="s3"):
    k = hmac.new(("AWS4" + secret).encode(), datestamp.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def hmac_hex(key, msg):
    return hmac.new(key, msg.encode() if isinstance(msg, str) else msg, hashlib.sha256).hexdigest()


def split_target(target):
    path, _, query = target.partition("?")
    return path, query


def canonical_query(query):
    """Canonical query string from an already-encoded query (`a=b&c`), as S3 computes it."""
    pairs = []
    for item in query.split("&") if query else []:
        k, _, v = item.partition("=")
        k = uri_encode(urllib.parse.unquote(k))
        v = uri_encode(urllib.parse.unquote(v))
        pairs.append((k, v))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def sign_headers(method, target, headers, payload_hash, *, host, access=ACCESS_KEY,
                 secret=SECRET_KEY, when=None, region=REGION, service="s3",
                 signed=None, algorithm="AWS4-HMAC-SHA256", canonical_path=None):
    """Returns `headers` plus Host, X-Amz-Date, X-Amz-Content-SHA256 and Authorization.
    `target` is the exact path+query sent; `signed` limits the signed header names;
    `canonical_path` overrides the path used in the canonical request."""
    h = {"Host": host}
    for k, v in headers.items():  # case-insensitive: a caller's x-amz-date replaces ours
        for existing in [e for e in h if e.lower() == k.lower()]:
            del h[existing]
        h[k] = v
    if not any(k.lower() == "x-amz-date" for k in h):
        h["X-Amz-Date"] = amz_date(when)
    for existing in [e for e in h if e.lower() == "x-amz-content-sha256"]:
        del h[existing]
    h["X-Amz-Content-SHA256"] = payload_hash
    date = next(v for k, v in h.items() if k.lower() == "x-amz-date")
    datestamp = date[:8]
    names = sorted({k.lower() for k in h} if signed is None else {k.lower() for k in signed})
    lower = {k.lower(): str(v) for k, v in h.items()}
    canon_headers = "".join(f"{n}:{' '.join(lower.get(n, '').split())}\n" for n in names)
    path, query = split_target(target)
    creq = "\n".join([method, canonical_path if canonical_path is not None else path,
                      canonical_query(query), canon_headers, ";".join(names), payload_hash])
    scope = f"{datestamp}/{region}/{service}/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac_hex(signing_key(secret, datestamp, region, service), sts)
    h["Authorization"] = (f"{algorithm} Credential={access}/{scope}, "
                          f"SignedHeaders={';'.join(names)}, Signature={sig}")
    return h, sig


def presign(method, target, *, host, expires=300, when=None, access=ACCESS_KEY,
            secret=SECRET_KEY, region=REGION):
    """A presigned target (path?query) as boto3 builds it (UNSIGNED-PAYLOAD, host signed)."""
    when = when or _dt.datetime.now(_dt.timezone.utc)
    date = amz_date(when)
    scope = f"{date[:8]}/{region}/s3/aws4_request"
    path, query = split_target(target)
    params = [p for p in query.split("&") if p] if query else []
    params += [f"X-Amz-Algorithm=AWS4-HMAC-SHA256",
               f"X-Amz-Credential={uri_encode(f'{access}/{scope}')}",
               f"X-Amz-Date={date}", f"X-Amz-Expires={expires}", "X-Amz-SignedHeaders=host"]
    q = "&".join(params)
    creq = "\n".join([method, path, canonical_query(q), f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"])
    sts = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    sig = hmac_hex(signing_key(secret, date[:8], region), sts)
    return f"{path}?{q}&X-Amz-Signature={sig}"


def self_check_signer():
    """Our signer must agree with botocore's S3SigV4Auth on a fixed request."""
    from unittest import mock
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    when = _dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=_dt.timezone.utc)
    body = b"signer self-check"
    url = "https://127.0.0.1:4443/bucket/a%20b/c~d?partNumber=1&uploadId=x%2By"
    req = AWSRequest(method="PUT", url=url, data=body, headers={"x-amz-meta-a": "  b  c "})
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: when.replace(tzinfo=None)):
        botocore.auth.S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
    ours, _ = sign_headers("PUT", "/bucket/a%20b/c~d?partNumber=1&uploadId=x%2By",
                           {"x-amz-meta-a": "  b  c "}, hashlib.sha256(body).hexdigest(),
                           host="127.0.0.1:4443", when=when)
    assert ours["Authorization"] == req.headers["Authorization"], (
        f"signer disagrees with botocore:\n ours {ours['Authorization']}\n boto {req.headers['Authorization']}")


# --------------------------------------------------------------------------------------------
# aws-chunked bodies
# --------------------------------------------------------------------------------------------


def chunk_signatures(data_chunks, seed_sig, secret, date, region=REGION):
    """Signatures of each chunk (then of the final empty chunk) in a
    STREAMING-AWS4-HMAC-SHA256-PAYLOAD body."""
    key = signing_key(secret, date[:8], region)
    scope = f"{date[:8]}/{region}/s3/aws4_request"
    prev, out = seed_sig, []
    for c in list(data_chunks) + [b""]:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", date, scope, prev, EMPTY_SHA256,
                         hashlib.sha256(c).hexdigest()])
        prev = hmac_hex(key, sts)
        out.append(prev)
    return out


def crc32_b64(data):
    import zlib
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


# --------------------------------------------------------------------------------------------
# Raw HTTP/1.1 over TLS
# --------------------------------------------------------------------------------------------


class Resp:
    def __init__(self, status, headers, body, raw_head=b""):
        self.status, self.headers, self.body, self.raw_head = status, headers, body, raw_head

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def _json(self):
        """The JSON error document of the KMS and admin APIs (`__type`, `message`), or None."""
        if not (self.body or b"").lstrip().startswith(b"{"):
            return None
        try:
            doc = json.loads(self.body)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    @property
    def code(self):
        doc = self._json()
        if doc is not None:
            t = doc.get("__type")
            return t.rsplit("#", 1)[-1] if isinstance(t, str) else None
        m = re.search(rb"<Code>([^<]*)</Code>", self.body or b"")
        return m.group(1).decode(errors="replace") if m else None

    @property
    def message(self):
        doc = self._json()
        if doc is not None:
            m = doc.get("message", doc.get("Message"))
            return m if isinstance(m, str) else None
        m = re.search(rb"<Message>([^<]*)</Message>", self.body or b"")
        return m.group(1).decode(errors="replace") if m else None

    def __repr__(self):
        return f"{self.status} {self.code or ''} {(self.message or '')[:100]}".strip()


class Closed(Exception):
    """The server closed (or reset) the connection without a complete response."""


class TimedOut(Exception):
    """No complete response within the client's own deadline."""


def connect(srv, timeout=30):
    sock = socket.create_connection((srv.host, srv.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return srv.ssl_context(http11_only=True).wrap_socket(sock, server_hostname=srv.host)


def read_response(sock, method="GET", deadline=30.0):
    """Reads one HTTP/1.1 response. Raises Closed or TimedOut."""
    end = time.monotonic() + deadline
    buf = b""

    def more():
        nonlocal buf
        left = end - time.monotonic()
        if left <= 0:
            raise TimedOut()
        sock.settimeout(left)
        try:
            d = sock.recv(65536)
        except socket.timeout:
            raise TimedOut()
        except (ConnectionError, ssl.SSLError, OSError) as e:
            raise Closed(f"{type(e).__name__}: {e}")
        if not d:
            raise Closed("EOF")
        buf += d

    while True:
        while b"\r\n\r\n" not in buf:
            try:
                more()
            except Closed as e:
                raise Closed(f"{e} before a complete status line/head ({len(buf)} bytes)")
        # Interim 1xx answers (100 Continue) precede the final one.
        if re.match(rb"HTTP/1\.[01] 1\d\d", buf) and not buf.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101")):
            buf = buf.partition(b"\r\n\r\n")[2]
            continue
        break
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        raise Closed(f"not an HTTP response: {lines[0][:80]!r}")
    status = int(m.group(1))
    headers = []
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        headers.append((k.decode("latin-1").strip(), v.decode("latin-1").strip()))
    r = Resp(status, headers, b"", head)
    buf = rest
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return r
    te = (r.header("transfer-encoding") or "").lower()
    cl = r.header("content-length")
    if "chunked" in te:
        body = b""
        while True:
            while b"\r\n" not in buf:
                more()
            line, _, buf = buf.partition(b"\r\n")
            n = int(line.split(b";")[0], 16)
            while len(buf) < n + 2:
                more()
            body += buf[:n]
            buf = buf[n + 2:]
            if n == 0:
                break
        r.body = body
    elif cl is not None:
        n = int(cl)
        while len(buf) < n:
            more()
        r.body = buf[:n]
    else:
        try:
            while True:
                more()
        except Closed:
            pass
        r.body = buf
    return r


def exchange(srv, data, method="GET", deadline=30.0, pieces=None, shutdown_write=False):
    """Sends `data` (bytes) on a new TLS connection, or `pieces`: a list of (bytes, delay
    before sending them). Returns a Resp; raises Closed or TimedOut."""
    try:
        sock = connect(srv, timeout=deadline)
    except (ConnectionError, ssl.SSLError, OSError) as e:
        raise Closed(f"connect/handshake: {type(e).__name__}: {e}")
    try:
        try:
            if pieces is None:
                sock.sendall(data)
            else:
                for chunk, delay in pieces:
                    if delay:
                        time.sleep(delay)
                    sock.sendall(chunk)
            if shutdown_write:
                # TLS has no half-close: close_notify is the closest (the server sees EOF).
                try:
                    sock.unwrap()
                except (ssl.SSLError, OSError):
                    pass
        except (ConnectionError, ssl.SSLError, OSError) as e:
            # The server may answer and close before it read everything we meant to send.
            try:
                return read_response(sock, method, deadline)
            except (Closed, TimedOut):
                raise Closed(f"while sending: {type(e).__name__}: {e}")
        return read_response(sock, method, deadline)
    finally:
        try:
            sock.close()
        except OSError:
            pass


def build_request(method, target, headers, body=b"", version="HTTP/1.1"):
    """Raw request bytes. `headers` is a list of (name, value) pairs (str or bytes), kept
    in order and with duplicates; nothing is added."""
    def b(x):
        return x if isinstance(x, bytes) else str(x).encode("latin-1")
    out = [b(method) + b" " + b(target) + b" " + b(version)]
    for k, v in headers:
        out.append(b(k) + b": " + b(v))
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    i = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[i]


def new_root(prefix):
    return Path(tempfile.mkdtemp(prefix=prefix))
