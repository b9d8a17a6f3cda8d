#!/usr/bin/env bash
# Ransomware-proof backups (issue 14): restic (Debian package) backs up to a versioned Object
# Lock bucket through the real `coffer server`, `restic check --read-data` passes, and the
# locked packs cannot be deleted — not by restic's own `forget --prune`, not by root with
# aws-cli naming their versions. Builds nothing: give the coffer binary as the first argument
# or in $COFFER_BIN. Needs restic (apt-get install restic) and aws-cli.
#
# The last line is `restic: N passed, M failed`; the exit status is non-zero on any failure.
set -uo pipefail
. "$(dirname "$0")/../lib/server.sh"
bin=$(coffer_bin tests/backup/restic.sh "${1:-}") || exit 2
command -v restic >/dev/null || { echo "tests/backup/restic.sh: install restic first (apt-get install restic)" >&2; exit 2; }
python3 -c 'import awscli' || { echo "tests/backup/restic.sh: install aws-cli first" >&2; exit 2; }
work="$(mktemp -d)"
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

for v in $(env | grep -o '^AWS_[A-Z_]*'); do unset "$v"; done
export AWS_ACCESS_KEY_ID=CFRESTICRUNROOT AWS_SECRET_ACCESS_KEY=restic-run-root-secret-0123 AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null COFFER_CONFIG=/dev/null
start_coffer "$bin" "$work"
export AWS_ENDPOINT_URL=$endpoint AWS_CA_BUNDLE=$ca_bundle
aws() { python3 -m awscli --output json "$@"; }
export RESTIC_PASSWORD="restic run passphrase" RESTIC_CACHE_DIR="$work/cache"
export RESTIC_REPOSITORY="s3:$endpoint/backups"
r() { restic --cacert "$ca_bundle" --no-cache "$@"; }

passed=0 failed=0
check() {
  local name=$1; shift
  local t0=$(date +%s)
  if "$@" >"$work/check.log" 2>&1; then passed=$((passed + 1)); echo "ok   $name ($(( $(date +%s) - t0 )) s)"
  else failed=$((failed + 1)); echo "FAIL $name"; sed 's/^/     /' "$work/check.log" | tail -20; fi
}

# What is backed up: random files with a marker, so a plaintext leak is found by grep.
mkdir -p "$work/src/docs" "$work/src/db"
python3 - "$work/src" <<'PY'
import os, sys
marker = b"RESTIC-RUN-PLAINTEXT-MARKER-51c9"
for i in range(20):
    with open(os.path.join(sys.argv[1], "docs", f"f{i}.txt"), "wb") as f:
        f.write(marker + os.urandom(50_000 + i * 997))
with open(os.path.join(sys.argv[1], "db", "big.bin"), "wb") as f:
    for _ in range(24):
        f.write(marker + os.urandom((1 << 20) - len(marker)))
PY

t_bucket() {
  aws s3api create-bucket --bucket backups --object-lock-enabled-for-bucket >/dev/null &&
  aws s3api put-object-lock-configuration --bucket backups --object-lock-configuration \
    '{"ObjectLockEnabled":"Enabled","Rule":{"DefaultRetention":{"Mode":"COMPLIANCE","Days":1}}}' &&
  aws s3api get-bucket-versioning --bucket backups | grep -q '"Status": "Enabled"'
}
check "an Object Lock bucket (versioning on, COMPLIANCE 1 day by default)" t_bucket

t_backup() {
  r init && r backup "$work/src" && echo changed >"$work/src/docs/new.txt" && r backup "$work/src" &&
  [ "$(r snapshots --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 2 ]
}
check "restic init and two backups through Coffer" t_backup

check "restic check --read-data passes" r check --read-data

t_restore() {
  r restore latest --target "$work/restore" && diff -r "$work/src" "$work/restore$work/src"
}
check "restic restore gives back every file byte for byte" t_restore

t_locked_packs() {
  local listing pack vid
  listing=$(aws s3api list-object-versions --bucket backups --prefix data/) || return 1
  pack=$(echo "$listing" | python3 -c 'import json,sys; v=json.load(sys.stdin)["Versions"][0]; print(v["Key"], v["VersionId"])')
  read -r key vid <<<"$pack"
  [ -n "$vid" ] || return 1
  aws s3api get-object-retention --bucket backups --key "$key" --version-id "$vid" | grep -q COMPLIANCE || return 1
  # Root, naming the version, with the governance bypass: refused.
  if aws s3api delete-object --bucket backups --key "$key" --version-id "$vid" \
       --bypass-governance-retention 2>"$work/del.err"; then
    echo "a locked pack version was deleted"; return 1
  fi
  grep -q AccessDenied "$work/del.err" || { cat "$work/del.err"; return 1; }
  # A plain delete only hides it behind a marker; the version is still there.
  aws s3api delete-object --bucket backups --key "$key" >/dev/null || return 1
  aws s3api head-object --bucket backups --key "$key" --version-id "$vid" >/dev/null
}
check "root cannot delete a locked pack version (AccessDenied); a delete marker leaves it" t_locked_packs

t_forget_prune() {
  # Ransomware with restic's own credentials: forget everything and prune. The markers it
  # leaves hide the packs, but every version survives and the old snapshot can be brought back.
  local before after
  before=$(aws s3api list-object-versions --bucket backups --prefix data/ |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Versions"]))')
  r forget --keep-last 1 --prune >/dev/null 2>&1 || true
  aws s3 rm --recursive s3://backups/ >/dev/null || return 1
  after=$(aws s3api list-object-versions --bucket backups --prefix data/ |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Versions"]))')
  echo "pack versions before $before, after $after"
  [ "$before" -gt 0 ] && [ "$after" -ge "$before" ]
}
check "forget --prune and aws s3 rm --recursive remove no locked version" t_forget_prune

t_no_plaintext() {
  # restic encrypts on its side, so its files cannot show its plaintext; what Coffer must not
  # store as is are the bytes restic sent. A window of one pack as a client reads it back
  # must not occur anywhere under the data directory.
  local key vid
  read -r key vid < <(aws s3api list-object-versions --bucket backups --prefix data/ |
    python3 -c 'import json,sys; v=json.load(sys.stdin)["Versions"][0]; print(v["Key"], v["VersionId"])')
  aws s3api get-object --bucket backups --key "$key" --version-id "$vid" "$work/pack" >/dev/null || return 1
  python3 - "$work/pack" "$work/data" <<'PY'
import os, sys
pack = open(sys.argv[1], "rb").read()
assert len(pack) > 4096, len(pack)
needles = [pack[i:i + 32] for i in (0, len(pack) // 2, len(pack) - 32)]
for root, _, files in os.walk(sys.argv[2]):
    for f in files:
        data = open(os.path.join(root, f), "rb").read()
        for n in needles:
            assert n not in data, f"pack bytes stored as sent in {os.path.join(root, f)}"
# The probe works: the pack itself would be found.
assert needles[1] in pack
PY
  ! grep -rqa "RESTIC-RUN-PLAINTEXT-MARKER-51c9" "$work/data"
}
check "the data directory holds neither the backed-up files nor the bytes restic sent" t_no_plaintext

echo
echo "restic: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
