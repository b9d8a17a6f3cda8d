#!/usr/bin/env bash
# Builds the fuzz targets and runs each for FUZZ_SECONDS (default 20) from its committed
# seeds; exits non-zero if any target crashes, panics, times out or runs out of memory.
# Usage: fuzz/smoke.sh [TARGET...]   (default: every target)
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -uo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(header_parse wrapped_key_decode object_decrypt)
fi

cargo +nightly fuzz build || exit 1

failed=()
for t in "${targets[@]}"; do
    echo "=== fuzz $t for ${seconds}s"
    # New inputs go to fuzz/corpus/$t (git-ignored); the committed seeds are only read.
    mkdir -p "fuzz/corpus/$t"
    if ! cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "FUZZ FAILURES: ${failed[*]} (reproducers in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
echo "fuzz smoke: all targets ran ${seconds}s without a crash"
