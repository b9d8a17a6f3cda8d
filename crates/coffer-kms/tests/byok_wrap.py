#!/usr/bin/env python3
"""Independent BYOK client for the coffer-kms import test.

Written from the public specs only (AWS KMS ImportKeyMaterial with RSAES_OAEP_SHA_256, and
spec/wrapped-key.md), using the `cryptography` package. Given the wrapping public key that
GetParametersForImport returned (base64 DER SubjectPublicKeyInfo), it

1. makes a random 256-bit AES key (the customer's key material),
2. wraps it with RSA-OAEP (SHA-256, MGF1-SHA-256) — or, to test rejection, another padding,
3. encrypts a message with the raw key into a KMS ciphertext blob per spec/wrapped-key.md
   (kind 0x02, key id, version 1, AES-256-GCM, aad = descriptor || canonical(context)),

and prints JSON: raw key (hex), wrapped key material (base64), blob (base64), plaintext,
and the context.

usage: byok_wrap.py PUBLIC_KEY_B64 KEY_ID [oaep-sha256|oaep-sha1|pkcs1v15]
"""
import base64
import json
import os
import struct
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def canonical(context):
    """spec/wrapped-key.md section 5."""
    items = sorted((k.encode(), v.encode()) for k, v in context.items())
    out = struct.pack(">H", len(items))
    for name, value in items:
        out += struct.pack(">H", len(name)) + name + struct.pack(">I", len(value)) + value
    return out


def kms_blob(key, key_id, version, plaintext, context):
    """spec/wrapped-key.md sections 2, 4 and 6."""
    kid = key_id.encode()
    descriptor = b"CWK" + bytes([0x01, 0x02, len(kid)]) + kid + struct.pack(">I", version) + b"\x01"
    nonce = os.urandom(12)
    ct = AESGCM(key).encrypt(nonce, plaintext, descriptor + canonical(context))
    return descriptor + nonce + struct.pack(">H", len(ct)) + ct


def main():
    public_der = base64.b64decode(sys.argv[1])
    key_id = sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "oaep-sha256"
    public_key = serialization.load_der_public_key(public_der)
    raw_key = os.urandom(32)
    if mode == "oaep-sha256":
        pad = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    elif mode == "oaep-sha1":
        pad = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    elif mode == "pkcs1v15":
        pad = padding.PKCS1v15()
    else:
        raise SystemExit(f"unknown mode {mode}")
    wrapped = public_key.encrypt(raw_key, pad)
    context = {"department": "finance", "purpose": "byok-test"}
    plaintext = b"imported byte-exact"
    blob = kms_blob(raw_key, key_id, 1, plaintext, context)
    json.dump(
        {
            "key_size_bits": public_key.key_size,
            "raw_key_hex": raw_key.hex(),
            "wrapped_b64": base64.b64encode(wrapped).decode(),
            "blob_b64": base64.b64encode(blob).decode(),
            "plaintext": plaintext.decode(),
            "context": context,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
