#!/usr/bin/env bash
# Client-side encryption throughput, 1 GiB file on tmpfs, all in the same run (best of 3):
#   - `coffer cp --client-encrypt` upload and download to a local Coffer server (KMS KEK),
#   - the same upload and download without client-side encryption,
#   - local `coffer encrypt` / `coffer decrypt` (key file),
#   - age (passphrase-less X25519 recipient) and rclone crypt on the same file.
# Prints a Markdown table and the ratios against the targets:
#   local encrypt/decrypt >= 2 x age;  client-encrypted upload >= 0.8 x the plain upload.
# Usage: bash bench/client.sh [PATH/TO/release/coffer]  (default: builds the release binary)
# Needs: age, rclone (Debian packages), python3. SIZE_MIB overrides the size.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-${COFFER_BIN:-}}"
if [ -z "$BIN" ]; then
  cargo build --release -q -p coffer-cli
  BIN="${CARGO_TARGET_DIR:-target}/release/coffer"
fi
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
for tool in age age-keygen rclone python3; do
  command -v "$tool" >/dev/null || { echo "bench/client.sh: needs $tool (apt-get install age rclone)" >&2; exit 2; }
done
DIR=$(mktemp -d /dev/shm/coffer-client-bench.XXXXXX)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
SIZE_MIB=${SIZE_MIB:-1024}
head -c $((SIZE_MIB << 20)) /dev/urandom > "$DIR/plain"

for v in $(env | grep -o '^AWS_[A-Z_]*'); do unset "$v"; done
export AWS_ACCESS_KEY_ID=CFBENCHROOT0001 AWS_SECRET_ACCESS_KEY=bench-root-secret-0123456789 AWS_DEFAULT_REGION=us-east-1
export COFFER_CONFIG=/dev/null
# The server's data directory on tmpfs too: the run measures the crypto and the transfer,
# not the disk.
. tests/lib/server.sh
start_coffer "$BIN" "$DIR"
export AWS_ENDPOINT_URL=$endpoint AWS_CA_BUNDLE=$ca_bundle
"$BIN" mb s3://bench >/dev/null
key_id=$(python3 -m awscli kms create-key --query KeyMetadata.KeyId --output text 2>/dev/null || true)
if [ -z "$key_id" ]; then
  echo "bench/client.sh: needs aws-cli (python3 -m pip install -r tests/s3/requirements.txt)" >&2; exit 2
fi
"$BIN" keygen -o "$DIR/k.key" 2>/dev/null
age-keygen -o "$DIR/age.key" 2>/dev/null
recipient=$(age-keygen -y "$DIR/age.key")
mkdir -p "$DIR/rclone-remote"
obscured=$(rclone obscure bench-password)
cat > "$DIR/rclone.conf" <<CONF
[local]
type = local

[secret]
type = crypt
remote = local:$DIR/rclone-remote
password = $obscured
filename_encryption = off
directory_name_encryption = false
CONF
export RCLONE_CONFIG="$DIR/rclone.conf"

best() { # best wall time in seconds of 3 runs of "$@"
  local best=999999
  for _ in 1 2 3; do
    local t0 t1
    t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
    best=$(python3 -c "print(min($best, $t1 - $t0))")
  done
  echo "$best"
}
rmobj() { "$BIN" rm "s3://bench/$1" >/dev/null; }
up_plain() { "$BIN" cp -q "$DIR/plain" s3://bench/plain; }
up_client() { "$BIN" cp -q --client-encrypt --kek "$key_id" "$DIR/plain" s3://bench/client; }
down_plain() { rm -f "$DIR/down"; "$BIN" cp -q s3://bench/plain "$DIR/down"; }
down_client() { rm -f "$DIR/down"; "$BIN" cp -q s3://bench/client "$DIR/down"; }

up_plain_t=$(best up_plain)
up_client_t=$(best up_client)
down_plain_t=$(best down_plain)
down_client_t=$(best down_client)
cmp "$DIR/plain" "$DIR/down"
enc_t=$(best "$BIN" encrypt -k "$DIR/k.key" "$DIR/plain" -o "$DIR/cipher")
dec_t=$(best "$BIN" decrypt -k "$DIR/k.key" "$DIR/cipher" -o "$DIR/restored")
cmp "$DIR/plain" "$DIR/restored"
age_enc_t=$(best age -r "$recipient" -o "$DIR/plain.age" "$DIR/plain")
age_dec_t=$(best age -d -i "$DIR/age.key" -o "$DIR/restored" "$DIR/plain.age")
cmp "$DIR/plain" "$DIR/restored"
# --ignore-times: rclone skips a copy whose destination has the same size and time, which
# would make the second and third runs no-ops.
rc_enc_t=$(best rclone copyto --ignore-times "$DIR/plain" secret:plain)
rc_dec_t=$(best rclone copyto --ignore-times secret:plain "$DIR/restored-rc")
cmp "$DIR/plain" "$DIR/restored-rc"

python3 - "$SIZE_MIB" "$up_plain_t" "$up_client_t" "$down_plain_t" "$down_client_t" \
  "$enc_t" "$dec_t" "$age_enc_t" "$age_dec_t" "$rc_enc_t" "$rc_dec_t" <<'PY'
import sys
mib = int(sys.argv[1])
up_p, up_c, dn_p, dn_c, enc, dec, aenc, adec, renc, rdec = map(float, sys.argv[2:])
mbs = lambda t: mib * 1.048576 / t
rows = [
    ("coffer cp upload, no client encryption (SSE-S3 at rest)", up_p),
    ("coffer cp --client-encrypt upload (KMS KEK)", up_c),
    ("coffer cp download, no client encryption", dn_p),
    ("coffer cp download, client-encrypted (decrypts)", dn_c),
    ("coffer encrypt (key file)", enc),
    ("coffer decrypt (key file)", dec),
    ("age -r (encrypt)", aenc),
    ("age -d (decrypt)", adec),
    ("rclone crypt copy (encrypt)", renc),
    ("rclone crypt copy (decrypt)", rdec),
]
print(f"| {mib} MiB on tmpfs, best of 3 | s | MB/s |")
print("|---|---|---|")
for name, t in rows:
    print(f"| {name} | {t:.2f} | {mbs(t):.0f} |")
print()
def ratio(name, r, target):
    print(f"{name}: {r:.2f} (target >= {target}) {'ok' if r >= target else 'MISSED'}")
ratio("coffer encrypt vs age encrypt", aenc / enc, 2.0)
ratio("coffer decrypt vs age decrypt", adec / dec, 2.0)
ratio("client-encrypted upload vs plain upload", up_p / up_c, 0.8)
ratio("client-encrypted download vs plain download", dn_p / dn_c, 0.8)
print(f"coffer encrypt vs rclone crypt: {renc / enc:.2f}; decrypt: {rdec / dec:.2f}")
PY
