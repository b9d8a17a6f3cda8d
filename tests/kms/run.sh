#!/usr/bin/env bash
# Coffer's KMS API against real clients: aws-cli (`aws kms …`) and the AWS Encryption SDK
# for Python, over HTTPS with the server's generated CA. Builds nothing: give the coffer
# binary as the first argument or in $COFFER_BIN. Needs openssl (BYOK wrapping) and
#   python3 -m pip install -r tests/s3/requirements.txt -r tests/kms/requirements.txt
#
# The last line is `kms: N passed, M failed`; the exit status is non-zero on any failure.
set -uo pipefail
. "$(dirname "$0")/../lib/server.sh"
bin=$(coffer_bin tests/kms/run.sh "${1:-}") || exit 2
here="$(cd "$(dirname "$0")" && pwd)"
python3 -c 'import awscli, aws_encryption_sdk' || {
  echo "tests/kms/run.sh: install the requirements first (see the header)" >&2
  exit 2
}
command -v openssl >/dev/null || { echo "tests/kms/run.sh: needs openssl" >&2; exit 2; }
work="$(mktemp -d)"
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

for v in $(env | grep -o '^AWS_[A-Z_]*'); do unset "$v"; done
export AWS_ACCESS_KEY_ID=CFKMSTESTROOT AWS_SECRET_ACCESS_KEY=kms-test-root-secret AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
start_coffer "$bin" "$work"
export AWS_CA_BUNDLE=$ca_bundle
export AWS_ENDPOINT_URL_KMS=$endpoint
echo "server $endpoint; $(python3 -m awscli --version 2>&1); aws-encryption-sdk $(python3 -c 'import aws_encryption_sdk as e; print(e.__version__)')"

passed=0 failed=0
aws() { python3 -m awscli --endpoint-url "$endpoint" --output json "$@"; }
# check NAME COMMAND…: runs the command (a shell function or pipeline) and counts it.
check() {
  local name=$1; shift
  # Not in a subshell: checks set variables (key_id, key_arn) later checks use.
  if "$@" >"$work/check.log" 2>&1; then passed=$((passed + 1)); echo "ok   $name"
  else failed=$((failed + 1)); echo "FAIL $name"; sed 's/^/     /' "$work/check.log" | head -20; fi
}
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); 
for p in sys.argv[1].split("."): d = d[int(p)] if p.isdigit() else d[p]
print(d)' "$1"; }
# expect_error CODE COMMAND…: the aws-cli command must fail with that exception name.
expect_error() {
  local code=$1; shift
  local o; if o=$("$@" 2>&1); then echo "succeeded: $o"; return 1; fi
  echo "$o" | grep -q "($code)" || { echo "wanted $code, got: $o"; return 1; }
}

t_create_key() {
  aws kms create-key --description "run.sh key" --tags TagKey=team,TagValue=blue >"$work/key.json" || return 1
  key_id=$(jget KeyMetadata.KeyId <"$work/key.json"); key_arn=$(jget KeyMetadata.Arn <"$work/key.json")
  [ "$key_arn" = "arn:aws:kms:us-east-1:000000000000:key/$key_id" ] || { echo "arn $key_arn"; return 1; }
  [ "$(jget KeyMetadata.KeyState <"$work/key.json")" = Enabled ] || return 1
  [ "$(jget KeyMetadata.KeyManager <"$work/key.json")" = CUSTOMER ]
}
check "create-key returns AWS-shaped metadata and an ARN" t_create_key

t_encrypt_decrypt() {
  printf 'top secret' >"$work/plain.txt"
  aws kms encrypt --key-id "$key_id" --plaintext "fileb://$work/plain.txt" \
    --encryption-context dept=eng --query CiphertextBlob --output text | base64 -d >"$work/ct.bin" || return 1
  ! grep -q 'top secret' "$work/ct.bin" || return 1
  got=$(aws kms decrypt --ciphertext-blob "fileb://$work/ct.bin" --encryption-context dept=eng \
    --query Plaintext --output text | base64 -d) || return 1
  [ "$got" = "top secret" ] || { echo "decrypted: $got"; return 1; }
  expect_error InvalidCiphertextException aws kms decrypt --ciphertext-blob "fileb://$work/ct.bin" --encryption-context dept=ops
}
check "encrypt / decrypt round trip; a wrong context is InvalidCiphertextException" t_encrypt_decrypt

t_generate_data_key() {
  aws kms generate-data-key --key-id "$key_arn" --key-spec AES_256 >"$work/dk.json" || return 1
  [ "$(jget Plaintext <"$work/dk.json" | base64 -d | wc -c)" = 32 ] || return 1
  [ "$(jget KeyId <"$work/dk.json")" = "$key_arn" ] || return 1
  jget CiphertextBlob <"$work/dk.json" | base64 -d >"$work/dk.bin"
  back=$(aws kms decrypt --ciphertext-blob "fileb://$work/dk.bin" --query Plaintext --output text) || return 1
  [ "$back" = "$(jget Plaintext <"$work/dk.json")" ] || return 1
  n=$(aws kms generate-data-key-without-plaintext --key-id "$key_id" --number-of-bytes 16 | python3 -c 'import json,sys; d=json.load(sys.stdin); assert "Plaintext" not in d; print(len(d["CiphertextBlob"]) > 0)')
  [ "$n" = True ]
}
check "generate-data-key (32 bytes, decryptable) and generate-data-key-without-plaintext" t_generate_data_key

t_aliases_and_policy() {
  aws kms create-alias --alias-name alias/run-sh --target-key-id "$key_id" || return 1
  [ "$(aws kms describe-key --key-id alias/run-sh --query KeyMetadata.KeyId --output text)" = "$key_id" ] || return 1
  aws kms list-aliases --key-id "$key_id" --query 'Aliases[0].AliasName' --output text | grep -qx alias/run-sh || return 1
  aws kms get-key-policy --key-id "$key_id" --policy-name default --query Policy --output text \
    | grep -q '"AWS":"arn:aws:iam::000000000000:root"' || return 1
  aws kms list-resource-tags --key-id "$key_id" --query 'Tags[0].TagValue' --output text | grep -qx blue
}
check "aliases, key policy (owner: root) and tags" t_aliases_and_policy

t_disabled() {
  aws kms disable-key --key-id "$key_id" || return 1
  expect_error DisabledException aws kms encrypt --key-id "$key_id" --plaintext aGk= || return 1
  aws kms enable-key --key-id "$key_id"
}
check "a disabled key refuses encrypt with DisabledException" t_disabled

t_errors() {
  expect_error NotFoundException aws kms describe-key --key-id 11111111-2222-3333-4444-555555555555 || return 1
  # An unknown operation and a body that is not JSON, signed by botocore.
  python3 - "$endpoint" <<'PY'
import sys, botocore.session
from botocore.awsrequest import AWSRequest
from botocore.auth import SigV4Auth
import urllib3, json, os
creds = botocore.session.Session().get_credentials()
http = urllib3.PoolManager(ca_certs=os.environ["AWS_CA_BUNDLE"])
def send(target, body):
    req = AWSRequest(method="POST", url=sys.argv[1] + "/", data=body, headers={
        "X-Amz-Target": "TrentService." + target, "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(creds, "kms", "us-east-1").add_auth(req)
    r = http.request("POST", sys.argv[1] + "/", body=body, headers=dict(req.headers))
    return r.status, json.loads(r.data)
assert send("Frobnicate", b"{}") == (400, {"__type": "UnknownOperationException", "message": "Unknown operation Frobnicate"}), send("Frobnicate", b"{}")
s, b = send("Encrypt", b"{not json")
assert (s, b["__type"]) == (400, "SerializationException"), (s, b)
PY
}
check "NotFoundException, UnknownOperationException, SerializationException" t_errors

t_rotation() {
  aws kms enable-key-rotation --key-id "$key_id" --rotation-period-in-days 90 || return 1
  [ "$(aws kms get-key-rotation-status --key-id "$key_id" --query KeyRotationEnabled --output text)" = True ] || return 1
  aws kms rotate-key-on-demand --key-id "$key_id" >/dev/null || return 1
  aws kms list-key-rotations --key-id "$key_id" --query 'Rotations[0].RotationType' --output text | grep -qx ON_DEMAND || return 1
  # A ciphertext from before the rotation still decrypts.
  aws kms decrypt --ciphertext-blob "fileb://$work/ct.bin" --encryption-context dept=eng >/dev/null
}
check "rotation: enable, status, on-demand, list; old ciphertexts still decrypt" t_rotation

t_import() {
  aws kms create-key --origin EXTERNAL >"$work/ext.json" || return 1
  ext=$(jget KeyMetadata.KeyId <"$work/ext.json")
  [ "$(jget KeyMetadata.KeyState <"$work/ext.json")" = PendingImport ] || return 1
  aws kms get-parameters-for-import --key-id "$ext" --wrapping-algorithm RSAES_OAEP_SHA_256 \
    --wrapping-key-spec RSA_3072 >"$work/params.json" || return 1
  jget PublicKey <"$work/params.json" | base64 -d >"$work/wrap.der"
  jget ImportToken <"$work/params.json" | base64 -d >"$work/token.bin"
  openssl rand 32 >"$work/material.bin"
  openssl pkeyutl -encrypt -in "$work/material.bin" -out "$work/material.enc" -inkey "$work/wrap.der" \
    -keyform DER -pubin -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 || return 1
  aws kms import-key-material --key-id "$ext" --encrypted-key-material "fileb://$work/material.enc" \
    --import-token "fileb://$work/token.bin" --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE >/dev/null || return 1
  [ "$(aws kms describe-key --key-id "$ext" --query KeyMetadata.KeyState --output text)" = Enabled ] || return 1
  ct=$(aws kms encrypt --key-id "$ext" --plaintext aGk= --query CiphertextBlob --output text) || return 1
  aws kms delete-imported-key-material --key-id "$ext" || return 1
  echo "$ct" | base64 -d >"$work/ext.bin"
  expect_error KMSInvalidStateException aws kms decrypt --ciphertext-blob "fileb://$work/ext.bin"
}
check "BYOK: get-parameters-for-import, openssl OAEP-SHA256 wrap, import-key-material" t_import

t_grants() {
  aws kms create-grant --key-id "$key_id" --grantee-principal arn:aws:iam::000000000000:user/app \
    --operations Decrypt Encrypt --constraints EncryptionContextSubset={app=x} >"$work/grant.json" || return 1
  gid=$(jget GrantId <"$work/grant.json")
  aws kms list-grants --key-id "$key_id" --query 'Grants[0].GranteePrincipal' --output text | grep -qx arn:aws:iam::000000000000:user/app || return 1
  aws kms revoke-grant --key-id "$key_id" --grant-id "$gid" || return 1
  [ "$(aws kms list-grants --key-id "$key_id" --query 'length(Grants)' --output text)" = 0 ]
}
check "grants: create-grant, list-grants, revoke-grant" t_grants

t_random() {
  [ "$(aws kms generate-random --number-of-bytes 64 --query Plaintext --output text | base64 -d | wc -c)" = 64 ]
}
check "generate-random" t_random

t_esdk() {
  python3 "$here/esdk.py" "$key_arn" roundtrip "$work/esdk.msg" || return 1
  aws kms disable-key --key-id "$key_id" || return 1
  python3 "$here/esdk.py" "$key_arn" decrypt-fails "$work/esdk.msg" || return 1
  aws kms enable-key --key-id "$key_id"
}
check "AWS Encryption SDK: round trip; decrypt fails with the key disabled" t_esdk

# The audit record of an SSE-KMS PUT (and GET) names the key and the key version that was
# actually used: v1 before a rotation, v2 after it, and a GET of the first object v1 again.
t_sse_kms_audit() {
  export AWS_ENDPOINT_URL_S3=$endpoint
  local k arn
  k=$(aws kms create-key --description "audit key" --query KeyMetadata.KeyId --output text) || return 1
  arn=$(aws kms describe-key --key-id "$k" --query KeyMetadata.Arn --output text) || return 1
  aws s3api create-bucket --bucket audit-kms >/dev/null || return 1
  echo one >"$work/one.txt"
  aws s3api put-object --bucket audit-kms --key before --body "$work/one.txt" \
    --server-side-encryption aws:kms --ssekms-key-id "$k" >/dev/null || return 1
  aws kms rotate-key-on-demand --key-id "$k" >/dev/null || return 1
  aws s3api put-object --bucket audit-kms --key after --body "$work/one.txt" \
    --server-side-encryption aws:kms --ssekms-key-id "$k" >/dev/null || return 1
  aws s3api get-object --bucket audit-kms --key before "$work/got.txt" >/dev/null || return 1
  cmp -s "$work/one.txt" "$work/got.txt" || { echo "GET returned other bytes"; return 1; }
  "$bin" audit query --data-dir "$work/data" --action 's3:*Object' >"$work/audit.jsonl" || return 1
  python3 - "$work/audit.jsonl" "$arn" <<'PY'
import json, sys
arn = sys.argv[2]
got = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["phase"] == "response" and r["outcome"] == "success" and (r["resource"] or "").startswith("arn:aws:s3:::audit-kms/"):
        got[(r["action"], r["resource"].rsplit("/", 1)[1])] = (r["key_id"], r["key_version"])
want = {
    ("s3:PutObject", "before"): (arn, 1),
    ("s3:PutObject", "after"): (arn, 2),
    ("s3:GetObject", "before"): (arn, 1),
}
for k, v in want.items():
    if got.get(k) != v:
        sys.exit(f"audit record {k}: wanted key/version {v}, got {got.get(k)}")
PY
}
check "SSE-KMS PUT/GET audit records carry the key and key version used (v1, rotate, v2)" t_sse_kms_audit

t_deletion() {
  aws kms schedule-key-deletion --key-id "$key_id" --pending-window-in-days 7 >"$work/del.json" || return 1
  [ "$(jget KeyState <"$work/del.json")" = PendingDeletion ] || return 1
  [ "$(jget PendingWindowInDays <"$work/del.json")" = 7 ] || return 1
  expect_error KMSInvalidStateException aws kms encrypt --key-id "$key_id" --plaintext aGk= || return 1
  aws kms cancel-key-deletion --key-id "$key_id" >/dev/null || return 1
  [ "$(aws kms describe-key --key-id "$key_id" --query KeyMetadata.KeyState --output text)" = Disabled ]
}
check "schedule-key-deletion (KMSInvalidStateException while pending), cancel-key-deletion" t_deletion

echo "kms: $passed passed, $failed failed"
[ "$failed" = 0 ]
