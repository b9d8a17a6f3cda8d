#!/usr/bin/env bash
# CLI throughput on a 1 GiB file on tmpfs: `coffer encrypt`/`decrypt` against `cp` of the
# same file, in the same run (best of 3 each). Prints a Markdown table and the ratios.
# Usage: bash bench/cli.sh   (builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p coffer-cli
BIN="${CARGO_TARGET_DIR:-target}/release/coffer"
DIR=$(mktemp -d /dev/shm/coffer-bench.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
SIZE_MIB=${SIZE_MIB:-1024}
head -c $((SIZE_MIB << 20)) /dev/urandom > "$DIR/plain"
"$BIN" keygen -o "$DIR/k.key" 2>/dev/null
best() { # best wall time in seconds of 3 runs of "$@"
  local best=999999
  for _ in 1 2 3; do
    local t0 t1
    t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N)
    best=$(python3 -c "print(min($best, $t1 - $t0))")
  done
  echo "$best"
}
cp_t=$(best cp "$DIR/plain" "$DIR/copy")
enc_t=$(best "$BIN" encrypt -k "$DIR/k.key" "$DIR/plain" -o "$DIR/cipher")
dec_t=$(best "$BIN" decrypt -k "$DIR/k.key" "$DIR/cipher" -o "$DIR/restored")
cmp "$DIR/plain" "$DIR/restored"
python3 - "$SIZE_MIB" "$cp_t" "$enc_t" "$dec_t" <<'PY'
import sys
mib, cp, enc, dec = int(sys.argv[1]), *map(float, sys.argv[2:])
rate = lambda t: mib / t
print(f"| {mib} MiB on tmpfs | MB/s | × cp |")
print("|---|---|---|")
print(f"| cp | {rate(cp)*1.048576:.0f} | 1.00 |")
print(f"| coffer encrypt | {rate(enc)*1.048576:.0f} | {cp/enc:.2f} |")
print(f"| coffer decrypt | {rate(dec)*1.048576:.0f} | {cp/dec:.2f} |")
PY
