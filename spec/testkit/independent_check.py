#!/usr/bin/env python3
"""Independent check of the Coffer object format and wrapped-key vectors.

Written only from spec/object-format.md, spec/wrapped-key.md, spec/testkit/README.md and the
public C2SP chunked-encryption spec (https://c2sp.org/chunked-encryption), to cross-check the
Rust implementation. Dependencies: the Python standard library and `cryptography`.

Usage: independent_check.py [-v] [TESTKIT_DIR]   (default: this script's directory)
"""
import hmac
import json
import struct
import sys
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand


class Reject(Exception):
    """The input must be rejected (a MUST-reject rule of the specs)."""


# --- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), object-format.md §5 -------------
_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value


# --- Small helpers ---------------------------------------------------------------------------
class Cursor:
    """Bounds-checked big-endian reader: reading past the end is a Reject."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise Reject("input shorter than the lengths it announces")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int: return self.take(1)[0]
    def u16(self) -> int: return struct.unpack(">H", self.take(2))[0]
    def u32(self) -> int: return struct.unpack(">I", self.take(4))[0]


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def gcm_open(key: bytes, nonce: bytes, ct: bytes, aad: bytes, what: str) -> bytes:
    try:
        return AESGCM(key).decrypt(nonce, ct, aad)
    except InvalidTag:
        raise Reject(f"{what} fails to authenticate") from None


# --- Canonical map encoding, wrapped-key.md §5 -----------------------------------------------
def encode_map(m: dict) -> bytes:
    items = sorted((k.encode(), v.encode()) for k, v in m.items())  # ascending byte order
    out = struct.pack(">H", len(items))
    for k, v in items:
        out += struct.pack(">H", len(k)) + k + struct.pack(">I", len(v)) + v
    return out


def decode_map(data: bytes) -> dict:
    """Strict decoder: sorted, unique, non-empty names, bounded lengths, valid UTF-8, no trailing bytes."""
    cur = Cursor(data)
    count = cur.u16()
    if count > 1024:
        raise Reject("map count > 1024")
    out, prev = {}, None
    for _ in range(count):
        name = cur.take(cur.u16())
        value = cur.take(cur.u32())
        if not name or len(name) > 1024 or len(value) > 65536:
            raise Reject("map name empty/too long or value too long")
        if prev is not None and name <= prev:
            raise Reject("map names out of order or duplicated")
        prev = name
        try:
            out[name.decode("utf-8")] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject("map entry is not valid UTF-8") from None
    if cur.pos != len(data):
        raise Reject("trailing bytes after map")
    return out


# --- Wrapped key, wrapped-key.md §2-§7 -------------------------------------------------------
def unwrap(data: bytes, pos: int, wrapping_key: bytes, context: dict, standalone: bool):
    """Parse and unwrap the wrapped key at data[pos:]. Returns (plaintext, kind, key_id, key_version, end)."""
    cur = Cursor(data, pos)
    if cur.take(3) != b"CWK" or cur.u8() != 0x01:                      # §7.2
        raise Reject("wrapped key: bad magic or version")
    kind = cur.u8()
    if kind not in (1, 2, 3, 4, 5):                                    # §3, §7.2
        raise Reject(f"wrapped key: unknown kind {kind}")
    id_len = cur.u8()
    if id_len == 0:                                                    # §7.3
        raise Reject("wrapped key: id_len 0")
    key_id = cur.take(id_len)
    if kind in (1, 2, 5):                                              # §3: UTF-8 ids
        try:
            key_id.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject("wrapped key: key id is not UTF-8") from None
    key_version = cur.u32()
    if key_version == 0:                                               # §7.3
        raise Reject("wrapped key: key version 0")
    if cur.u8() != 0x01:                                               # §7.2 algorithm
        raise Reject("wrapped key: unknown algorithm")
    descriptor = data[pos:cur.pos]                                     # bytes 0 .. 11+id_len
    nonce = cur.take(12)
    ct_len = cur.u16()
    if not 17 <= ct_len <= 4112:                                       # §7.4
        raise Reject("wrapped key: ct_len out of range")
    ct = cur.take(ct_len)                                              # §7.1 (too short)
    if standalone and cur.pos != len(data):                            # §7.1 (too long)
        raise Reject("wrapped key: trailing bytes")
    aad = descriptor + encode_map(context)                             # §4
    plaintext = gcm_open(wrapping_key, nonce, ct, aad, "wrapped key")  # §6, §7.6
    return plaintext, kind, key_id, key_version, cur.pos


# --- Object, object-format.md ----------------------------------------------------------------
CHUNK = 16384
TAG = 16
ENC_CHUNK = CHUNK + TAG  # C = 16400, §6
C2SP_INFO = b"c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM\x00"


def decrypt_object(obj: bytes, wrapping_key: bytes, context: dict):
    """Returns (plaintext, metadata) or raises Reject."""
    ctx = encode_map(context)                                          # §2
    # §3 header; §7.1, §7.2
    cur = Cursor(obj)
    if cur.take(6) != b"COFFER" or cur.u8() != 0x01 or cur.u8() != 0x01:
        raise Reject("unknown magic, format version or suite")
    H = cur.u32()
    if H < 12 + 25 + 4 + 28 or H > 65536 or H > len(obj):            # §7.2, bound as written
        raise Reject("header_len out of range")
    header = obj[:H]  # parse the header fields inside header_len only
    dek, _kind, _kid, _kver, pos = unwrap(header, 12, wrapping_key, context, False)
    if len(dek) != 32:                                                 # §7.3
        raise Reject("DEK is not 32 bytes")
    cur = Cursor(header, pos)
    metadata_len = cur.u32()
    if metadata_len < 30:                                              # §3: encrypted empty map
        raise Reject("metadata_len < 30")
    block = cur.take(metadata_len)
    if cur.pos != H:
        raise Reject("header fields do not end exactly at header_len")
    aad = obj[:8]                                                      # §5: magic, version, suite
    # §5 metadata block; §7.4
    metadata_key = hkdf_expand(dek, b"coffer.object/v1 metadata\x00" + ctx, 32)
    metadata = decode_map(gcm_open(metadata_key, block[:12], block[12:], aad, "metadata block"))

    # §6 layout arithmetic; §7.5
    T = len(obj)
    if T < H + 56 + 16 + 40:
        raise Reject("object too short")
    P = T - H - 40
    n_full, f = divmod(P - 56, ENC_CHUNK)
    if not 16 <= f <= ENC_CHUNK - 1:
        raise Reject("final chunk length out of range (truncated or extended)")
    if n_full + 1 > 2**32:                                             # §4: at most 2^32 chunks
        raise Reject("too many chunks")
    L = n_full * CHUNK + (f - 16)

    # §4 payload = C2SP chunked-encryption v1; §7.6, §7.7
    salt, commitment = obj[H:H + 24], obj[H + 24:H + 56]
    okm = hkdf_expand(dek, C2SP_INFO + salt + ctx, 76)
    key, base_nonce, expected = okm[:32], okm[32:44], okm[44:]
    if not hmac.compare_digest(commitment, expected):                  # before any chunk
        raise Reject("commitment mismatch")
    aead, base = AESGCM(key), int.from_bytes(base_nonce, "big")
    parts, off = [], H + 56
    for k in range(n_full + 1):
        n = ENC_CHUNK if k < n_full else f
        nonce = (base ^ k).to_bytes(12, "big")                        # base_nonce XOR k
        try:
            parts.append(aead.decrypt(nonce, obj[off:off + n], b""))   # empty AAD
        except InvalidTag:
            raise Reject(f"chunk {k} fails to authenticate") from None
        off += n
    plaintext = b"".join(parts)
    assert off == T - 40 and len(plaintext) == L

    # §5 trailer; §7.8
    trailer_key = hkdf_expand(dek, b"coffer.object/v1 trailer\x00" + ctx, 32)
    tr = gcm_open(trailer_key, obj[T - 40:T - 28], obj[T - 28:], aad, "trailer")
    length, crc = struct.unpack(">QI", tr)
    if length != L:
        raise Reject(f"trailer length {length} != payload length {L}")
    if crc != crc32c(plaintext):
        raise Reject("trailer CRC-32C mismatch")
    return plaintext, metadata


# --- Vector checks (spec/testkit/README.md) -------------------------------------------------
def check_wrapped(v: dict) -> str:
    """Returns "" if the result matches the vector, else a description; raises Reject."""
    pt, kind, key_id, version, _ = unwrap(bytes.fromhex(v["wrapped"]), 0,
                                          bytes.fromhex(v["wrapping_key"]), v["context"], True)
    got = {"plaintext": pt.hex(), "kind": kind, "key_id": key_id.hex(), "key_version": version}
    want = {k: v[k].lower() if isinstance(v.get(k), str) else v.get(k) for k in got}
    return "; ".join(f"{k}: got {got[k]!r}, want {want[k]!r}" for k in got if got[k] != want[k])


def check_object(v: dict) -> str:
    pt, metadata = decrypt_object(bytes.fromhex(v["object"]),
                                  bytes.fromhex(v["wrapping_key"]), v["context"])
    errs = []
    if pt.hex() != v.get("plaintext", "").lower():
        errs.append(f"plaintext differs ({len(pt)} bytes, want {len(v.get('plaintext', '')) // 2})")
    if metadata != v.get("metadata"):
        errs.append(f"metadata: got {metadata!r}, want {v.get('metadata')!r}")
    return "; ".join(errs)


def main(argv: list) -> int:
    verbose = "-v" in argv
    args = [a for a in argv if a != "-v"]
    directory = Path(args[0]) if args else Path(__file__).resolve().parent
    passed = failed = 0
    for fname, fmt, check in (("wrapped-key.json", "coffer-wrapped-key-v1", check_wrapped),
                              ("objects.json", "coffer-object-v1", check_object)):
        try:
            doc = json.loads((directory / fname).read_text())
            assert doc["format"] == fmt, f"format is {doc['format']!r}"
        except (OSError, ValueError, KeyError, AssertionError) as e:
            print(f"FAIL {fname}: cannot load: {e}")
            failed += 1
            continue
        seen = set()
        for v in doc["vectors"]:
            name = f"{fname}:{v['name']}"
            note = ""
            try:
                if name in seen:
                    raise ValueError("duplicate vector name")
                why = check(v)
                if not v["valid"]:  # decoded without error: that is the failure
                    why = f"accepted, but must be rejected ({v.get('reason', '')})"
            except Reject as e:
                why = f"rejected ({e}), but is valid" if v["valid"] else ""
                note = f"  [rejected: {e}; vector reason: {v.get('reason', '')}]"
            except Exception as e:  # malformed vector or checker bug
                why = f"error {type(e).__name__}: {e}"
            seen.add(name)
            if why:
                print(f"FAIL {name}: {why}")
                failed += 1
            else:
                print(f"ok   {name}" + (note if verbose else ""))
                passed += 1
    print(f"independent_check: {passed} passed, {failed} failed")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
