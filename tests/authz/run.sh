#!/usr/bin/env bash
# Authorization matrix (identities x S3/admin/KMS actions x resources) against the real
# `coffer server`, with boto3 and the `coffer admin` CLI. Needs tests/s3/requirements.txt.
#
#   bash tests/authz/run.sh target/debug/coffer
#
# The last line is `authz: N rows, A allowed, D denied, M mismatches`; non-zero exit on any
# mismatch.
set -euo pipefail
bin="${1:-${COFFER_BIN:-}}"
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "usage: bash tests/authz/run.sh PATH/TO/coffer   (or set COFFER_BIN)" >&2
  exit 2
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
exec python3 "$(cd "$(dirname "$0")" && pwd)/matrix.py" --coffer "$bin"
