#!/usr/bin/env bash
# Builds the fuzz targets and runs each for FUZZ_SECONDS (default 15) from its committed
# seeds; exits non-zero if any target crashes, panics, times out or runs out of memory.
# Usage: fuzz/smoke.sh [TARGET...]   (default: every target)
#   FUZZ_SECONDS=N   seconds per target (CI: the default, 10 targets × 15 s)
#   FUZZ_DEV=1       unoptimised build (what CI uses, to stay within its time budget)
#   FUZZ_RUNS=N      stop each target after N executions instead (the long run:
#                    FUZZ_RUNS=10000000 FUZZ_SECONDS=0 fuzz/smoke.sh; -1 = no limit)
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -uo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-15}"
runs="${FUZZ_RUNS:--1}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(header_parse wrapped_key_decode object_decrypt sse_headers kms_context range_headers
        policy_parse kms_json audit_record request_parse)
fi

# FUZZ_DEV=1: unoptimised build (CI: compiles in a fraction of the release build's time;
# the long runs use the default, optimised build).
profile=()
if [ "${FUZZ_DEV:-0}" = 1 ]; then profile=(--dev); fi

cargo +nightly fuzz build "${profile[@]}" || exit 1

failed=()
for t in "${targets[@]}"; do
    echo "=== fuzz $t: ${seconds} s, ${runs} runs (0 s / -1 runs = no limit)"
    # New inputs go to fuzz/corpus/$t (git-ignored); the committed seeds are only read.
    mkdir -p "fuzz/corpus/$t"
    if ! cargo +nightly fuzz run "${profile[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -runs="$runs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1; then
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "FUZZ FAILURES: ${failed[*]} (reproducers in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
echo "fuzz smoke: ${targets[*]}: no crash (${seconds} s, ${runs} runs each)"
