#!/usr/bin/env bash
# Mesh-path load benchmark (issue #3): HBONE client -> waypoint -> HBONE ->
# fake destination ztunnel -> backend, beside the plain path (HTTP/1.1 ->
# waypoint -> backend) and the two paths without the waypoint, in one run.
#
# The release waypoint runs pinned to core 0 with one worker thread. The load
# program (benches/mesh_path), the backends and the fake ztunnel share core 1.
# Loopback only: the waypoint on 127.0.77.1, the ambient pod and its ztunnel on
# 127.0.77.10 (:18080, :15008), the plain pod on 127.0.77.20:18080.
#
# Rows, each at a fixed $RATE req/s ("rate") and at saturation ("sat"):
#   direct        HTTP/1.1 client -> plain pod
#   ztunnel-only  HBONE client -> destination ztunnel -> ambient pod (no waypoint)
#   plain         HTTP/1.1 client -> waypoint --http-listen -> plain pod
#   mesh          HBONE client -> waypoint :15008 -> HBONE -> ztunnel -> ambient pod
#
#   benches/mesh-load.sh                     # 3 rounds of 10 s per row (~5 min after the build)
#   DURATION=2 REPEATS=1 benches/mesh-load.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
target="${CARGO_TARGET_DIR:-$repo/target}"

DURATION="${DURATION:-10}"          # seconds per measured window
WARMUP="${WARMUP:-1}"               # seconds before each window (not counted)
REPEATS="${REPEATS:-3}"             # rounds; the tables show medians
RATE="${RATE:-1000}"                # req/s of the "rate" test
STREAMS="${STREAMS:-16}"            # connections / CONNECT streams at $RATE
SAT_STREAMS="${SAT_STREAMS:-32}"    # connections / CONNECT streams at saturation
CONNS="${CONNS:-4}"                 # HBONE HTTP/2 connections (client ztunnels)
BODY_BYTES="${BODY_BYTES:-1024}"    # response body size
PROXY_CORE="${PROXY_CORE:-0}"
LOAD_CORE="${LOAD_CORE:-1}"
# rr:1 or fifo:1 runs everything started here as real-time tasks (see the shared harness's
# README, "Noisy machines": usable on a busy machine, but saturation p99 then shows the
# kernel's real-time throttling stalls).
SCHED="${SCHED:-}"
RESULTS="${RESULTS:-${TMPDIR:-/tmp}/waypoint-mesh-bench-results/$(date +%Y%m%d-%H%M%S)}"

wp_ip=127.0.77.1 mesh_pod=127.0.77.10 plain_pod=127.0.77.20

# Phase 1: build. The waypoint as shipped, then the helper (needs `testing`).
cargo build --release --manifest-path "$repo/Cargo.toml"
tool_bin="$(cargo build --release --manifest-path "$repo/Cargo.toml" --features testing \
    --bench mesh_path --message-format=json-render-diagnostics |
  sed -n 's/.*"target":{[^}]*"name":"mesh_path".*"executable":"\([^"]*\)".*/\1/p' | tail -1)"
[ -x "$tool_bin" ] || { echo "mesh_path helper not found after the build" >&2; exit 1; }

mkdir -p "$RESULTS"
run="$(mktemp -d "${TMPDIR:-/tmp}/waypoint-mesh-bench.XXXXXX")"
# Private copies: other builds into the shared target dir cannot swap them mid-run.
cp "$target/release/waypoint" "$run/waypoint"
cp "$tool_bin" "$run/mesh_path"
tool="$run/mesh_path"

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits up to 30 s for "$@" to succeed.
wait_for() {
  local what="$1"; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$what did not come up; logs in $RESULTS" >&2
  exit 1
}

# Phase 2: certificates, the destination side, the waypoint.
sched=()
[ -z "$SCHED" ] || sched=(chrt "--${SCHED%%:*}" "${SCHED#*:}")
"$tool" mint "$run/certs"
"${sched[@]}" taskset -c "$LOAD_CORE" "$tool" serve --certs "$run/certs/ztunnel" \
  --ztunnel "$mesh_pod:15008" --body-bytes "$BODY_BYTES" \
  --backend "mesh-pod=$mesh_pod:18080" --backend "plain-pod=$plain_pod:18080" \
  >"$RESULTS/serve.log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")
wait_for "backends and fake ztunnel" grep -qx ready "$RESULTS/serve.log"

"${sched[@]}" taskset -c "$PROXY_CORE" "$run/waypoint" run --config "$here/waypoint-bench-mesh.yaml" \
  --namespace bench --threads 1 --cert-dir "$run/certs/waypoint" \
  --http-listen "$wp_ip:18080" --hbone-listen "$wp_ip:15008" --admin-listen "$wp_ip:15000" \
  >"$RESULTS/waypoint.log" 2>&1 &
wp_pid=$!
pids+=("$wp_pid")
# Every listener is bound before the admin endpoint answers.
wait_for "waypoint" curl -fsS "http://$wp_ip:15000/healthz/ready"

out="$RESULTS/results.jsonl"
sleep 1
echo "{\"test\":\"idle\",\"proxy_rss_kib\":$(awk '/^VmRSS:/{print $2}' "/proc/$wp_pid/status")}" >>"$out"
{ echo "start: $(date -Is)"; uptime; } >"$RESULTS/machine.txt"

# Phase 3: the rounds. Every load program runs on the load core.
load() {
  "${sched[@]}" taskset -c "$LOAD_CORE" "$tool" load --out "$out" --duration "$DURATION" --warmup "$WARMUP" \
    --clk-tck "$(getconf CLK_TCK)" --serve-pid "$serve_pid" "$@" >/dev/null
}
client_certs="$run/certs/client"
for round in $(seq "$REPEATS"); do
  for test in rate sat; do
    if [ "$test" = rate ]; then shape=(--rate "$RATE" --streams "$STREAMS"); else shape=(--rate 0 --streams "$SAT_STREAMS"); fi
    echo "round $round/$REPEATS: $test" >&2
    load --test "$test" "${shape[@]}" --name direct \
      --via http --addr "$plain_pod:18080" --host plain:80 --expect-backend plain-pod
    load --test "$test" "${shape[@]}" --name ztunnel-only --baseline direct \
      --via hbone --addr "$mesh_pod:15008" --authority "$mesh_pod:18080" --conns "$CONNS" \
      --certs "$client_certs" --host mesh:80 --expect-backend mesh-pod
    load --test "$test" "${shape[@]}" --name plain --baseline direct --pid "$wp_pid" \
      --via http --addr "$wp_ip:18080" --host plain:80 --expect-backend plain-pod
    load --test "$test" "${shape[@]}" --name mesh --baseline ztunnel-only --pid "$wp_pid" \
      --via hbone --addr "$wp_ip:15008" --authority 10.96.77.10:80 --conns "$CONNS" \
      --certs "$client_certs" --host mesh:80 --expect-backend mesh-pod
  done
done
{ echo "end: $(date -Is)"; uptime; grep -E '^Vm(HWM|RSS):' "/proc/$wp_pid/status"; } >>"$RESULTS/machine.txt"

# Phase 4: stop the destination side (it prints what crossed the fake ztunnel), report.
kill -TERM "$serve_pid"
wait "$serve_pid" || true
{
  echo "## Mesh-path load ($(date -I)): RATE=$RATE STREAMS=$STREAMS SAT_STREAMS=$SAT_STREAMS CONNS=$CONNS DURATION=$DURATION REPEATS=$REPEATS BODY_BYTES=$BODY_BYTES SCHED=${SCHED:-normal}"
  echo
  "$tool" report "$out"
  echo
  echo '```'
  cat "$RESULTS/machine.txt"
  grep -v '^ready$' "$RESULTS/serve.log"
  echo '```'
} | tee "$RESULTS/summary.md"
echo "results: $RESULTS" >&2
