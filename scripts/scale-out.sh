#!/usr/bin/env bash
# The scale-out run: one broadcast room over three corecast instances joined through Redis.
#
# 1. redis-server plus three `corecast --workers 1 --redis ...` instances sharing one port
#    through SO_REUSEPORT; loadgen holds CONNS connections in /broadcast/all (the kernel spreads
#    them over the instances) and one publisher sends RATE messages per second for DURATION:
#    CONNS x RATE deliveries per second, checked for loss, duplicates and order.
# 2. The cost of the Redis hop: a room of SMALL members on one instance, at the same delivery
#    rate, without and then with --redis.
#
#   scripts/scale-out.sh                         50,000 connections, 2 msg/s, 60 s
#   scripts/scale-out.sh --conns 3000 --duration 5 --small 1500     a quick check
#
# Needs redis-server and the release builds (cargo build --release --workspace). Reports go
# to target/scale-out/. Everything it starts it stops, by PID.

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
OUT=$TARGET/scale-out
CONNS=50000 RATE=2 DURATION=60 SMALL=15000 PORT=9998

die() { echo "scale-out.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --conns) CONNS=$2; shift ;;
        --rate) RATE=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --small) SMALL=$2; shift ;;
        --port) PORT=$2; shift ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
[[ -x $BIN/corecast && -x $BIN/loadgen ]] || die "no release builds in $BIN: cargo build --release --workspace"
mkdir -p "$OUT"

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_redis() {
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return
        sleep 0.1
    done
    die "redis-server did not start (see $OUT/redis.log)"
}

# start_instances N [--redis URL]: N single-worker instances on $PORT.
start_instances() {
    local n=$1; shift
    INSTANCES=()
    for i in $(seq "$n"); do
        "$BIN/corecast" --listen "127.0.0.1:$PORT" --workers 1 --no-pin --stats-interval 0 "$@" \
            >"$OUT/corecast-$i.log" 2>&1 &
        PIDS+=($!); INSTANCES+=($!)
    done
    for _ in $(seq 50); do
        python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/healthz', timeout=1)" \
            2>/dev/null && return
        sleep 0.1
    done
    die "corecast did not start (see $OUT/corecast-*.log)"
}

stop_instances() {
    for pid in "${INSTANCES[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}

# run NAME CONNS RATE: one broadcast run in room /broadcast/all; its report is NAME.json.
run() {
    local name=$1 conns=$2 rate=$3
    echo "== $name: $conns members, $rate msg/s published, $((conns * rate)) deliveries/s, ${DURATION}s"
    "$BIN/loadgen" --mode broadcast --url "ws://127.0.0.1:$PORT/broadcast/all" --conns "$conns" \
        --publishers 1 --rate "$rate" --duration "$DURATION" --progress-interval 0 \
        --json "$OUT/$name.json" | tee "$OUT/$name.txt"
}

start_redis
echo "redis-server on 127.0.0.1:$REDIS_PORT"

start_instances 3 --redis "redis://127.0.0.1:$REDIS_PORT"
run three-instances "$CONNS" "$RATE"
stop_instances
# How the kernel spread the members: each instance logs its totals when it stops.
for i in 1 2 3; do
    echo "instance $i: $(grep -o 'handshakes=[0-9]*' "$OUT/corecast-$i.log" | tail -1)"
done

# The Redis hop's cost at the same delivery rate, on one instance.
small_rate=$(( (CONNS * RATE + SMALL - 1) / SMALL ))
start_instances 1
run one-instance "$SMALL" "$small_rate"
stop_instances
start_instances 1 --redis "redis://127.0.0.1:$REDIS_PORT"
run one-instance-redis "$SMALL" "$small_rate"
stop_instances

python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
def row(name):
    r = json.load(open(f"{out}/{name}.json"))
    lat = r.get("latency_us", {}) or {}
    msgs = r.get("messages", {})
    return name, msgs.get("received"), msgs.get("lost"), msgs.get("duplicates"), lat.get("p50"), lat.get("p99"), lat.get("p99_9")
print("| run | received | lost | duplicate | p50 µs | p99 µs | p99.9 µs |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name in ["three-instances", "one-instance", "one-instance-redis"]:
    try:
        print("| %s | %s | %s | %s | %s | %s | %s |" % row(name))
    except (OSError, KeyError, ValueError) as e:
        print(f"| {name} | report unreadable: {e} |")
EOF
