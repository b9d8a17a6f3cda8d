#!/usr/bin/env python3
"""Independent check of the audit-log vectors (spec/testkit/audit-log.json).

A second implementation of spec/audit-log.md §3-§9, written from the spec with Python's
standard library only (json, hashlib, hmac): for each vector's log directory it verifies every
record (canonical form, seq, chain, hash, MAC), the file sequence and the anchor, and compares
its verdict with the one the vector records (`intact`, `records`, `last_seq`, and the first
bad record's file, line and seq). An auditor can run it on a real log directory too:

    python3 spec/testkit/audit_check.py                       # the vectors
    python3 spec/testkit/audit_check.py --dir LOGDIR --key HEX  # a log (key: the audit MAC key)
"""
import argparse
import hashlib
import hmac
import json
import os
import re
import sys

FIELDS = ["v", "seq", "time", "request_id", "phase", "identity", "access_key", "source", "action",
          "resource", "key_id", "key_version", "context_keys", "context_values", "outcome",
          "error_code", "prev", "hash", "mac"]
ANCHOR_FIELDS = ["v", "seq", "hash", "file", "mac"]
ZERO = "0" * 64
MAX_LINE = 1 << 20
HEX64 = re.compile(r"[0-9a-f]{64}")
TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
LOG_NAME = re.compile(r"audit-(\d{6,})\.jsonl")
PAIRS = {("request", "pending"), ("response", "success"), ("response", "failure")}


def file_name(n):
    return f"audit-{n:06d}.jsonl"


def canonical(obj):
    """spec §3: no whitespace, escapes exactly as JSON's minimal set with lower-case \\u00xx,
    everything else literal. Python's json with ensure_ascii=False writes exactly that."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate member")
    return dict(pairs)


def is_u(x, bits):
    return type(x) is int and 0 <= x < (1 << bits)


def opt_str(x):
    return x is None or type(x) is str


class Bad(Exception):
    def __init__(self, file, line, seq, reason):
        super().__init__(reason)
        self.file, self.line, self.seq, self.reason = file, line, seq, reason


def parse_record(raw):
    """The record of one line (bytes, no newline), or a reason it is not a canonical v1
    record (spec §2, §3). Returns (record, None) or (None, reason)."""
    try:
        rec = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError):
        return None, "not a record"
    if not isinstance(rec, dict) or list(rec) != FIELDS:
        return None, "not a record"
    if rec["v"] != 1 or type(rec["v"]) is not int:
        return None, "unknown record version"
    ordered = dict(rec)
    if isinstance(rec["context_values"], dict):
        ordered["context_values"] = dict(sorted(rec["context_values"].items(),
                                                key=lambda kv: kv[0].encode()))
    try:
        again = canonical(ordered)
    except (TypeError, ValueError):
        return None, "not a record"
    if again != raw:
        return None, "not in canonical form"
    return rec, None


def field_problem(r):
    """spec §9 step 3's checks of a canonical record's fields."""
    if not is_u(r["seq"], 64) or r["seq"] < 1:
        return "seq"
    if type(r["time"]) is not str or not TIME.fullmatch(r["time"]):
        return "time"
    for f in ("request_id", "action"):
        if type(r[f]) is not str:
            return f
    if r["action"] == "":
        return "action"
    for f in ("identity", "access_key", "source", "resource", "key_id", "error_code"):
        if not opt_str(r[f]):
            return f
    if r["key_version"] is not None and not is_u(r["key_version"], 32):
        return "key_version"
    if (r["phase"], r["outcome"]) not in PAIRS:
        return "phase/outcome"
    keys = r["context_keys"]
    if not isinstance(keys, list) or any(type(k) is not str for k in keys):
        return "context_keys"
    if [k.encode() for k in keys] != sorted({k.encode() for k in keys}):
        return "context_keys not sorted and unique"
    cv = r["context_values"]
    if cv is not None and (not isinstance(cv, dict) or sorted(cv) != sorted(keys)
                           or any(type(v) is not str for v in cv.values())):
        return "context_values"
    for f in ("prev", "hash", "mac"):
        if type(r[f]) is not str or not HEX64.fullmatch(r[f]):
            return f
    return None


def body_of(r):
    return canonical({k: r[k] for k in FIELDS if k not in ("hash", "mac")})


def parse_anchor(raw, key):
    if not raw.endswith(b"\n"):
        return None
    try:
        a = json.loads(raw[:-1].decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(a, dict) or list(a) != ANCHOR_FIELDS or canonical(a) != raw[:-1]:
        return None
    if a["v"] != 1 or not is_u(a["seq"], 64) or type(a["hash"]) is not str \
            or type(a["file"]) is not str or not LOG_NAME.fullmatch(a["file"]) or type(a["mac"]) is not str:
        return None
    body = canonical({k: a[k] for k in ANCHOR_FIELDS[:-1]})
    want = hmac.new(key, b"coffer-audit/anchor/v1\n" + body, hashlib.sha256).hexdigest()
    return a if hmac.compare_digest(want, a["mac"]) else None


def verify(files, key):
    """`files`: name -> bytes of one log directory. Returns the verdict as the vectors record
    it: intact, records, last_seq, first_bad (file, line, seq)."""
    state = {"records": 0, "last_seq": 0}
    try:
        _verify(files, key, state)
        bad = None
    except Bad as b:
        bad = {"file": b.file, "line": b.line, "seq": b.seq, "reason": b.reason}
    return {"intact": bad is None, "records": state["records"], "last_seq": state["last_seq"],
            "first_bad": bad}


def _verify(files, key, st):
    anchor_raw = files.get("audit.head")
    numbers = sorted(int(m.group(1)) for n in files if (m := LOG_NAME.fullmatch(n)))
    if not numbers:
        raise Bad(file_name(1), 0, 1, "file missing")
    prev, expected = ZERO, 1
    where = {}  # seq -> (file, hash)
    last_file, last_lines = None, 0
    for i, n in enumerate(numbers):
        name = file_name(i + 1)
        if n != i + 1:
            raise Bad(name, 0, expected, "file missing")
        data = files[name]
        if data == b"" and i + 1 < len(numbers):
            raise Bad(name, 0, expected, "empty file before the last one")
        pieces = data.split(b"\n")
        complete, tail = pieces[:-1], pieces[-1]
        for ln, raw in enumerate(complete, start=1):
            if len(raw) > MAX_LINE:
                raise Bad(name, ln, expected, "line longer than 1 MiB")
            r, why = parse_record(raw)
            if r is None:
                raise Bad(name, ln, None, why)
            problem = field_problem(r)
            if problem:
                raise Bad(name, ln, r["seq"] if is_u(r["seq"], 64) else None, f"invalid {problem}")
            if r["seq"] != expected:
                raise Bad(name, ln, r["seq"], f"seq {r['seq']} where {expected} was expected")
            if r["prev"] != prev:
                raise Bad(name, ln, r["seq"], "chain broken")
            body = body_of(r)
            if hashlib.sha256(body).hexdigest() != r["hash"]:
                raise Bad(name, ln, r["seq"], "hash does not match")
            mac = hmac.new(key, b"coffer-audit/record/v1\n" + body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(mac, r["mac"]):
                raise Bad(name, ln, r["seq"], "MAC does not verify")
            where[r["seq"]] = (name, r["hash"])
            st["records"] += 1
            st["last_seq"] = r["seq"]
            prev, expected = r["hash"], expected + 1
        if tail:
            raise Bad(name, len(complete) + 1, expected, "incomplete last line")
        last_file, last_lines = name, len(complete)
    if anchor_raw is None:
        raise Bad("audit.head", 0, None, "anchor missing")
    a = parse_anchor(anchor_raw, key)
    if a is None:
        raise Bad("audit.head", 0, None, "anchor malformed or MAC does not verify")
    if st["last_seq"] < a["seq"]:
        raise Bad(last_file, last_lines + 1, st["last_seq"] + 1,
                  f"log truncated after seq {st['last_seq']}: the anchor records seq {a['seq']}")
    if a["seq"] == 0:
        if a["hash"] != ZERO or a["file"] != file_name(1):
            raise Bad("audit.head", 0, 0, "the anchor does not match the log")
    elif where.get(a["seq"]) != (a["file"], a["hash"]):
        raise Bad("audit.head", 0, a["seq"], "the anchor does not match the log")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vectors", default=os.path.join(os.path.dirname(__file__), "audit-log.json"))
    ap.add_argument("--dir", help="verify this log directory instead of the vectors")
    ap.add_argument("--key", help="the audit MAC key (hex), with --dir")
    args = ap.parse_args()
    if args.dir:
        files = {}
        for n in os.listdir(args.dir):
            if LOG_NAME.fullmatch(n) or n == "audit.head":
                with open(os.path.join(args.dir, n), "rb") as f:
                    files[n] = f.read()
        v = verify(files, bytes.fromhex(args.key))
        print(json.dumps(v))
        return 0 if v["intact"] else 1
    with open(args.vectors, encoding="utf-8") as f:
        doc = json.load(f)
    key = bytes.fromhex(doc["key"])
    passed, failed = 0, []
    for vec in doc["vectors"]:
        files = {n: t.encode("utf-8") for n, t in vec["files"].items()}
        got = verify(files, key)
        want = vec["expect"]
        same = (got["intact"] == want["intact"] and got["records"] == want["records"]
                and got["last_seq"] == want["last_seq"])
        if want["first_bad"] is not None and got["first_bad"] is not None:
            same &= all(got["first_bad"][k] == want["first_bad"][k] for k in ("file", "line", "seq"))
        else:
            same &= got["first_bad"] is None and want["first_bad"] is None
        if same:
            passed += 1
        else:
            failed.append(vec["name"])
            print(f"FAIL {vec['name']}\n  expected {json.dumps(want)}\n  got      {json.dumps(got)}")
    print(f"audit_check: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
