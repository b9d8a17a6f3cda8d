#!/usr/bin/env bash
# Client-side encryption end to end with real aws-cli, at full size: a 1 GiB file through the
# running server with each key-encryption-key provider (KMS, key file, passphrase), byte for
# byte; aws-cli (no Coffer client) fetches ciphertext; the data directory holds no
# plaintext; with SSE-KMS on top too; a disabled KMS key fails the download with a clear
# message and no partial file, re-enabled it works. Builds nothing: give the coffer binary
# (a release build is best: 1 GiB in a debug build takes minutes) as the first argument or in
# $COFFER_BIN. SIZE_MIB overrides the size. Needs aws-cli (tests/s3/requirements.txt).
#
# The last line is `client: N passed, M failed`; the exit status is non-zero on any failure.
set -uo pipefail
. "$(dirname "$0")/../lib/server.sh"
bin=$(coffer_bin tests/client/run.sh "${1:-}") || exit 2
python3 -c 'import awscli' || { echo "tests/client/run.sh: install aws-cli first" >&2; exit 2; }
SIZE_MIB=${SIZE_MIB:-1024}
work="$(mktemp -d)"
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

for v in $(env | grep -o '^AWS_[A-Z_]*'); do unset "$v"; done
export AWS_ACCESS_KEY_ID=CFCLIENTRUNROOT AWS_SECRET_ACCESS_KEY=client-run-root-secret-0123 AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null COFFER_CONFIG=/dev/null
start_coffer "$bin" "$work"
export AWS_ENDPOINT_URL=$endpoint AWS_CA_BUNDLE=$ca_bundle
aws() { python3 -m awscli --output json "$@"; }

passed=0 failed=0
check() {
  local name=$1; shift
  local t0=$(date +%s)
  if "$@" >"$work/check.log" 2>&1; then passed=$((passed + 1)); echo "ok   $name ($(( $(date +%s) - t0 )) s)"
  else failed=$((failed + 1)); echo "FAIL $name"; sed 's/^/     /' "$work/check.log" | head -20; fi
}

# The plaintext: random, with a marker every MiB so a leak is found by grep.
python3 - "$work/plain" "$SIZE_MIB" <<'PY'
import os, sys
marker = b"CLIENT-RUN-PLAINTEXT-MARKER-7f3a"
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2])):
        f.write(marker + os.urandom((1 << 20) - len(marker)))
PY
"$bin" mb s3://client-run >/dev/null
key_id=$(aws kms create-key --query KeyMetadata.KeyId --output text)
"$bin" keygen -o "$work/kek" 2>/dev/null
export COFFER_PASSPHRASE="client run passphrase"

round_trip() { # NAME UPLOAD-KEK DOWNLOAD-KEK-ARGS... : 1 GiB up and down, byte-equal
  local name=$1 kek=$2; shift 2
  "$bin" cp -q --client-encrypt --kek "$kek" "$work/plain" "s3://client-run/$name" || return 1
  "$bin" cp -q "$@" "s3://client-run/$name" "$work/back" || return 1
  cmp "$work/plain" "$work/back" && rm -f "$work/back"
}
check "1 GiB round trip, KMS key-encryption key" round_trip kms "$key_id"
check "1 GiB round trip, key file" round_trip file "file:$work/kek" --kek "file:$work/kek"
check "1 GiB round trip, passphrase" round_trip passphrase passphrase --kek passphrase
t_sse_kms() {
  "$bin" cp -q --client-encrypt --kek "$key_id" --sse aws:kms "$work/plain" s3://client-run/layered || return 1
  aws s3api head-object --bucket client-run --key layered | grep -q '"ServerSideEncryption": "aws:kms"' || return 1
  "$bin" cp -q s3://client-run/layered "$work/back" && cmp "$work/plain" "$work/back" && rm -f "$work/back"
}
check "1 GiB round trip, KMS KEK with SSE-KMS on top" t_sse_kms
t_tree() {
  mkdir -p "$work/tree/a/b" && head -c 20000 "$work/plain" >"$work/tree/a/b/small" && : >"$work/tree/empty"
  head -c 12582912 "$work/plain" >"$work/tree/a/twelve-mib"
  "$bin" cp -q -r --client-encrypt --kek "$key_id" "$work/tree" s3://client-run/tree || return 1
  "$bin" cp -q -r s3://client-run/tree "$work/tree-back" || return 1
  diff -r "$work/tree" "$work/tree-back"
}
check "directory tree round trip" t_tree
t_awscli_ciphertext() {
  for obj in kms file passphrase layered; do
    aws s3 cp --quiet "s3://client-run/$obj" "$work/raw" || return 1
    [ "$(head -c 6 "$work/raw")" = COFFER ] || { echo "$obj: not Coffer's format"; return 1; }
    ! grep -q -a -F CLIENT-RUN-PLAINTEXT-MARKER "$work/raw" || { echo "$obj: plaintext"; return 1; }
    aws s3api head-object --bucket client-run --key "$obj" | grep -q '"coffer-client-encrypted": "v1"' || return 1
  done
  rm -f "$work/raw"
}
check "aws-cli fetches ciphertext (marked coffer-client-encrypted: v1)" t_awscli_ciphertext
t_no_plaintext_at_rest() {
  grep -q -a -F CLIENT-RUN-PLAINTEXT-MARKER "$work/plain" || { echo "the search finds nothing even in the plaintext"; return 1; }
  ! grep -r -q -a -F CLIENT-RUN-PLAINTEXT-MARKER "$work/data"
}
check "the data directory holds no plaintext" t_no_plaintext_at_rest
t_disabled() {
  aws kms disable-key --key-id "$key_id" || return 1
  mkdir -p "$work/out"
  if "$bin" cp -q s3://client-run/kms "$work/out/f" 2>"$work/err"; then echo "succeeded"; return 1; fi
  cat "$work/err"
  grep -q DisabledException "$work/err" && grep -q "enable-key" "$work/err" || return 1
  [ -z "$(ls -A "$work/out")" ] || { echo "left: $(ls -A "$work/out")"; return 1; }
  aws kms enable-key --key-id "$key_id" || return 1
  "$bin" cp -q s3://client-run/kms "$work/out/f" && cmp "$work/plain" "$work/out/f"
}
check "disabled KEK: clear error, no partial file; re-enabled: works" t_disabled

echo "client: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
