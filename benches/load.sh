#!/usr/bin/env bash
# Load benchmark: the waypoint (plain listener, one worker thread, pinned to
# one core) beside nginx and HAProxy doing the same routing job, in one run,
# through the shared harness (../shared/bench/run-peers.sh, see its README).
# Prints requests/s, p50/p99, CPU per request and RSS for every row.
#
#   benches/load.sh                 # waypoint + nginx + haproxy, 3 rounds
#   REPEATS=1 DURATION=5 benches/load.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
harness="${HARNESS:-$repo/../shared/bench/run-peers.sh}"
[ -x "$harness" ] || [ -f "$harness" ] || { echo "harness not found: $harness" >&2; exit 2; }

cargo build --release --manifest-path "$repo/Cargo.toml"
bin="$repo/target/release/waypoint"

export PROXY_NAME=waypoint PROXY_PORT=18195
# SIGINT: stop at once instead of draining (the harness waits 5 s otherwise).
export PROXY_STOP_SIGNAL=INT
# The waypoint serves both ports from one Service; the h2c listener is the
# same plain listener (h2c is detected per connection), so a second process
# would double-count: listen on 18195 and let the harness's h2 test use it.
export PROXY_H2_PORT=18195
export PROXY_CMD="$bin run --config $here/waypoint-bench.yaml --namespace bench --http-listen 127.0.0.1:18195 --admin-listen 127.0.0.1:18197 --threads 1"
exec bash "$harness" "$@"
