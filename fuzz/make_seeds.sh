#!/usr/bin/env bash
# Regenerates fuzz/fixtures and fuzz/seeds/<target>/: the coffer-format targets' from
# spec/testkit (small vectors only), the server header targets' from hand-written valid and
# edge-case headers. The output is committed. Needs python3. Usage: fuzz/make_seeds.sh
# Only these six targets' seeds are generated (and replaced); the hand-written seeds of
# policy_parse, kms_json and audit_record are left alone.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf seeds/header_parse seeds/wrapped_key_decode seeds/object_decrypt seeds/sse_headers \
    seeds/kms_context seeds/range_headers fixtures
mkdir -p seeds/header_parse seeds/wrapped_key_decode seeds/object_decrypt seeds/sse_headers \
    seeds/kms_context seeds/range_headers fixtures
python3 - <<'PY'
import base64, hashlib, json, struct

def canonical(m):
    out = struct.pack(">H", len(m))
    for k in sorted(m, key=lambda k: k.encode()):
        kb, vb = k.encode(), m[k].encode()
        out += struct.pack(">H", len(kb)) + kb + struct.pack(">I", len(vb)) + vb
    return out

def write(target, name, data):
    with open(f"seeds/{target}/{name}", "wb") as f:
        f.write(data)

objects = {v["name"]: v for v in json.load(open("../spec/testkit/objects.json"))["vectors"]}
wrapped = json.load(open("../spec/testkit/wrapped-key.json"))["vectors"]

fixture = bytes.fromhex(objects["len-16385"]["object"])
open("fixtures/len-16385.bin", "wb").write(fixture)

def header_len(obj):
    return struct.unpack(">I", obj[8:12])[0]

# header_parse: exact headers of valid objects, headers of header-level reject vectors, and
# a few raw prefixes (fixed part only, header plus payload bytes).
for name, v in objects.items():
    obj = bytes.fromhex(v["object"])
    if name.startswith(("len-0", "len-1", "empty-context")) or "header" in name or "metadata" in name \
            or "wrapped-key" in name or name in ("dek-not-32-bytes", "bitflip-magic", "bitflip-version", "bitflip-suite"):
        h = header_len(obj)
        write("header_parse", name, obj[:h] if 12 <= h <= 4096 else obj[:400])
write("header_parse", "fixed-only", fixture[:12])
write("header_parse", "header-plus-payload", fixture[:400])

# wrapped_key_decode: every wrapped-key vector followed by its canonical context (the target
# unwraps with the map that follows), the DEKs of two objects, and canonical maps.
for v in wrapped:
    write("wrapped_key_decode", "wk-" + v["name"], bytes.fromhex(v["wrapped"]) + canonical(v["context"]))
for name in ("len-0", "empty-context"):
    v = objects[name]
    obj = bytes.fromhex(v["object"])
    id_len = obj[12 + 5]
    ct_len = struct.unpack(">H", obj[12 + 23 + id_len:12 + 25 + id_len])[0]
    wk = obj[12:12 + 25 + id_len + ct_len]
    write("wrapped_key_decode", "dek-" + name, wk + canonical(v["context"]))
write("wrapped_key_decode", "map-empty", canonical({}))
write("wrapped_key_decode", "map-context", canonical(objects["len-0"]["context"]))
write("wrapped_key_decode", "map-metadata", canonical(objects["len-0"]["metadata"]))

# object_decrypt: byte 0 = mode and range selector, bytes 1-4 = the second range (kind,
# u16 first, span/131; kind bit 2 opens its chunks one by one in reverse), then the mode's data.
second = [bytes([0, 0, 0, 0]), bytes([4, 0x3F, 0xFF, 1]), bytes([1, 0x40, 0, 0]), bytes([2, 0, 0, 200]),
          bytes([5, 0, 100, 0]), bytes([3, 0, 1, 0]), bytes([6, 0, 0, 126]), bytes([0, 0x3F, 0xF0, 2])]
def od(name, head, data, i):
    write("object_decrypt", name, bytes([head]) + second[i % len(second)] + data)
# mode 0 (raw): u16 len || canonical(context) || object.
raw = ["len-0", "len-1", "empty-context", "len-16383", "len-16385", "truncated-header",
       "truncated-empty-final-chunk", "truncated-after-first-chunk", "trailer-wrong-checksum",
       "swapped-chunks", "extended-one-byte", "metadata-map-not-canonical", "dek-not-32-bytes",
       "header-len-too-small"]
for i, name in enumerate(raw):
    v = objects[name]
    ctx = canonical(v["context"])
    sel = (i * 4) & 0xFC  # mode 0, varied range selectors
    od("raw-" + name, sel, struct.pack(">H", len(ctx)) + ctx + bytes.fromhex(v["object"]), i)
# mode 1 (XOR mask at a u24 offset): no-op, header byte, a chunk tag, the trailer.
n = len(fixture)
for i, (name, off, mask) in enumerate([("noop", 0, b"\x00"), ("magic", 0, b"\x01"),
                                       ("salt", header_len(fixture) + 3, b"\x80"),
                                       ("chunk0-tag", header_len(fixture) + 56 + 16384 + 5, b"\x04"),
                                       ("trailer", n - 1, b"\x01")]):
    od("xor-" + name, 0x01 | (i * 12), off.to_bytes(3, "big") + mask, i + 3)
# mode 2 (edits: op, u16 offset, arg): truncate in the trailer, delete a byte, append, copy.
c0 = header_len(fixture) + 56
for i, (name, head, data) in enumerate([
        ("edit-truncate", 0x02, bytes([4, (n - 20) >> 8, (n - 20) & 0xFF, 0])),
        ("edit-delete", 0x06, bytes([3, 0, 200, 0])),
        ("edit-append", 0x0a, bytes([5, 0, 0, 15])),
        ("edit-copy-tail", 0x0e, bytes([6, (n - 40) >> 8, (n - 40) & 0xFF, 0])),
        ("edit-dup-chunk", 0x12, bytes([7, c0 >> 8, c0 & 0xFF, 0])),
        ("edit-flip-chunk1", 0x16, bytes([0, (c0 + 16400 + 3) >> 8, (c0 + 16400 + 3) & 0xFF, 1]))]):
    od(name, head, data, i + 1)

# sse_headers: flags (bit 0 secure, bits 1-2 bucket default none/AES256/aws:kms+key/aws:kms,
# bit 3 raw key bytes to base64, bit 4 MD5 derived from the key, bit 5 pad), presence mask
# (sse, kms key id, kms context, c algorithm, c key, c key MD5), fields joined by "\n".
key = bytes(range(0x20, 0x40))
b64 = lambda b: base64.b64encode(b).decode()
kkey, kmd5 = b64(key), b64(hashlib.md5(key).digest())
ctx_blue = b64(b'{"team":"blue"}')
def sse(name, flags, fields):
    present = sum(1 << i for i, f in enumerate(fields) if f is not None)
    body = "\n".join(f or "" for f in fields).encode()
    write("sse_headers", name, bytes([flags, present]) + body)
N = None
sse("none", 1, [N] * 6)
sse("none-http", 0, [N] * 6)
sse("default-aes256", 1 | 2, [N] * 6)
sse("default-kms-key", 1 | 4, [N] * 6)
sse("default-kms", 1 | 6, [N] * 6)
sse("sse-s3", 1, ["AES256", N, N, N, N, N])
sse("sse-s3-with-kms-key", 1, ["AES256", "alias/x", N, N, N, N])
sse("sse-kms", 1, ["aws:kms", N, N, N, N, N])
sse("sse-kms-key-context", 1, ["aws:kms", "alias/team", ctx_blue, N, N, N])
sse("sse-kms-bad-context", 1, ["aws:kms", N, "%%%", N, N, N])
sse("kms-key-without-sse", 1, [N, "alias/x", N, N, N, N])
sse("unknown-sse", 1, ["aws:kms:dsse", N, N, N, N, N])
sse("ssec", 1, [N, N, N, "AES256", kkey, kmd5])
sse("ssec-raw-derived", 1 | 8 | 16, [N, N, N, "AES256", key.decode(), ""])
sse("ssec-padded", 1 | 8 | 16 | 32, [N, N, N, "AES256", key.decode(), ""])
sse("ssec-http", 8 | 16, [N, N, N, "AES256", key.decode(), ""])
sse("ssec-wrong-md5", 1, [N, N, N, "AES256", kkey, b64(hashlib.md5(b"other").digest())])
sse("ssec-short-key", 1 | 8 | 16, [N, N, N, "AES256", key[:16].decode(), ""])
sse("ssec-long-key", 1 | 8 | 16, [N, N, N, "AES256", (key + b"!").decode(), ""])
sse("ssec-no-md5", 1, [N, N, N, "AES256", kkey, N])
sse("ssec-no-algorithm", 1, [N, N, N, N, kkey, kmd5])
sse("ssec-lowercase-algorithm", 1, [N, N, N, "aes256", kkey, kmd5])
sse("ssec-with-sse-kms", 1, ["aws:kms", N, N, "AES256", kkey, kmd5])
sse("ssec-with-kms-key", 1, [N, "alias/x", N, "AES256", kkey, kmd5])
sse("ssec-unpadded-key", 1, [N, N, N, "AES256", kkey.rstrip("="), kmd5])

# kms_context: mode byte (0 header text, 1 JSON to base64, 2 NUL-separated pairs, 3 JSON to
# URL-safe base64; bit 2 pads with whitespace), then the mode's data.
def kc(name, mode, data):
    write("kms_context", name, bytes([mode]) + data)
kc("header-team", 0, ctx_blue.encode())
kc("header-empty-object", 0, b64(b"{}").encode())
kc("header-not-base64", 0, b"%%%")
kc("header-array", 0, b64(b"[1,2]").encode())
kc("header-number-value", 0, b64(b'{"n":1}').encode())
kc("header-empty", 0, b"")
kc("header-empty-name", 0, b64(b'{"":"x"}').encode())
kc("header-long-name", 0, b64(b'{"' + b"n" * 1025 + b'":"x"}').encode())
kc("pairs-empty-name", 2 | 4, b"\0")
kc("json-two", 1, b'{"a":"b","c":"d"}')
kc("json-padded", 1 | 4, b' { "k" : "v" } ')
kc("json-duplicate", 1, b'{"a":"1","a":"2"}')
kc("json-nested", 1, b'{"a":{"b":"c"}}')
kc("json-escapes", 1, b'{"\\u0000":"\\ud83d\\ude00","q":"\\"\\\\\\/\\b\\f\\n\\r\\t"}')
kc("json-lone-surrogate", 1, b'{"a":"\\ud800"}')
kc("json-arn", 1, b'{"aws:s3:arn":"arn:aws:s3:::other/key"}')
kc("json-trailing", 1, b'{"a":"b"} x')
kc("pairs", 2, b"aws:s3:arn\0arn:aws:s3:::b/k\0team\0blue")
kc("pairs-controls", 2 | 4, b"\x01\x7f\0\"\\\0\0empty-name")
kc("urlsafe", 3, b'{"a?>":"~~~"}')

# range_headers: byte 0 = size index (bits 0-4; past the table, the size follows as a u64) and
# bit 7 = generated mode (kind, u64 a, u64 b); else the header text.
SIZES = [0, 1, 2, 3, 15, 16, 100, 16383, 16384, 16385, 32768, 65536, 1 << 20, 5 << 30,
         (5 << 40) - 1, 1 << 32, (1 << 63) - 2, (1 << 63) - 1, 1 << 63, (1 << 63) + 1,
         2**64 - 3, 2**64 - 2, 2**64 - 1, 10]
def rh(name, size, text):
    write("range_headers", name, bytes([SIZES.index(size)]) + text.encode())
rh("first-byte", 1, "bytes=0-0")
rh("whole", 16385, "bytes=0-")
rh("bounded", 16385, "bytes=100-16384")
rh("past-end", 100, "bytes=50-1000")
rh("start-at-end", 100, "bytes=100-")
rh("start-past-end", 100, "bytes=101-200")
rh("suffix", 16385, "bytes=-1")
rh("suffix-longer", 16, "bytes=-100")
rh("suffix-zero", 16, "bytes=-0")
rh("suffix-empty", 16, "bytes=-")
rh("suffix-of-empty", 0, "bytes=-1")
rh("range-of-empty", 0, "bytes=0-0")
rh("reversed", 100, "bytes=5-4")
rh("u64-max", 2**64 - 1, "bytes=0-18446744073709551615")
rh("i64-max", (1 << 63) - 1, "bytes=9223372036854775806-9223372036854775807")
rh("past-i64", 2**64 - 1, "bytes=9223372036854775808-")
rh("overflow", 2**64 - 1, "bytes=0-99999999999999999999")
rh("multiple", 100, "bytes=1-2,3-4")
rh("space", 100, "bytes= 1-2")
rh("plus", 100, "bytes=+1-2")
rh("unit", 100, "items=0-1")
rh("no-dash", 100, "bytes=5")
rh("empty", 100, "")
rh("leading-zeros", 100, "bytes=000-099")
write("range_headers", "explicit-size", bytes([31]) + (12345).to_bytes(8, "big") + b"bytes=12344-12345")
for i, kind in enumerate(range(5)):
    write("range_headers", f"generated-{kind}", bytes([0x80 | (i * 5 % 24)]) + bytes([kind])
          + (16383 + i).to_bytes(8, "big") + (2**64 - 1 - i).to_bytes(8, "big"))
PY
du -sh seeds fixtures
