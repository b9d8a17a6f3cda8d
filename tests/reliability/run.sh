#!/usr/bin/env bash
# Reliability suite (issue 7, docs/reliability.md) against the real `coffer server` binary.
# Builds nothing: give the binary as an argument or in $COFFER_BIN.
#
#   bash tests/reliability/run.sh [--long] PATH/TO/coffer
#
# Short mode (CI) runs each part at its CI size; --long runs the sizes docs/reliability.md
# reports. Every part runs even when an earlier one failed; the summary block at the end has
# one line per part, and the exit status is non-zero if any part failed. A part that cannot
# run on this machine (disk full needs mount) says SKIPPED, loudly, and does not count as
# passed or failed. Needs python3 with boto3 (tests/s3/requirements.txt) and, for the disk
# full part, root.
set -uo pipefail
# The whole script is one compound command, parsed before it runs, so editing this file while
# a run is under way cannot break that run (bash otherwise reads a script as it goes).
{
mode=short
bin=""
for a in "$@"; do
  case "$a" in
    --long) mode=long ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) bin="$a" ;;
  esac
done
bin="${bin:-${COFFER_BIN:-}}"
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "usage: bash tests/reliability/run.sh [--long] PATH/TO/coffer   (or set COFFER_BIN)" >&2
  exit 2
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
here="$(cd "$(dirname "$0")" && pwd)"
python3 -c 'import boto3' || {
  echo "tests/reliability/run.sh: needs boto3: python3 -m pip install -r tests/s3/requirements.txt" >&2
  exit 2
}

if [ "$mode" = long ]; then
  CRASH_CYCLES="${CRASH_CYCLES:-60}"
  LOAD_ARGS=(--long)        # 64 clients x 600 s
else
  CRASH_CYCLES="${CRASH_CYCLES:-10}"
  LOAD_ARGS=()              # 32 clients x 60 s
fi

summary=()
failed=0
t0=$(date +%s)

# part LABEL PATTERN COMMAND...: runs COMMAND, keeps its last line matching PATTERN for the
# summary. Exit status 77 means skipped.
part() {
  local label="$1" pattern="$2"
  shift 2
  local log
  log="$(mktemp)"
  local started=$(date +%s)
  printf '\n--- %s\n' "$label"
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line
  line="$(grep -E "$pattern" "$log" | tail -n 1)"
  rm -f "$log"
  local verdict=PASS
  if [ "$rc" -eq 77 ]; then
    verdict=SKIPPED
  elif [ "$rc" -ne 0 ]; then
    verdict=FAIL
    failed=1
  fi
  summary+=("$(printf '%-18s %-7s %s (%ss)' "$label" "$verdict" "${line:-exit status $rc}" $(( $(date +%s) - started )))")
}

part "crash consistency" '^crash: cycles' \
  python3 "$here/crash.py" --coffer "$bin" --cycles "$CRASH_CYCLES"
part "tampering" '^tamper: [0-9]+ tamper cases' \
  python3 "$here/tamper.py" --coffer "$bin"
part "disk full" '^diskfull: ([0-9]+ writes|SKIPPED)' \
  python3 "$here/diskfull.py" --coffer "$bin"
part "concurrent load" '^load: [0-9]+ requests' \
  python3 "$here/load.py" --coffer "$bin" ${LOAD_ARGS[@]+"${LOAD_ARGS[@]}"}
part "hostile input" '^hostile: [0-9]+ cases' \
  python3 "$here/hostile.py" --coffer "$bin"

printf '\n=== reliability summary (%s mode, %ss) ===\n' "$mode" $(( $(date +%s) - t0 ))
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "reliability: FAILED"
  exit 1
fi
echo "reliability: passed"
exit 0
}
