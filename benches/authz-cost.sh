#!/usr/bin/env bash
# Cost of AuthorizationPolicy on the request path: the benchmark's routing job
# with and without a 10-rule ALLOW policy (plus a 2-rule DENY), side by side
# in one run of the shared harness.
#
#   REPEATS=2 DURATION=8 TESTS="sat rate" bash benches/authz-cost.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
harness="${HARNESS:-$repo/../shared/bench/run-peers.sh}"
cargo build --release --manifest-path "$repo/Cargo.toml"
bin="$repo/target/release/waypoint"
export PEERS="${PEERS-}" H2="${H2:-0}" PROXY_STOP_SIGNAL=INT
export PROXY_NAME=routing PROXY_PORT=18195 PROXY_CMD="$bin run --config $here/waypoint-bench.yaml --namespace bench --http-listen 127.0.0.1:18195 --admin-listen 127.0.0.1:18197 --threads 1"
# The second candidate listens on 18198, so its Service port must match.
sed 's/18195/18198/g' "$here/waypoint-bench-authz.yaml" > "${TMPDIR:-/tmp}/waypoint-bench-authz.yaml"
export PROXY2_NAME=routing+authz PROXY2_PORT=18198 PROXY2_CMD="$bin run --config ${TMPDIR:-/tmp}/waypoint-bench-authz.yaml --namespace bench --http-listen 127.0.0.1:18198 --admin-listen 127.0.0.1:18199 --threads 1"
exec bash "$harness" "$@"
