#!/usr/bin/env bash
# User-space instructions per echoed message, counted by valgrind's callgrind: a figure this
# noisy shared machine cannot blur, for the part of the work a server's own code decides.
#
# Each server runs under callgrind twice, driven by loadgen at the same fixed rate for a short
# and a long window; the difference in instructions over the difference in messages is the
# cost of one more message, with start-up and connection set-up cancelled out. Kernel work
# (the loopback TCP that is ~90% of the CPU time, see docs/benchmarks.md) is not counted:
# this measures only what the servers' own code costs, at a rate where nearly every message
# is a wakeup of its own.
#
#   benches/instructions.sh                    corecast, fastwebsockets, tokio-tungstenite, ceiling-epoll
#   benches/instructions.sh --servers corecast,old --variant old=/path/to/old/corecast
#
# Needs valgrind, taskset, python3, and the builds benches/compare.sh makes (it does not build).

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
declare -A VARIANT=()
# shellcheck source=benches/servers.sh
source "$ROOT/benches/servers.sh"
SERVERS=corecast,fastwebsockets,tokio-tungstenite,ceiling-epoll
RATE=2000 SIZE=512 CONNS=100 SHORT=3 LONG=6 PORT=19600
OUT=$TARGET/instructions

die() { echo "instructions.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --servers) SERVERS=$2; shift ;;
        --variant) [[ $2 == *=* ]] || die "--variant takes NAME=CMD"; VARIANT[${2%%=*}]=${2#*=}; shift ;;
        --rate) RATE=$2; shift ;;
        --size) SIZE=$2; shift ;;
        --conns) CONNS=$2; shift ;;
        --windows) SHORT=${2%,*} LONG=${2#*,}; shift ;;
        --out) OUT=$2; shift ;;
        --port) PORT=$2; shift ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
            echo "Options: --servers LIST --variant NAME=CMD --rate N [$RATE] --size N [$SIZE] --conns N [$CONNS] --windows S,L [$SHORT,$LONG] --out DIR --port N [$PORT] (first of the ports used; runs at the same time need different ones)"
            exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
command -v valgrind >/dev/null || die "valgrind not found"
[[ -x $BIN/loadgen ]] || die "no $TARGET/release/loadgen: run benches/compare.sh (or cargo build --release --workspace) first"
for name in ${SERVERS//,/ }; do
    server_known "$name" || die "unknown server $name (define it with --variant $name=CMD)"
done
mkdir -p "$OUT"

VG_PID=
trap '[[ -n $VG_PID ]] && kill -KILL "$VG_PID" 2>/dev/null; true' EXIT

# One run: prints "instructions messages".
run() {
    local name=$1 secs=$2 port cmd file
    PORT=$((PORT + 1)); port=$PORT
    mapfile -t cmd < <(server_cmd "$name" "127.0.0.1:$port")
    file=$OUT/$name.$secs.callgrind
    rm -f "$file"*
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$file" "${cmd[@]}" >"$OUT/$name.$secs.log" 2>&1 &
    VG_PID=$!
    for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
    taskset -c 1 "$BIN/loadgen" --url "ws://127.0.0.1:$port/echo" --cpus 1 --threads 1 \
        --conns "$CONNS" --size "$SIZE" --rate "$RATE" --duration "${secs}s" --warmup 1s \
        --progress-interval 0 --json "$OUT/$name.$secs.json" >"$OUT/$name.$secs.loadgen.log" 2>&1 \
        || die "loadgen failed against $name (see $OUT/$name.$secs.loadgen.log)"
    # Dump the counts now: not every server writes them on the way out.
    callgrind_control -d "$VG_PID" >/dev/null 2>&1
    kill -KILL "$VG_PID" 2>/dev/null || true
    wait "$VG_PID" 2>/dev/null || true
    VG_PID=
    python3 - "$OUT/$name.$secs.json" "$file" <<'PY'
import glob, json, sys
report = json.load(open(sys.argv[1]))
total = 0
for path in glob.glob(sys.argv[2] + "*"):
    for line in open(path):
        if line.startswith(("summary:", "totals:")):
            total += int(line.split()[1])
if not report.get("ok") or total == 0:
    sys.exit(f"bad run: ok={report.get('ok')} instructions={total}")
print(total, report["messages"]["received"])
PY
}

echo "user-space instructions per echoed message ($CONNS conns x $SIZE B at $RATE msg/s; windows ${SHORT}s and ${LONG}s)"
results=()
for name in ${SERVERS//,/ }; do
    read -r i1 m1 < <(run "$name" "$SHORT")
    read -r i2 m2 < <(run "$name" "$LONG")
    per=$(( (i2 - i1) / (m2 - m1) ))
    printf '%-20s %8d instructions/msg   (%d msgs: %d; %d msgs: %d)\n' "$name" "$per" "$m1" "$i1" "$m2" "$i2"
    results+=("\"$name\": {\"per_msg\": $per, \"short\": [$m1, $i1], \"long\": [$m2, $i2]}")
done
printf '{"rate": %s, "size": %s, "conns": %s, "git": "%s", "servers": {%s}}\n' "$RATE" "$SIZE" "$CONNS" \
    "$(git -C "$ROOT" rev-parse --short HEAD)" "$(IFS=,; echo "${results[*]}")" >"$OUT/results.json"
echo "wrote $OUT/results.json"
