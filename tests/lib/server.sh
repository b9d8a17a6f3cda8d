# Sourced by the bash scripts that drive the real `coffer server` (tests/*/run.sh,
# bench/client.sh): the binary argument and the server's start.

# coffer_bin SCRIPT PATH: prints PATH (or $COFFER_BIN when PATH is empty) as an absolute path;
# prints SCRIPT's usage and fails when it is not an executable. Use as
#   bin=$(coffer_bin tests/x/run.sh "${1:-}") || exit 2
coffer_bin() {
  local script=$1 bin=${2:-${COFFER_BIN:-}}
  if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "usage: bash $script PATH/TO/coffer   (or set COFFER_BIN)" >&2
    return 2
  fi
  echo "$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
}

# start_coffer BIN DIR: starts BIN's server in the background with its data in DIR/data, its
# working directory DIR/cwd, a free port on 127.0.0.1, and root credentials from
# AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; waits for `ready` (30 s) and sets server_pid,
# endpoint and ca_bundle. Output in DIR/out.log and DIR/err.log; exits the script if the server
# does not start.
start_coffer() {
  local bin=$1 dir=$2
  mkdir -p "$dir/cwd"
  (cd "$dir/cwd" && COFFER_ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID COFFER_ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
    exec "$bin" server --data-dir "$dir/data" --listen 127.0.0.1:0 >"$dir/out.log" 2>"$dir/err.log") &
  server_pid=$!
  for _ in $(seq 1 300); do grep -qx ready "$dir/out.log" 2>/dev/null && break; sleep 0.1; done
  grep -qx ready "$dir/out.log" || { echo "server did not start"; cat "$dir/err.log"; exit 1; }
  endpoint=$(sed -n 's/^endpoint: //p' "$dir/out.log")
  ca_bundle=$(sed -n 's/^ca-bundle: //p' "$dir/out.log")
}
