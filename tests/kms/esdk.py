"""The AWS Encryption SDK for Python encrypting and decrypting through Coffer's KMS.

Usage: python3 esdk.py KEY_ARN   (endpoint, CA bundle and credentials from the environment:
AWS_ENDPOINT_URL_KMS, AWS_CA_BUNDLE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION). With --expect-failure the decrypt of a fresh message must fail
(the key has been disabled in between by the caller: see run.sh).
"""
import io
import sys

import aws_encryption_sdk
import botocore.session
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.exceptions import DecryptKeyError
from aws_encryption_sdk.internal.formatting.deserialize import deserialize_header
from botocore.exceptions import ClientError

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
    # The client's decrypt fails with the SDK's DecryptKeyError ("Unable to decrypt any data
    # key"); it drops the cause on the way out, so the cause is read one level down: the
    # message's own data key, decrypted by its master key, must fail because KMS answered
    # DisabledException — not for any other reason (a wrong endpoint, a parse error).
    try:
        client.decrypt(source=ciphertext, key_provider=provider)
    except DecryptKeyError:
        pass
    else:
        raise AssertionError("decrypt succeeded with the key disabled")
    header, _ = deserialize_header(io.BytesIO(ciphertext))
    [edk] = header.encrypted_data_keys
    master_key = provider.master_key_for_decrypt(edk.key_provider.key_info.decode())
    try:
        master_key.decrypt_data_key(edk, header.algorithm, header.encryption_context)
    except DecryptKeyError as e:
        cause = e.__cause__
        assert isinstance(cause, ClientError), repr(cause)
        code = cause.response["Error"]["Code"]
        assert code == "DisabledException", (code, cause.response["Error"].get("Message"))
        print(f"esdk: decrypt with the key disabled fails: KMS answered {code}")
    else:
        raise AssertionError("the data key decrypted with the key disabled")
