#!/usr/bin/env bash
# Authorization matrix (identities x S3/admin/KMS actions x resources) against the real
# `coffer server`, with boto3 and the `coffer admin` CLI, then the audit trail's fail-closed
# test. Needs tests/s3/requirements.txt.
#
#   bash tests/authz/run.sh target/debug/coffer
#
# The last line is `authz: N rows, A allowed, D denied, M mismatches`; non-zero exit on any
# mismatch.
set -euo pipefail
. "$(dirname "$0")/../lib/server.sh"
bin=$(coffer_bin tests/authz/run.sh "${1:-}") || exit 2
here="$(cd "$(dirname "$0")" && pwd)"
python3 "$here/matrix.py" --coffer "$bin"
# Fail-closed audit: a full audit filesystem refuses requests and changes nothing (needs root
# to mount a tmpfs; exit 77 = skipped, reported but not a failure).
rc=0
python3 "$here/failclosed.py" --coffer "$bin" || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
  exit "$rc"
fi
