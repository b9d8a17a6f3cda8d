#!/usr/bin/env python3
"""Tampering with stored data (issue 7): with the server stopped, change what it stored on
disk, restart it, GET — and require that nothing altered or foreign is ever returned.

Blob cases (one data directory, one fresh object per case):
  - a bit flip in every region of an object (spec/object-format.md): the header's fixed part,
    the wrapped data key, the encrypted metadata block, the salt, the key commitment, the
    first, a middle and the final chunk, a chunk's tag and the trailer — at several offsets,
    for SSE-S3, SSE-KMS and SSE-C objects;
  - two chunks swapped, a chunk duplicated over its neighbour, a chunk spliced in from
    another object (same offset), a header and a trailer taken from another object;
  - truncation (at a chunk boundary, mid-chunk, the trailer cut off, to zero bytes), the blob
    file deleted, extension (one byte, one whole chunk);
  - the blob file replaced by another object's blob, by an older version of the same key, two
    objects' blobs exchanged;
  - a large object (> the 4 MiB single-read size, several 2 MiB read windows) and a multipart
    object: damage past the first window, a part blob replaced by a sibling part.
Each object is put into the running server; its blob is the one file that PUT added under
<data>/blobs. Then the server is stopped (SIGTERM), all cases are applied, the server is
started again and every case is read: the full object, a range inside the damaged chunk, the
first 100 bytes, a suffix range (`bytes=-100`) and, for damage confined to chunks, a range in
an intact chunk.

Verdict per request: `error` (an error status), `cut` (the body ends before Content-Length),
`authentic` (success with exactly the original bytes) or `ALTERED` (success, or a cut body,
carrying bytes that differ from the original). A case is detected when the full GET and every
request whose range touches the damage fail (error or cut), and no request returned altered
bytes. A range that does not touch the damage must succeed, with authentic bytes only — that
is how random access works (only the chunks covering a range are decrypted); a refused
undamaged range fails the case as `REFUSED`. After each case the
bystander objects (other buckets, all three SSE modes) must still be served intact.

Database cases (one copy of a stopped server's data directory per case): a byte flipped in
each page of server.db (SQLCipher, page-authenticated), and server.db replaced by another
server's database. Detected means the server refuses to start, or every request that touches
the damaged page fails; nothing returned may differ from what was stored.

Prints `tamper: N tamper cases detected out of M tried` (+ altered / undetected counts); exit
status 1 unless all are detected and none altered.

Usage: python3 tests/reliability/tamper.py --coffer target/debug/coffer [--seed S]
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import CHUNK, ENC_CHUNK, MIB, Layout  # noqa: E402

BUCKET = "tamper"
BYSTAND = "bystand"
SSE_C_KEY = hashlib.sha256(b"coffer tamper sse-c key").digest()
SSE_C = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSE_C_KEY}
MODES = {
    "sse-s3": ({"ServerSideEncryption": "AES256"}, {}),
    "sse-kms": ({"ServerSideEncryption": "aws:kms"}, {}),
    "sse-c": (SSE_C, SSE_C),
}
SMALL = 5 * CHUNK + 1000          # six chunks: 0..4 full, 5 the final one
LARGE = 6 * MIB + 1000            # > 4 MiB: read in 2 MiB windows (128 chunks each)
PART = 5 * MIB

ALL = "all"


def flip(path, offset, bit):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        assert len(b) == 1, f"offset {offset} beyond {path}"
        f.seek(offset)
        f.write(bytes([b[0] ^ (1 << bit)]))


class Case:
    """One stored object (or a set) damaged one way, and the requests that read it back."""

    def __init__(self, name, key, mode, body, blob, affected):
        self.failed_ids = []
        self.name, self.key, self.mode, self.body, self.blob = name, key, mode, body, blob
        self.affected = affected  # ALL, or a set of plaintext chunk indices
        self.layout = Layout(blob.read_bytes()) if blob and blob.exists() else None
        self.apply = None          # set by the case builder: edits the files
        # [(label, get kwargs, (start, end), must_fail)]; must_fail False: the range does not
        # touch the damage and must be answered with the authentic bytes.
        self.requests = None
        self.extra = []            # other damaged cases' objects read with this one
        self.results = []
        self.verdict = None

    def default_requests(self):
        n = len(self.body)
        reqs = [("full", {}, (0, n), True)]

        def touches(lo, hi):
            if self.affected == ALL:
                return True
            return any(k * CHUNK < hi and lo < (k + 1) * CHUNK for k in self.affected)

        if self.affected != ALL:
            k = min(self.affected)
            lo, hi = k * CHUNK, min((k + 1) * CHUNK, n)
            if hi > lo:
                reqs.append((f"chunk {k}", {"Range": f"bytes={lo}-{hi - 1}"}, (lo, hi), True))
        reqs.append(("bytes=0-99", {"Range": "bytes=0-99"}, (0, 100), touches(0, 100)))
        reqs.append(("bytes=-100", {"Range": "bytes=-100"}, (n - 100, n), touches(n - 100, n)))
        if self.affected != ALL:
            intact = [k for k in range(n // CHUNK) if k not in self.affected]
            if intact:
                k = intact[len(intact) // 2]
                lo, hi = k * CHUNK + 10, k * CHUNK + 5000
                reqs.append((f"intact chunk {k}", {"Range": f"bytes={lo}-{hi - 1}"}, (lo, hi),
                             False))
        return reqs


LAST_REQUEST_ID = [None]


def read(s3, bucket, key, read_kw, get_kw):
    """('error', status code, b'') | ('cut', status, prefix) | ('ok', status, body).
    The request id the server answered with (x-amz-request-id) is left in LAST_REQUEST_ID."""
    LAST_REQUEST_ID[0] = None
    try:
        r = s3.get_object(Bucket=bucket, Key=key, **read_kw, **get_kw)
    except ClientError as e:
        st = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        LAST_REQUEST_ID[0] = e.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-request-id")
        return "error", f"{st} {e.response.get('Error', {}).get('Code')}", b""
    LAST_REQUEST_ID[0] = r["ResponseMetadata"].get("HTTPHeaders", {}).get("x-amz-request-id")
    status = r["ResponseMetadata"]["HTTPStatusCode"]
    want = r.get("ContentLength")
    got = bytearray()
    try:
        for c in r["Body"].iter_chunks(1 << 16):
            got += c
    except Exception as e:  # noqa: BLE001 - the connection was cut mid-body
        return "cut", f"{status} then {type(e).__name__}", bytes(got)
    if want is not None and len(got) != want:
        return "cut", f"{status} short body", bytes(got)
    return "ok", str(status), bytes(got)


def judge(case, s3):
    """Reads every request of the case; sets case.verdict to detected/undetected/ALTERED/REFUSED."""
    read_kw = MODES[case.mode][1]
    altered = False
    undetected = False
    refused = False
    for label, get_kw, (lo, hi), must_fail in case.requests:
        kind, status, data = read(s3, BUCKET, case.key, read_kw, get_kw)
        expect = case.body[lo:hi]
        if kind == "ok":
            if data != expect:
                altered = True
                kind = "ALTERED"
            else:
                kind = "authentic"
                if must_fail:
                    undetected = True
        elif kind == "cut":
            if data != expect[:len(data)]:
                altered = True
                kind = "ALTERED (cut)"
        if kind in ("error", "cut"):
            case.failed_ids.append(LAST_REQUEST_ID[0])
            if not must_fail:
                refused = True
                kind += " (undamaged range)"
        case.results.append((label, kind, status, len(data)))
    case.verdict = ("ALTERED" if altered else "undetected" if undetected
                    else "REFUSED" if refused else "detected")
    return case.verdict


# --------------------------------------------------------------------------------------------
# Building the cases
# --------------------------------------------------------------------------------------------


class Builder:
    def __init__(self, srv, data, rng):
        self.srv, self.data, self.rng = srv, data, rng
        self.s3 = srv.client()
        self.n = 0
        self.cases = []

    def put(self, key, body, mode):
        """Puts one object and returns the blob file that PUT added."""
        before = set(harness.committed_blobs(self.data))
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body, **MODES[mode][0])
        new = [p for p in harness.committed_blobs(self.data) if p not in before]
        assert len(new) == 1, f"PUT {key} added {len(new)} blob files"
        return new[0]

    def case(self, name, mode="sse-s3", size=SMALL, affected=ALL):
        self.n += 1
        key = f"case/{self.n:03d}"
        body = os.urandom(size)
        blob = self.put(key, body, mode)
        c = Case(name, key, mode, body, blob, affected)
        self.cases.append(c)
        return c

    def flips(self):
        for mode in MODES:
            probe = self.case("probe", mode)  # only to learn this mode's layout
            self.cases.remove(probe)
            L = probe.layout
            w0, w1 = L.wrapped
            id_len = probe.blob.read_bytes()[w0 + 5]
            m0, m1 = L.metadata
            c0 = L.chunk(0)
            mid = L.chunk(2)
            fin = L.chunk(L.n_chunks - 1)
            t0, t1 = L.trailer
            spots = [
                ("header fixed part: magic", 0, ALL),
                ("header fixed part: version", 6, ALL),
                ("header fixed part: suite", 7, ALL),
                ("header fixed part: header_len", 11, ALL),
                ("wrapped key: kind", w0 + 4, ALL),
                ("wrapped key: key id", w0 + 6, ALL),
                ("wrapped key: key version", w0 + 6 + id_len + 3, ALL),
                ("wrapped key: nonce", w0 + 11 + id_len, ALL),
                ("wrapped key: ct_len", w0 + 24 + id_len, ALL),
                ("wrapped key: ciphertext", (w0 + 25 + id_len + w1) // 2, ALL),
                ("wrapped key: tag", w1 - 1, ALL),
                ("metadata block: length", m0 - 1, ALL),
                ("metadata block: nonce", m0, ALL),
                ("metadata block: ciphertext", (m0 + 12 + m1) // 2, ALL),
                ("metadata block: tag", m1 - 1, ALL),
                ("salt: first byte", L.salt[0], ALL),
                ("salt: last byte", L.salt[1] - 1, ALL),
                ("commitment: first byte", L.commitment[0], ALL),
                ("commitment: last byte", L.commitment[1] - 1, ALL),
                ("first chunk: first byte", c0[0], {0}),
                ("first chunk: middle", (c0[0] + c0[1]) // 2, {0}),
                ("middle chunk (2): middle", (mid[0] + mid[1]) // 2, {2}),
                ("final chunk: first byte", fin[0], {L.n_chunks - 1}),
                ("tag of chunk 0", c0[1] - 1, {0}),
                ("tag of chunk 2", mid[1] - 8, {2}),
                ("tag of the final chunk", fin[1] - 1, {L.n_chunks - 1}),
                ("trailer: nonce", t0, ALL),
                ("trailer: ciphertext", t0 + 14, ALL),
                ("trailer: tag", t1 - 1, ALL),
            ]
            for label, off, affected in spots:
                c = self.case(f"{mode}: bit flip, {label}", mode, affected=affected)
                assert c.layout.header_len == L.header_len, "header length varies within a mode"
                bit = self.rng.randrange(8)
                c.apply = (lambda c=c, off=off, bit=bit: flip(c.blob, off, bit))

    def structural(self):
        donor_key = "donor/1"
        donor_body = os.urandom(SMALL)
        donor = self.put(donor_key, donor_body, "sse-s3")
        donor_bytes = donor.read_bytes()
        DL = Layout(donor_bytes)
        self.donors = [(donor_key, donor_body)]

        c = self.case("swap chunks 1 and 2", affected={1, 2})
        def swap(c=c):
            b = bytearray(c.blob.read_bytes())
            (a0, a1), (b0, b1) = c.layout.chunk(1), c.layout.chunk(2)
            b[a0:a1], b[b0:b1] = bytes(b[b0:b1]), bytes(b[a0:a1])
            c.blob.write_bytes(bytes(b))
        c.apply = swap

        c = self.case("chunk 1 duplicated over chunk 2", affected={2})
        def dup(c=c):
            b = bytearray(c.blob.read_bytes())
            (a0, a1), (b0, b1) = c.layout.chunk(1), c.layout.chunk(2)
            b[b0:b1] = bytes(b[a0:a1])
            c.blob.write_bytes(bytes(b))
        c.apply = dup

        c = self.case("chunk 2 spliced from another object (same offset)", affected={2})
        def splice(c=c):
            b = bytearray(c.blob.read_bytes())
            s0, s1 = c.layout.chunk(2)
            d0, d1 = DL.chunk(2)
            assert s1 - s0 == d1 - d0 and s0 == d0
            b[s0:s1] = donor_bytes[d0:d1]
            c.blob.write_bytes(bytes(b))
        c.apply = splice

        c = self.case("header (wrapped key + metadata) from another object")
        def header(c=c):
            b = bytearray(c.blob.read_bytes())
            h = c.layout.header_len
            assert h == DL.header_len
            b[:h] = donor_bytes[:h]
            c.blob.write_bytes(bytes(b))
        c.apply = header

        c = self.case("trailer from another object of the same length")
        def trailer(c=c):
            b = bytearray(c.blob.read_bytes())
            b[-40:] = donor_bytes[-40:]
            c.blob.write_bytes(bytes(b))
        c.apply = trailer

        def truncate_to(c, n):
            with open(c.blob, "r+b") as f:
                f.truncate(n)

        c = self.case("truncated at a chunk boundary (after chunk 2)")
        c.apply = lambda c=c: truncate_to(c, c.layout.chunk(2)[1])
        c = self.case("truncated mid-chunk (inside chunk 3)")
        c.apply = lambda c=c: truncate_to(c, c.layout.chunk(3)[0] + 7000)
        c = self.case("trailer cut off (truncated at the end of the final chunk)")
        c.apply = lambda c=c: truncate_to(c, c.layout.trailer[0])
        c = self.case("truncated to zero bytes")
        c.apply = lambda c=c: truncate_to(c, 0)
        c = self.case("blob file deleted")
        c.apply = lambda c=c: c.blob.unlink()

        def extend(c, data):
            with open(c.blob, "ab") as f:
                f.write(data)

        c = self.case("extended by one byte")
        c.apply = lambda c=c: extend(c, b"\0")
        c = self.case("extended by a whole encrypted chunk")
        c.apply = lambda c=c: extend(c, os.urandom(ENC_CHUNK))
        c = self.case("extended by a copy of its own final chunk and trailer")
        c.apply = lambda c=c: extend(c, c.blob.read_bytes()[c.layout.chunk(c.layout.n_chunks - 1)[0]:])

        c = self.case("blob replaced by another object's blob (same size)")
        c.apply = lambda c=c: c.blob.write_bytes(donor_bytes)

        other = os.urandom(3 * CHUNK + 5)
        other_blob = self.put("donor/2", other, "sse-s3")
        other_bytes = other_blob.read_bytes()
        self.donors.append(("donor/2", other))
        c = self.case("blob replaced by another object's blob (other size)")
        c.apply = lambda c=c: c.blob.write_bytes(other_bytes)

        # An older version of the same key: its blob is deleted when v2 commits, so keep a
        # copy of its bytes first.
        self.n += 1
        key = f"case/{self.n:03d}"
        v1_body = os.urandom(SMALL)
        v1_bytes = self.put(key, v1_body, "sse-s3").read_bytes()
        v2_body = os.urandom(SMALL)
        v2_blob = self.put(key, v2_body, "sse-s3")
        c = Case("blob replaced by an older version of the same key (rollback)", key, "sse-s3",
                 v2_body, v2_blob, ALL)
        c.apply = lambda c=c: c.blob.write_bytes(v1_bytes)
        self.cases.append(c)

        a = self.case("blobs of two objects exchanged (first)")
        b = self.case("blobs of two objects exchanged (second)")
        def exchange(a=a, b=b):
            x, y = a.blob.read_bytes(), b.blob.read_bytes()
            a.blob.write_bytes(y)
            b.blob.write_bytes(x)
        a.apply = exchange
        b.apply = lambda: None

        c = self.case("SSE-KMS object's blob replaced by an SSE-S3 object's", "sse-kms")
        c.apply = lambda c=c: c.blob.write_bytes(donor_bytes)
        c = self.case("SSE-C object's blob replaced by another SSE-C object's (same key)", "sse-c")
        c_donor = self.put("donor/3", os.urandom(SMALL), "sse-c").read_bytes()
        c.apply = lambda c=c: c.blob.write_bytes(c_donor)

    def large(self):
        # Damage past the first 2 MiB window: the status line is already sent when it is met,
        # so the full GET must be cut (and carry only authentic bytes before the cut).
        for mode in ("sse-s3", "sse-kms"):
            c = self.case(f"{mode}: large object, bit flip in chunk 200 (third window)", mode,
                          LARGE, affected={200})
            c.apply = lambda c=c: flip(c.blob, (c.layout.chunk(200)[0] + c.layout.chunk(200)[1]) // 2, 3)
        c = self.case("large object, bit flip in its final chunk", "sse-s3", LARGE,
                      affected={LARGE // CHUNK})
        c.apply = lambda c=c: flip(c.blob, c.layout.chunk(c.layout.n_chunks - 1)[0] + 3, 0)
        c = self.case("large object, bit flip in the trailer", "sse-c", LARGE)
        c.apply = lambda c=c: flip(c.blob, c.layout.trailer[0] + 20, 5)
        c = self.case("large object, bit flip in the wrapped key", "sse-kms", LARGE)
        c.apply = lambda c=c: flip(c.blob, c.layout.wrapped[1] - 3, 1)
        c = self.case("large object, truncated by one chunk", "sse-s3", LARGE)
        c.apply = lambda c=c: open(c.blob, "r+b").truncate(c.layout.total - ENC_CHUNK)

    def multipart(self):
        for label in ("bit flip in the middle of part 2", "part 2's blob replaced by part 1's",
                      "part 3's blob deleted"):
            self.n += 1
            key = f"case/{self.n:03d}"
            body = os.urandom(2 * PART + 100_000)
            before = set(harness.committed_blobs(self.data))
            up = self.s3.create_multipart_upload(Bucket=BUCKET, Key=key, **MODES["sse-s3"][0])
            parts, blobs = [], []
            for n, off in enumerate(range(0, len(body), PART), start=1):
                r = self.s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up["UploadId"],
                                        PartNumber=n, Body=body[off:off + PART])
                parts.append({"PartNumber": n, "ETag": r["ETag"]})
                now = set(harness.committed_blobs(self.data))
                new = [p for p in now if p not in before]
                assert len(new) == 1
                blobs.append(new[0])
                before = now
            self.s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up["UploadId"],
                                              MultipartUpload={"Parts": parts})
            c = Case(f"multipart object: {label}", key, "sse-s3", body, blobs[1], ALL)
            n = len(body)
            p2 = (PART, 2 * PART)
            c.requests = [
                ("full", {}, (0, n), True),
                ("partNumber=2", {"PartNumber": 2}, p2, True),
                ("part 2, first 100 bytes", {"Range": f"bytes={PART}-{PART + 99}"},
                 (PART, PART + 100), True),
                ("part 1", {"PartNumber": 1}, (0, PART), False),
                ("bytes=0-99", {"Range": "bytes=0-99"}, (0, 100), False),
            ]
            if label.startswith("bit flip"):
                c.apply = lambda c=c: flip(c.blob, c.layout.chunk(160)[0] + 99, 2)
                c.requests[2] = ("part 2, chunk 160", {"Range": f"bytes={PART + 160 * CHUNK}-"
                                                       f"{PART + 161 * CHUNK - 1}"},
                                 (PART + 160 * CHUNK, PART + 161 * CHUNK), True)
            elif label.startswith("part 2"):
                c.apply = lambda c=c, b1=blobs[0]: c.blob.write_bytes(b1.read_bytes())
            else:
                c.blob = blobs[2]
                c.requests = [
                    ("full", {}, (0, n), True),
                    ("partNumber=3", {"PartNumber": 3}, (2 * PART, n), True),
                    ("bytes=-100", {"Range": "bytes=-100"}, (n - 100, n), True),
                    ("part 1", {"PartNumber": 1}, (0, PART), False),
                ]
                c.apply = lambda c=c: c.blob.unlink()
            self.cases.append(c)


# --------------------------------------------------------------------------------------------
# Database cases
# --------------------------------------------------------------------------------------------


def db_server(binary, root, name, objects):
    """A stopped server's data directory holding `objects` [(bucket, key, body, mode)] and an
    open multipart upload; returns its path."""
    data = root / name
    srv = harness.start_server(binary, data, log_path=root / f"{name}.log")
    try:
        s3 = srv.client()
        for b in sorted({o[0] for o in objects}):
            s3.create_bucket(Bucket=b)
        for bucket, key, body, mode in objects:
            s3.put_object(Bucket=bucket, Key=key, Body=body, **MODES[mode][0])
        up = s3.create_multipart_upload(Bucket=objects[0][0], Key="open-upload")
        s3.upload_part(Bucket=objects[0][0], Key="open-upload", UploadId=up["UploadId"],
                       PartNumber=1, Body=b"x" * 1000)
    finally:
        code = srv.stop()
    assert code == 0, f"{name}: exit {code} after SIGTERM"
    return data


def db_cases(binary, root, rng, max_pages):
    objects = [("db1", f"obj/{i}", os.urandom(size), mode)
               for i, (size, mode) in enumerate([(1000, "sse-s3"), (70_000, "sse-kms"),
                                                 (5000, "sse-c"), (0, "sse-s3")])]
    objects.append(("db2", "other", os.urandom(3000), "sse-s3"))
    base = db_server(binary, root, "db-base", objects)
    other = db_server(binary, root, "db-other", [("db1", "obj/0", os.urandom(1000), "sse-s3")])
    db = base / "server.db"
    size = db.stat().st_size
    page = 4096
    pages = size // page
    leftovers = [p.name for p in base.iterdir() if p.name.startswith("server.db-")]
    chosen = list(range(pages))
    if len(chosen) > max_pages:
        chosen = sorted([0, pages - 1] + rng.sample(range(1, pages - 1), max_pages - 2))
    results = []

    def run(label, edit):
        d = root / f"db-case-{len(results)}"
        shutil.copytree(base, d)
        edit(d)
        try:
            srv = harness.start_server(binary, d, log_path=root / f"db-case-{len(results)}.log",
                                 first_start=False, ready_timeout=60)
        except harness.StartError as e:
            last = [l for l in e.stderr.strip().splitlines() if l.strip()][-1:]
            results.append((label, "detected", f"refused to start: {' '.join(last)[:160]}"))
            shutil.rmtree(d, ignore_errors=True)
            return
        verdict, notes = "undetected", []
        try:
            s3 = srv.client()
            fails = 0
            for bucket, key, body, mode in objects:
                kind, status, data = read(s3, bucket, key, MODES[mode][1], {})
                if kind == "ok" and data != body:
                    verdict = "ALTERED"
                    notes.append(f"{bucket}/{key}: altered body")
                elif kind != "ok":
                    fails += 1
                    notes.append(f"{bucket}/{key}: {kind} {status}")
            # Every table and index the server has: buckets, objects, uploads and parts,
            # read and written (credentials are read at start).
            def upload_cycle():
                ups = s3.list_multipart_uploads(Bucket="db1").get("Uploads", [])
                for u in ups:
                    s3.list_parts(Bucket="db1", Key=u["Key"], UploadId=u["UploadId"])
                    s3.abort_multipart_upload(Bucket="db1", Key=u["Key"], UploadId=u["UploadId"])
                up = s3.create_multipart_upload(Bucket="db1", Key="mp")
                e = s3.upload_part(Bucket="db1", Key="mp", UploadId=up["UploadId"],
                                   PartNumber=1, Body=b"part")["ETag"]
                s3.complete_multipart_upload(Bucket="db1", Key="mp", UploadId=up["UploadId"],
                                             MultipartUpload={"Parts": [{"PartNumber": 1,
                                                                         "ETag": e}]})
            for name, call in (
                    ("ListBuckets", lambda: s3.list_buckets()),
                    ("ListObjectsV2", lambda: s3.list_objects_v2(Bucket="db1")),
                    ("HeadBucket", lambda: s3.head_bucket(Bucket="db2")),
                    ("multipart list/abort/create/complete", upload_cycle),
                    ("PutObject", lambda: s3.put_object(Bucket="db1", Key="after", Body=b"a")),
                    ("DeleteObject", lambda: s3.delete_object(Bucket="db1", Key="obj/0")),
                    ("CreateBucket+DeleteBucket", lambda: (s3.create_bucket(Bucket="db3"),
                                                           s3.delete_bucket(Bucket="db3")))):
                try:
                    call()
                except ClientError as e:
                    fails += 1
                    notes.append(f"{name}: {e.response.get('Error', {}).get('Code')}")
            if verdict != "ALTERED" and fails:
                verdict = "detected"
        finally:
            srv.stop()
        results.append((label, verdict, "; ".join(notes)[:200] or "every request succeeded"))
        shutil.rmtree(d, ignore_errors=True)

    for p in chosen:
        off = p * page + rng.randrange(page)
        bit = rng.randrange(8)
        run(f"server.db: bit flip in page {p + 1} of {pages} (offset {off})",
            lambda d, off=off, bit=bit: flip(d / "server.db", off, bit))
    run("server.db replaced by another server's database",
        lambda d: shutil.copyfile(other / "server.db", d / "server.db"))
    return results, pages, leftovers


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--coffer", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--db-pages", type=int, default=1000,
                    help="largest number of server.db pages to flip (sampled beyond)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="coffer-tamper-"))
    data = root / "data"
    log = root / "server.log"
    t0 = time.monotonic()
    print(f"tamper: seed {seed}, work {root}", flush=True)

    srv = harness.start_server(args.coffer, data, log_path=log)
    s3 = srv.client()
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket=BYSTAND)
    bystanders = []
    for i, (size, mode) in enumerate([(1234, "sse-s3"), (40_000, "sse-kms"), (777, "sse-c"),
                                      (LARGE, "sse-kms")]):
        body = os.urandom(size)
        s3.put_object(Bucket=BYSTAND, Key=f"keep/{i}", Body=body, **MODES[mode][0])
        bystanders.append((f"keep/{i}", body, mode))
    b = Builder(srv, data, rng)
    b.flips()
    b.structural()
    b.large()
    b.multipart()
    cases = b.cases
    print(f"tamper: {len(cases)} objects stored ({time.monotonic() - t0:.0f}s)", flush=True)
    for c in cases:
        if c.requests is None:
            c.requests = c.default_requests()
    code = srv.stop()
    assert code == 0, f"exit {code} after SIGTERM"

    for c in cases:
        c.apply()
    srv = harness.start_server(args.coffer, data, log_path=log, first_start=False)
    s3 = srv.client()
    failures = []

    def bystanders_ok(after):
        for key, body, mode in bystanders[:3]:
            kind, status, got = read(s3, BYSTAND, key, MODES[mode][1], {})
            if kind != "ok" or got != body:
                failures.append(f"bystander {key} after {after}: {kind} {status}")

    for c in cases:
        judge(c, s3)
        if not srv.alive():
            failures.append(f"the server died during case {c.name!r}")
            break
        bystanders_ok(c.name)
    for key, body, mode in bystanders:
        kind, status, got = read(s3, BYSTAND, key, MODES[mode][1], {})
        if kind != "ok" or got != body:
            failures.append(f"bystander {key} at the end: {kind} {status}")
    for key, body in b.donors:
        kind, status, got = read(s3, BUCKET, key, {} if key != "donor/3" else SSE_C, {})
        if kind != "ok" or got != body:
            failures.append(f"untouched donor {key}: {kind} {status}")
    integrity_logged = srv.stderr().count("integrity check")
    panicked = "panicked" in srv.stderr()
    srv.stop()
    if panicked:
        failures.append(f"the server panicked (log: {log})")

    # Every GET that failed on tampered data has an audit record naming the integrity error.
    audited = {}
    for f in sorted((Path(data) / "audit").glob("audit-*.jsonl")):
        for line in f.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("phase") == "response" and rec.get("outcome") == "failure":
                audited.setdefault(rec.get("request_id"), set()).add(rec.get("error_code"))
    failed_gets = [(c, rid) for c in cases if c.verdict == "detected" for rid in c.failed_ids]
    recorded = sum(1 for _, rid in failed_gets if "IntegrityError" in audited.get(rid, ()))
    for c, rid in failed_gets:
        if "IntegrityError" not in audited.get(rid, ()):
            failures.append(f"{c.name}: failed GET {rid} has no IntegrityError audit record "
                            f"(recorded: {sorted(audited.get(rid, ()), key=str)})")

    for c in cases:
        mark = {"detected": "ok  ", "undetected": "MISS", "ALTERED": "BAD ",
                "REFUSED": "BAD "}[c.verdict]
        print(f"{mark} {c.name} [{c.key}]")
        print("       " + "; ".join(f"{l}: {k} {s}" for l, k, s, _ in c.results))
        if c.verdict != "detected":
            failures.append(f"{c.name}: {c.verdict}: {c.results}")

    print(f"tamper: blob cases read back ({time.monotonic() - t0:.0f}s)", flush=True)
    db_results, pages, leftovers = db_cases(args.coffer, root, rng, args.db_pages)
    print(f"server.db: {pages} pages of 4096 bytes; files beside it after SIGTERM: "
          f"{leftovers or 'none'}")
    for label, verdict, note in db_results:
        mark = {"detected": "ok  ", "undetected": "MISS", "ALTERED": "BAD "}[verdict]
        print(f"{mark} {label}: {note}")
        if verdict != "detected":
            failures.append(f"{label}: {verdict}: {note}")

    tried = len(cases) + len(db_results)
    detected = sum(c.verdict == "detected" for c in cases) + sum(
        v == "detected" for _, v, _ in db_results)
    altered = sum(c.verdict == "ALTERED" for c in cases) + sum(
        v == "ALTERED" for _, v, _ in db_results)
    requests = sum(len(c.results) for c in cases)
    print()
    for f in failures:
        print(f"FAIL {f}")
    print(f"tamper: {len(cases)} blob cases ({requests} GETs), {len(db_results)} database "
          f"cases; server log: {integrity_logged} integrity errors logged; audit trail: "
          f"{recorded} of {len(failed_gets)} failed GETs recorded as IntegrityError")
    print(f"tamper: {detected} tamper cases detected out of {tried} tried, altered bytes "
          f"returned {altered}, undetected {tried - detected - altered}, failed checks "
          f"{len(failures)} ({time.monotonic() - t0:.0f}s, seed {seed})")
    if failures or args.keep:
        print(f"tamper: work directory kept: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
