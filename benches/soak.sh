#!/usr/bin/env bash
# Soak run (issue 15): the release waypoint under a fixed mixed load for $DURATION
# seconds: HTTP/1.1, h2c and HBONE clients over routes with retries, a fault abort
# and a timeout, while the config is rewritten every 10 s, a backend of the retried
# Service is killed and restarted every minute and the waypoint's certificate
# rotates every 5 minutes. Every request is counted as answered, failed by policy
# or failed unexpectedly (must be 0); RSS, open fds and p99 are sampled every 10 s.
#
# Loopback only: the waypoint on 127.0.209.1 (:15001 HTTP/h2c, :15000 admin,
# :15008 HBONE), echo backends on 127.0.210.1-8:18080. The driver is
# benches/soak/main.rs; it writes soak.csv, soak.svg, summary.md and
# waypoint.log into $OUT and exits non-zero on a failed verdict.
#
#   benches/soak.sh                                  # 30 minutes at 300 req/s
#   DURATION=150 WARMUP=30 ROTATE_EVERY=60 benches/soak.sh   # smoke run
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"

DURATION="${DURATION:-1800}"        # seconds of load
RATE="${RATE:-300}"                 # total requests/s; low enough not to saturate 2 cores
WARMUP="${WARMUP:-60}"              # RSS and fds must be flat after this many seconds
RELOAD_EVERY="${RELOAD_EVERY:-10}"  # seconds between config rewrites
KILL_EVERY="${KILL_EVERY:-60}"      # seconds between backend kills
ROTATE_EVERY="${ROTATE_EVERY:-300}" # seconds between certificate rotations
OUT="${OUT:-${TMPDIR:-/tmp}/waypoint-soak/$(date +%Y%m%d-%H%M%S)}"

# Phase 1: build the waypoint and the driver in one cargo run. The driver needs
# the `testing` feature (test CA, HBONE client headers); building the binary with
# it too compiles the crate once instead of twice, and the feature only adds code
# the binary never calls.
tool_bin="$(cargo build --release --manifest-path "$repo/Cargo.toml" --features testing \
    --bin waypoint --bench soak --message-format=json-render-diagnostics |
  sed -n 's/.*"target":{[^}]*"name":"soak".*"executable":"\([^"]*\)".*/\1/p' | tail -1)"
[ -x "$tool_bin" ] || { echo "soak driver not found after the build" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-$repo/target}"

# Private copies: other builds into the shared target dir cannot swap them mid-run.
mkdir -p "$OUT"
cp "$target/release/waypoint" "$OUT/waypoint"
cp "$tool_bin" "$OUT/soak"

# Phase 2: the run. The driver starts and stops the waypoint itself (and kills it
# if the driver fails or is interrupted).
exec "$OUT/soak" --waypoint "$OUT/waypoint" --out "$OUT" \
  --duration "$DURATION" --rate "$RATE" --warmup "$WARMUP" \
  --reload-every "$RELOAD_EVERY" --kill-every "$KILL_EVERY" --rotate-every "$ROTATE_EVERY" \
  --clk-tck "$(getconf CLK_TCK)"
