"""Shared pieces of the reliability suite (issue 7): the real `coffer server` on a data
directory (the `Server` of tests/lib/coffer_server.py, as this suite's root), the blob files
on disk, and the object
format's layout (spec/object-format.md) for the tamper cases.

Nothing here talks to the server's internals: the harness sees what an operator sees — the
process, its stdout lines (`endpoint: …`, `ca-bundle: …`, `ready`, the start-up sweep line),
its stderr log, and the files under the data directory.
"""

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from coffer_server import Server, StartError  # noqa: E402,F401

ACCESS_KEY = "COFFERRELIABILITYKEY"
SECRET_KEY = "coffer-reliability-root-secret-0123456789"
MIB = 1 << 20


def start_server(binary, data_dir, log_path=None, first_start=True, extra_args=(),
                 ready_timeout=120):
    """`coffer server` on `data_dir` as this suite's root (the one `Server` of the Python
    suites, tests/lib/coffer_server.py); stderr to `log_path`, outside the data directory."""
    return Server(binary, data_dir, credentials=(ACCESS_KEY, SECRET_KEY),
                  first_start=first_start, log_path=log_path, extra_args=extra_args,
                  ready_timeout=ready_timeout)


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
