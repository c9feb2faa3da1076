#!/usr/bin/env bash
# Cost of traffic policy on the request path: the same VirtualService route
# with and without timeout/retries/fault and DestinationRule pools/outlier
# detection, measured side by side in one run of the shared harness.
#
#   benches/policy-cost.sh            # REPEATS/DURATION etc. as in the harness
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
harness="${HARNESS:-$repo/../shared/bench/run-peers.sh}"
cargo build --release --manifest-path "$repo/Cargo.toml"
bin="$repo/target/release/waypoint"
run() { echo "$bin run --config $here/$1 --namespace bench --http-listen 127.0.0.1:$2 --admin-listen 127.0.0.1:$3 --threads 1"; }
export PEERS="${PEERS-}" H2="${H2:-0}" PROXY_STOP_SIGNAL=INT
export PROXY_NAME=vs-plain PROXY_PORT=18195 PROXY_CMD="$(run waypoint-bench-vs.yaml 18195 18197)"
# The second candidate listens on 18198, so its Service port must match.
sed 's/port: 18195/port: 18198/' "$here/waypoint-bench-policy.yaml" > "${TMPDIR:-/tmp}/waypoint-bench-policy.yaml"
export PROXY2_NAME=vs-policy PROXY2_PORT=18198 PROXY2_CMD="$bin run --config ${TMPDIR:-/tmp}/waypoint-bench-policy.yaml --namespace bench --http-listen 127.0.0.1:18198 --admin-listen 127.0.0.1:18199 --threads 1"
exec bash "$harness" "$@"
