#!/usr/bin/env bash
# soak.sh: hold many echo connections against one corecast instance at a steady rate and
# record the server's memory over time.
#
# usage: scripts/soak.sh [CONNS] [DURATION] [RATE] [OUTDIR]
#        defaults: 19000 connections, 10m, 5000 msg/s in total, target/soak
#
# The server runs pinned to core 0 (--workers 1), loadgen to core 1. The server's RSS is
# sampled every 10 s into OUTDIR/rss.tsv; loadgen's report goes to OUTDIR/loadgen.{txt,json}.
# Exit status: loadgen's (non-zero when anything was lost or a connection failed).
set -euo pipefail
conns="${1:-19000}"
duration="${2:-10m}"
rate="${3:-5000}"
out="${4:-target/soak}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --bin corecast -p corecast -q
cargo build --release -p loadgen -q
mkdir -p "$out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

taskset -c 0 "$target/release/corecast" --listen "127.0.0.1:$port" --workers 1 --stats-interval 60s \
    2>"$out/server.log" &
server=$!
sampler=""
cleanup() {
    [[ -n "$sampler" ]] && kill "$sampler" 2>/dev/null || true
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
}
trap cleanup EXIT
sleep 0.5
start=$(date +%s)
printf 'seconds\trss_kib\n' >"$out/rss.tsv"
( while kill -0 "$server" 2>/dev/null; do
      printf '%s\t%s\n' "$(( $(date +%s) - start ))" "$(awk '/VmRSS/ {print $2}' "/proc/$server/status")"
      sleep 10
  done >>"$out/rss.tsv" ) &
sampler=$!

set +e
taskset -c 1 "$target/release/loadgen" --url "ws://127.0.0.1:$port/echo" --conns "$conns" \
    --rate "$rate" --duration "$duration" --warmup 30s --threads 1 --json "$out/loadgen.json" \
    | tee "$out/loadgen.txt"
status=${PIPESTATUS[0]}
set -e
# With every connection gone, what the server still holds is what it would leak.
sleep 15
echo "server RSS 15 s after the last connection closed: $(awk '/VmRSS/ {print $2}' "/proc/$server/status") KiB"
echo "rss samples: $out/rss.tsv"
exit "$status"
