#!/usr/bin/env bash
# Load benchmark: the waypoint (plain listener, one worker thread, pinned to
# one core) beside nginx and HAProxy doing the same routing job, in one run,
# through the shared harness (../shared/bench/run-peers.sh, see its README).
# A floor row (benches/pingora_floor.rs: a bare Pingora ProxyHttp doing the
# same job) shows what Pingora itself costs here. Prints requests/s,
# p50/p99, CPU per request and RSS for every row.
#
#   benches/load.sh                 # waypoint + floor + nginx + haproxy, 3 rounds
#   REPEATS=1 DURATION=5 benches/load.sh
#   BASELINE_BIN=/path/to/older/waypoint benches/load.sh   # adds a before/after row
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
harness="${HARNESS:-$repo/../shared/bench/run-peers.sh}"
[ -x "$harness" ] || [ -f "$harness" ] || { echo "harness not found: $harness" >&2; exit 2; }

cargo build --release --manifest-path "$repo/Cargo.toml"
bin="$repo/target/release/waypoint"
floor_bin="$(cargo build --release --manifest-path "$repo/Cargo.toml" \
    --bench pingora_floor --message-format=json-render-diagnostics |
  sed -n 's/.*"target":{[^}]*"name":"pingora_floor".*"executable":"\([^"]*\)".*/\1/p' | tail -1)"
[ -x "$floor_bin" ] || { echo "pingora_floor not found after the build" >&2; exit 1; }

export PROXY_NAME=waypoint PROXY_PORT=18195
# SIGINT: stop at once instead of draining (the harness waits 5 s otherwise).
export PROXY_STOP_SIGNAL=INT
# The waypoint serves both ports from one Service; the h2c listener is the
# same plain listener (h2c is detected per connection), so a second process
# would double-count: listen on 18195 and let the harness's h2 test use it.
export PROXY_H2_PORT=18195
export PROXY_CMD="$bin run --config $here/waypoint-bench.yaml --namespace bench --http-listen 127.0.0.1:18195 --admin-listen 127.0.0.1:18197 --threads 1"

export PROXY2_NAME=pingora-floor PROXY2_PORT=18198
export PROXY2_CMD="$floor_bin 127.0.0.1:18198 127.0.0.1:18081 127.0.0.1:18082"

if [ -n "${BASELINE_BIN:-}" ]; then
  # Requests carry `Host: 127.0.0.1:<port>`: the baseline's copy of the config
  # names its own port.
  baseline_cfg="$(mktemp -d)/waypoint-bench.yaml"
  sed 's/18195/18199/g' "$here/waypoint-bench.yaml" > "$baseline_cfg"
  export PROXY3_NAME=waypoint-baseline PROXY3_PORT=18199 PROXY3_H2_PORT=18199
  export PROXY3_CMD="$BASELINE_BIN run --config $baseline_cfg --namespace bench --http-listen 127.0.0.1:18199 --admin-listen 127.0.0.1:18200 --threads 1"
fi
exec bash "$harness" "$@"
