"""The AWS Encryption SDK for Python encrypting and decrypting through Coffer's KMS.

Usage: python3 esdk.py KEY_ARN   (endpoint, CA bundle and credentials from the environment:
AWS_ENDPOINT_URL_KMS, AWS_CA_BUNDLE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION). With --expect-failure the decrypt of a fresh message must fail
(the key has been disabled in between by the caller: see run.sh).
"""
import sys

import aws_encryption_sdk
import botocore.session
from aws_encryption_sdk import CommitmentPolicy

key_arn = sys.argv[1]
mode = sys.argv[2] if len(sys.argv) > 2 else "roundtrip"
client = aws_encryption_sdk.EncryptionSDKClient(
    commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
)
provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(
    key_ids=[key_arn], botocore_session=botocore.session.Session()
)
message = b"attack at dawn " * 100
if mode == "roundtrip":
    ciphertext, header = client.encrypt(
        source=message, key_provider=provider, encryption_context={"purpose": "coffer-test"}
    )
    assert message not in ciphertext
    assert header.encryption_context["purpose"] == "coffer-test"
    assert [k.key_provider.key_info.decode() for k in header.encrypted_data_keys] == [key_arn]
    plaintext, dheader = client.decrypt(source=ciphertext, key_provider=provider)
    assert plaintext == message, "round trip"
    open(sys.argv[3], "wb").write(ciphertext)
    print("esdk: round trip ok")
elif mode == "decrypt-fails":
    ciphertext = open(sys.argv[3], "rb").read()
    try:
        client.decrypt(source=ciphertext, key_provider=provider)
    except Exception as e:  # the SDK wraps KMS's DisabledException in its own error
        assert "DisabledException" in repr(e) or "Disabled" in str(e) or "Unable to decrypt" in str(e), repr(e)
        print(f"esdk: decrypt with the key disabled fails: {type(e).__name__}")
    else:
        raise AssertionError("decrypt succeeded with the key disabled")
