#!/usr/bin/env bash
# S3 compatibility of `coffer server` with boto3 and aws-cli (both from PyPI; see
# requirements.txt). Builds nothing: give the coffer binary as the first argument or in
# $COFFER_BIN. Starts its own servers on temporary data directories and removes them.
#
#   python3 -m pip install -r tests/s3/requirements.txt
#   bash tests/s3/run.sh target/debug/coffer
#
# The last line is `compat: N passed, M failed`; the exit status is non-zero on any failure.
set -euo pipefail
. "$(dirname "$0")/../lib/server.sh"
bin=$(coffer_bin tests/s3/run.sh "${1:-}") || exit 2
here="$(cd "$(dirname "$0")" && pwd)"
python3 -c 'import boto3, awscli, requests' || {
  echo "tests/s3/run.sh: install the requirements first: python3 -m pip install -r tests/s3/requirements.txt" >&2
  exit 2
}
echo "boto3 $(python3 -c 'import boto3; print(boto3.__version__)'), $(python3 -m awscli --version 2>&1)"
exec python3 "$here/compat.py" --coffer "$bin"
