#!/usr/bin/env bash
# S3 server benchmark (issue 4): `coffer server` (HTTPS, SSE-S3 / SSE-KMS / SSE-C) against nginx
# serving and accepting the same objects over plain loopback HTTP, measured in the same run by
# the same client (s3bench, crates/coffer-bench: Rust, hyper + rustls, one keep-alive
# connection per client thread, SigV4 with UNSIGNED-PAYLOAD, bodies never hashed).
#
# Measures, for nginx and each Coffer mode:
#   - PUT and GET throughput, 100 x 1 MiB objects on 4 client threads, and 5 x 256 MiB
#     objects on 1 thread (median of SMALL_ROUNDS / LARGE_ROUNDS rounds), plus the server's
#     CPU seconds per GiB moved. All servers run at once and the rounds are interleaved
#     (nginx, SSE-S3, SSE-KMS, SSE-C, nginx, ...), so a change in the machine's load hits
#     every server alike;
#   - latency of a 1 MiB range GET from a 1 GiB object against a whole 1 MiB object GET
#     (RANGE_REPS interleaved repetitions each, medians and their ratio);
#   - Coffer only: server peak RSS (VmHWM after resetting it through /proc/PID/clear_refs,
#     and VmRSS sampled every 10 ms) while one 5 GiB object is written by multipart upload
#     (80 parts of 64 MiB) and while it is read back whole, on a freshly started server (one
#     per mode); and the peak RSS of each later phase.
# and, for information, Coffer SSE-S3 over --insecure-http (what TLS costs).
# Every response must be 2xx, every GET body the expected length (inside the timed loops),
# and objects are compared byte for byte outside them; any failure aborts the run.
#
# Requires nginx with the DAV module. This script installs nothing; on Debian:
#     apt-get install -y nginx
# Data directories, nginx's body temp files and the Coffer data directory are on tmpfs
# (/dev/shm; about 8 GiB free is needed at the peak).
#
# Usage: bash bench/server.sh            builds (release), runs, prints the ratios, and
#                                         writes the "S3 server" section of docs/benchmarks.md
#        QUICK=1 bash bench/server.sh    small sizes, quick smoke run, docs left alone
#        NO_DOCS=1 bash bench/server.sh  full run, docs left alone
# Other knobs: SMALL_ROUNDS (11), LARGE_ROUNDS (3), RANGE_REPS (300), INFO_HTTP=0 (skip the
# plain-HTTP Coffer row). Honors CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null; then
  echo "bench/server.sh: nginx not found; install it first: apt-get install -y nginx" >&2
  exit 1
fi
if ! nginx -V 2>&1 | grep -q -- --with-http_dav_module; then
  echo "bench/server.sh: this nginx lacks the DAV module (needed for PUT)" >&2
  exit 1
fi

SOURCE=$(git describe --always --dirty 2>/dev/null || echo unknown)
cargo build --release -q -p coffer-cli -p coffer-bench
BIN="${CARGO_TARGET_DIR:-target}/release"
export RUST_LIB_BACKTRACE=0 # s3bench errors: one line, no backtrace

SMALL_ROUNDS=${SMALL_ROUNDS:-11}
LARGE_ROUNDS=${LARGE_ROUNDS:-3}
RANGE_REPS=${RANGE_REPS:-300}
INFO_HTTP=${INFO_HTTP:-1}
SIZES=()
if [ "${QUICK:-0}" = 1 ]; then
  SMALL_ROUNDS=2 LARGE_ROUNDS=1 RANGE_REPS=30
  SIZES=(--large-mib 16 --range-object-mib 64 --rss-mib 256 --rss-part-mib 16)
  NO_DOCS=1
fi

DIR=$(mktemp -d /dev/shm/coffer-s3bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
RESULTS="$DIR/results.jsonl"
: >"$RESULTS"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load: $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- nginx: plain HTTP on loopback, DAV PUT/DELETE, files and body temp files on tmpfs ----
NG="$DIR/nginx"
mkdir -p "$NG/www/bench" "$NG/body"
NPORT=$(free_port)
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
cat >"$NG/nginx.conf" <<EOF
$USER_LINE
worker_processes auto;
daemon off;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_max_body_size 0;
  client_body_buffer_size 1m;
  client_body_temp_path $NG/body;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$NPORT;
    root $NG/www;
    location / {
      dav_methods PUT DELETE;
      create_full_put_path on;
      dav_access user:rw;
    }
  }
}
EOF
nginx -p "$NG" -c "$NG/nginx.conf" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
for _ in $(seq 100); do
  [ -s "$NG/nginx.pid" ] && [ -n "$(pgrep -P "$NGINX_PID" || true)" ] && break
  sleep 0.1
done
NGINX_WORKERS=$(pgrep -P "$NGINX_PID" | paste -sd,)
[ -n "$NGINX_WORKERS" ] || { echo "nginx did not start:" >&2; cat "$NG/error.log" >&2; exit 1; }

start_coffer() { # $1 = data dir, rest = extra flags; sets CPID, ENDPOINT, CA
  local data=$1; shift
  local log="$data.out"
  COFFER_ROOT_ACCESS_KEY=bench COFFER_ROOT_SECRET_KEY=benchsecret \
    "$BIN/coffer" server --data-dir "$data" --listen 127.0.0.1:0 "$@" >"$log" 2>"$data.err" &
  CPID=$!
  PIDS+=("$CPID")
  for _ in $(seq 300); do
    grep -q '^ready' "$log" && break
    kill -0 "$CPID" 2>/dev/null || { cat "$data.err" >&2; exit 1; }
    sleep 0.1
  done
  grep -q '^ready' "$log" || { echo "coffer server did not start" >&2; exit 1; }
  ENDPOINT=$(sed -n 's/^endpoint: //p' "$log")
  CA=$(sed -n 's/^ca-bundle: //p' "$log")
}
COMMON=(--small-rounds 1 --large-rounds 1 --range-reps "$RANGE_REPS" --json "$RESULTS" "${SIZES[@]}")
S3AUTH=(--access-key bench --secret-key benchsecret)

# ---- 1. memory: a freshly started server per mode, one 5 GiB multipart PUT and whole GET ----
for mode in s3 kms c; do
  start_coffer "$DIR/mem-$mode"
  "$BIN/s3bench" --label "sse-$mode" --sse "$mode" --endpoint "$ENDPOINT" --ca-bundle "$CA" \
    "${S3AUTH[@]}" --bucket "mem-$mode" --phases rss --rss-pid "$CPID" --cpu-pids "$CPID" \
    "${COMMON[@]}"
  kill "$CPID"; wait "$CPID" 2>/dev/null || true
  rm -rf "$DIR/mem-$mode"
done

# ---- 2. throughput and latency: all servers up at once, rounds interleaved across them ----
# (this shared 2-core VM's load changes by the minute; interleaving puts nginx and every mode
# under the same conditions, round by round)
declare -A ARGS
ARGS[nginx]="--endpoint http://127.0.0.1:$NPORT --bucket bench --cpu-pids $NGINX_WORKERS"
TARGETS=(nginx)
for mode in s3 kms c; do
  start_coffer "$DIR/coffer-$mode"
  ARGS[sse-$mode]="--sse $mode --endpoint $ENDPOINT --ca-bundle $CA --bucket bench-$mode --rss-pid $CPID --cpu-pids $CPID"
  TARGETS+=("sse-$mode")
done
if [ "$INFO_HTTP" = 1 ]; then
  start_coffer "$DIR/coffer-http" --insecure-http
  ARGS[sse-s3-plain-http]="--sse s3 --endpoint $ENDPOINT --bucket bench-http --rss-pid $CPID --cpu-pids $CPID"
  TARGETS+=(sse-s3-plain-http)
fi
run() { # $1 = target, $2 = phase
  local auth=()
  [ "$1" = nginx ] || auth=("${S3AUTH[@]}")
  # shellcheck disable=SC2086 # ARGS holds words without spaces
  "$BIN/s3bench" --label "$1" ${ARGS[$1]} "${auth[@]}" --phases "$2" "${COMMON[@]}"
}
for r in $(seq "$SMALL_ROUNDS"); do
  echo "-- 100 x 1 MiB, round $r of $SMALL_ROUNDS"
  for t in "${TARGETS[@]}"; do run "$t" small; done
done
for r in $(seq "$LARGE_ROUNDS"); do
  echo "-- 5 x 256 MiB, round $r of $LARGE_ROUNDS"
  for t in "${TARGETS[@]}"; do run "$t" large; done
done
echo "-- range GET latency"
for t in nginx sse-s3 sse-kms sse-c; do run "$t" range; done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== load before: $LOAD_BEFORE, after: $LOAD_AFTER"
cp "$RESULTS" "${RESULTS_COPY:-/dev/null}" 2>/dev/null || true
DOCS_ARGS=()
[ "${NO_DOCS:-0}" = 1 ] || DOCS_ARGS=(--docs docs/benchmarks.md)
python3 bench/server_report.py "$RESULTS" --load-before "$LOAD_BEFORE" --load-after "$LOAD_AFTER" \
  --nginx-version "$(nginx -v 2>&1 | sed 's/.*nginx\///')" --source "$SOURCE" "${DOCS_ARGS[@]}"
