#!/usr/bin/env bash
# Regenerates fuzz/fixtures and fuzz/seeds/<target>/ from spec/testkit (small vectors only;
# the output is committed). Needs python3. Usage: fuzz/make_seeds.sh
set -euo pipefail
cd "$(dirname "$0")"
rm -rf seeds fixtures
mkdir -p seeds/header_parse seeds/wrapped_key_decode seeds/object_decrypt fixtures
python3 - <<'PY'
import json, struct

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

# object_decrypt mode 0 (raw): 0x00 || u16 len || canonical(context) || object.
raw = ["len-0", "len-1", "empty-context", "len-16383", "len-16385", "truncated-header",
       "truncated-empty-final-chunk", "truncated-after-first-chunk", "trailer-wrong-checksum",
       "swapped-chunks", "extended-one-byte", "metadata-map-not-canonical", "dek-not-32-bytes",
       "header-len-too-small"]
for i, name in enumerate(raw):
    v = objects[name]
    ctx = canonical(v["context"])
    sel = (i * 4) & 0xFC  # mode 0, varied range selectors
    write("object_decrypt", "raw-" + name, bytes([sel]) + struct.pack(">H", len(ctx)) + ctx + bytes.fromhex(v["object"]))
# mode 1 (XOR mask at a u24 offset): no-op, header byte, a chunk tag, the trailer.
n = len(fixture)
for name, off, mask in [("noop", 0, b"\x00"), ("magic", 0, b"\x01"), ("salt", header_len(fixture) + 3, b"\x80"),
                        ("chunk0-tag", header_len(fixture) + 56 + 16384 + 5, b"\x04"), ("trailer", n - 1, b"\x01")]:
    write("object_decrypt", "xor-" + name, bytes([0x01]) + off.to_bytes(3, "big") + mask)
# mode 2 (edits: op, u16 offset, arg): truncate in the trailer, delete a byte, append, copy.
write("object_decrypt", "edit-truncate", bytes([0x02, 4, (n - 20) >> 8, (n - 20) & 0xFF, 0]))
write("object_decrypt", "edit-delete", bytes([0x06, 3, 0, 200, 0]))
write("object_decrypt", "edit-append", bytes([0x0a, 5, 0, 0, 15]))
write("object_decrypt", "edit-copy-tail", bytes([0x0e, 6, (n - 40) >> 8, (n - 40) & 0xFF, 0]))
c0 = header_len(fixture) + 56
write("object_decrypt", "edit-dup-chunk", bytes([0x12, 7, c0 >> 8, c0 & 0xFF, 0]))
PY
du -sh seeds fixtures
