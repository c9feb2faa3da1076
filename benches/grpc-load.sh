#!/usr/bin/env bash
# gRPC load benchmark (issue 13): h2 unary calls with h2load (Debian's
# nghttp2-client) through the waypoint's plain listener, routed by a
# GRPCRoute method match to an HTTP/2 backend, beside the same load straight
# to the backend. Every call POSTs one fixed gRPC frame (an empty message)
# with `content-type: application/grpc`; the backend (benches/grpc_backend.rs)
# answers an empty message and `grpc-status: 0` in the trailers.
#
# The release waypoint runs pinned to core $PROXY_CORE with one worker
# thread; the backend and h2load share core $LOAD_CORE. Loopback only: the
# waypoint on 127.0.100.80:18295, the backend on 127.0.100.90:19090.
# Prints req/s for both rows and the waypoint's CPU per request (utime +
# stime from /proc over the measured window).
#
#   benches/grpc-load.sh                       # 3 rounds of 10 s per row
#   DURATION=5 REPEATS=1 benches/grpc-load.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
target="${CARGO_TARGET_DIR:-$repo/target}"

DURATION="${DURATION:-10}"     # seconds per measured window
WARMUP="${WARMUP:-1}"          # seconds of h2load warm-up (not counted)
REPEATS="${REPEATS:-3}"        # rounds; the table shows each round and the median
CONNS="${CONNS:-8}"            # h2 connections
STREAMS="${STREAMS:-16}"       # concurrent streams per connection
PROXY_CORE="${PROXY_CORE:-0}"
LOAD_CORE="${LOAD_CORE:-1}"

command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 2; }
command -v taskset >/dev/null || { echo "taskset missing: apt-get install util-linux" >&2; exit 2; }

cargo build --release --manifest-path "$repo/Cargo.toml" --bin waypoint --bench grpc_backend
bin="$target/release/waypoint"
backend_bin="$(ls -t "$target"/release/deps/grpc_backend-* | grep -v '\.d$' | head -1)"
[ -x "$backend_bin" ] || { echo "grpc_backend not found after the build" >&2; exit 1; }

wp=127.0.100.80:18295 admin=127.0.100.80:18297 backend=127.0.100.90:19090
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# One gRPC frame: not compressed, length 0 (an empty protobuf message).
printf '\x00\x00\x00\x00\x00' > "$work/frame"

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}

taskset -c "$LOAD_CORE" "$backend_bin" "$backend" 2>"$work/backend.log" &
pids+=($!)
taskset -c "$PROXY_CORE" "$bin" run --config "$here/waypoint-bench-grpc.yaml" --namespace bench \
  --http-listen "$wp" --admin-listen "$admin" --threads 1 2>"$work/waypoint.log" &
wp_pid=$!
pids+=("$wp_pid")
wait_port "$backend"
wait_port "$wp"

# utime + stime of the waypoint, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$wp_pid/stat"; }
hz="$(getconf CLK_TCK)"

h2() {
  taskset -c "$LOAD_CORE" h2load -c "$CONNS" -m "$STREAMS" \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$work/frame" "$@"
}

# h2load against $1 for $DURATION s after an unmeasured warm-up; leaves its
# output in $work/h2load.out and prints "req/s succeeded".
load() {
  h2 -n 5000 "http://$1/bench.Echo/Unary" > /dev/null
  ticks > "$work/before"
  h2 -D "$DURATION" "http://$1/bench.Echo/Unary" > "$work/h2load.out"
  ticks > "$work/after"
  awk '/^finished in/ { gsub(",", ""); rps = $4 }
       /^requests:/   { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^succeeded/) ok = $i }
       END { print rps, ok }' "$work/h2load.out"
}

printf '%-6s %-10s %12s %12s %16s\n' round row "req/s" succeeded "CPU ms/10k req"
wp_rows=() direct_rows=() cpu_rows=()
for round in $(seq "$REPEATS"); do
  load "$backend" > "$work/row"
  read -r rps ok < "$work/row"
  printf '%-6s %-10s %12s %12s %16s\n' "$round" direct "$rps" "$ok" -
  direct_rows+=("$rps")

  load "$wp" > "$work/row"
  read -r rps ok < "$work/row"
  # The waypoint's CPU over the measured window, per succeeded call.
  before="$(cat "$work/before")" after="$(cat "$work/after")"
  cpu="$(awk -v t=$((after - before)) -v hz="$hz" -v n="$ok" 'BEGIN { printf "%.0f", t * 1000 / hz / n * 10000 }')"
  printf '%-6s %-10s %12s %12s %16s\n' "$round" waypoint "$rps" "$ok" "$cpu"
  wp_rows+=("$rps") cpu_rows+=("$cpu")
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "median over $REPEATS rounds ($CONNS conns x $STREAMS streams, ${DURATION}s):"
echo "  direct    $(median "${direct_rows[@]}") req/s"
echo "  waypoint  $(median "${wp_rows[@]}") req/s, $(median "${cpu_rows[@]}") CPU ms / 10k calls"
grep -i "warn\|error" "$work/waypoint.log" | head -5 || true
# Every call must have been a backend's OK, not a local gRPC answer.
echo "waypoint's calls by grpc_response_status:"
curl -s "http://$admin/stats/prometheus" |
  awk '/^istio_requests_total\{/ && match($0, /grpc_response_status="[^"]*"/) {
         n[substr($0, RSTART + 22, RLENGTH - 23)] += $NF
       }
       END { for (k in n) printf "  %s: %d\n", (k == "" ? "(none)" : k), n[k] }'
