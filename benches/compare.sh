#!/usr/bin/env bash
# Side-by-side comparison of corecast with its peer servers (issue 5).
#
# Every server runs alone, pinned to one core (corecast with --workers 1), driven by loadgen
# pinned to another core, one server at a time, the same client and the same run for all.
# Within each measurement the servers take turns (corecast, peer, peer, ..., then again for the
# next repetition), so slow phases of a noisy machine hit every server alike; the report is the
# median of the repetitions.
#
#   benches/compare.sh                 everything: build, measure, table, JSON, SVG
#   benches/compare.sh --quick         one repetition, short runs, a smaller idle test
#   benches/compare.sh --only echo,cpu --servers corecast,fastwebsockets
#   UWS_BIN=DIR benches/compare.sh --only uws-client --servers corecast,uws,fastwebsockets
#   benches/compare.sh --only bcast-max --rooms 1000
#   benches/compare.sh --help
#
# uWebSockets (server `uws`, and its C client for the uws-client test) is measured when UWS_BIN
# names a directory holding uws-echo (benches/peers/uws/echo.cpp built against uWS) and
# uws-load-test (uWS's benchmarks/load_test.c requesting /echo); without them both are skipped
# with the reason printed. uWS is never part of this repository: see benches/peers/README.md.
#
# Output (default $CARGO_TARGET_DIR/compare, CARGO_TARGET_DIR defaulting to target/):
#   results.json   medians, every repetition, ratios, the machine and the command
#   table.md       the table printed at the end
#   chart.svg      benches/chart.py's rendering of results.json
#   latency.svg    the latency test's percentile distributions, one line per server
#                  (benches/compare/percentile_plot.py over the runs' .hgrm files)
#   raw/           loadgen's JSON report and server logs of every single run
#
# Needs: cargo, taskset, python3 (stdlib only); node + npm for the node-ws peer (skipped
# without them). Servers bind 127.0.0.1 ports from --port (default 19100) upward.
#
# Tests: echo, cpu, latency, idle, broadcast (loadgen); uws-client (the echo rows driven by
# uWS's closed-loop C client, medians of its 4-second Msg/sec samples); bcast-max (for each room
# size, the highest delivery rate a server sustains with fan-out p99 under --bcast-p99-ms and
# nothing lost, found by geometric steps then bisection; not in the default set, it is long).

set -euo pipefail

ARGS=("$@")
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ---------------------------------------------------------------------------------------------
# Options

ALL_TESTS=echo,cpu,latency,idle,broadcast,uws-client,bcast-max
DEFAULT_TESTS=echo,cpu,latency,idle,broadcast,uws-client
ALL_SERVERS=corecast,tokio-tungstenite,fastwebsockets,node-ws   # and uws with UWS_BIN

ONLY=$DEFAULT_TESTS
SERVERS=
UWS_BIN=${UWS_BIN:-}
REPS=3
DURATION=5          # seconds measured per throughput run
WARMUP=1            # seconds of unmeasured traffic before it
OPEN_DURATION=10    # seconds measured per open-loop run (cpu, latency, broadcast)
ECHO_CASES=100x16,500x16,100x512,500x512,100x16384,500x16384
CPU_RATE=10000      # msgs/s for the CPU-per-message run (100 connections x 512 B)
LATENCY_RATE=       # msgs/s for the latency run; default: half the slowest 100x512 peak
LATENCY_FALLBACK=10000
IDLE_CONNS=19000
IDLE_SETTLE=5       # seconds between the end of the ramp and the memory reading
ROOMS=1000,10000
BCAST_DELIVERIES=50000,150000   # deliveries/s offered to every room (publish rate = this /
                                # members): one level every server keeps up with, one beyond
                                # some servers' capacity
BCAST_SIZE=64
UWSC_CASES=100x16,100x512,500x16,500x512,100x16384,500x16384
UWSC_SAMPLES=5      # 4-second Msg/sec samples measured per uws-client run ...
UWSC_DISCARD=1      # ... after this many lines (the first covers the ramp and part of an interval)
BCAST_P99_MS=100    # bcast-max: the p99 a sustained rate must stay under (and 0 lost)
BCAST_START=50000   # bcast-max: first deliveries/s tried
BCAST_STEP=1.5      # bcast-max: factor between rates until the first failure
BCAST_PRECISION=0.05  # bcast-max: bisect until the failing rate is within this of the passing one
BCAST_PROBES=12     # bcast-max: at most this many rates tried per search
BCAST_TRIES=2       # bcast-max: a rate fails only when this many runs at it fail (a noisy
                    # machine makes false failures: one latency spike is enough)
SERVER_CPU=0
CLIENT_CPU=1
QUIET_WAIT=60       # seconds to wait for other work on the two cores to calm down
QUIET_BUSY=20       # percent busy that counts as calm
MAX_OTHER=5         # a run during which other work took more of the two cores is repeated
ATTEMPTS=3          # ... at most this many times in all
BACKGROUND_PCT=-1
PORT=19100
BUILD=1
SYSCALLS=0
BUSY_POLL=1
OUT=
declare -A VARIANT=()   # name -> "binary args..." (started like corecast)

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    cat <<EOF
Options:
  --quick                 1 repetition, 2 s runs, idle test at 2,000 connections, 2 samples
                          per uws-client run
  --only LIST             tests to run, from: $ALL_TESTS [default: $DEFAULT_TESTS]
  --servers LIST          servers in order, the first is the baseline of the ratios
                          [default: $ALL_SERVERS, and uws when UWS_BIN is usable]; also
                          uws (needs UWS_BIN), ceiling-epoll and ceiling-uring,
                          benches/peers/ceiling: an echo with no WebSocket library, the floor
                          any server meets on this kernel (echo, cpu, latency, idle only)
  --variant NAME=CMD      an extra corecast-like server: CMD is "BINARY [ARGS...]", started with
                          --listen ADDR --workers 1 --stats-interval 0 ARGS (add NAME to --servers)
  --reps N                repetitions of every measurement [default: $REPS]
  --duration S            measured seconds per closed-loop run [default: $DURATION]
  --open-duration S       measured seconds per open-loop run [default: $OPEN_DURATION]
  --echo-cases LIST       CONNSxBYTES echo throughput cases, 1 message in flight per
                          connection, or CONNSxBYTES/N for N in flight [default: $ECHO_CASES]
  --cpu-rate N            msgs/s of the CPU-per-message run [default: $CPU_RATE]
  --latency-rate N        msgs/s of the latency run [default: half the slowest server's
                          100x512 echo peak from this run, else $LATENCY_FALLBACK]
  --idle-conns N          idle connections for the memory test [default: $IDLE_CONNS]
  --rooms LIST            broadcast room sizes [default: $ROOMS]
  --bcast-deliveries LIST deliveries/s offered per room, one run per level [default: $BCAST_DELIVERIES]
  --uws-bin DIR           where uws-echo and uws-load-test are [default: \$UWS_BIN]
  --uwsc-cases LIST       CONNSxBYTES cases of the uws-client test [default: $UWSC_CASES]
  --uwsc-samples N        4-second samples measured per uws-client run [default: $UWSC_SAMPLES]
  --uwsc-discard N        Msg/sec lines discarded before them (ramp, warm-up) [default: $UWSC_DISCARD]
  --bcast-p99-ms MS       bcast-max: p99 limit of a sustained rate [default: $BCAST_P99_MS]
  --bcast-start N         bcast-max: first deliveries/s tried [default: $BCAST_START]
  --bcast-step F          bcast-max: growth factor before the first failure [default: $BCAST_STEP]
  --bcast-precision F     bcast-max: stop when failing / passing <= 1 + F [default: $BCAST_PRECISION]
  --bcast-probes N        bcast-max: rates tried per search at most [default: $BCAST_PROBES]
  --bcast-tries N         bcast-max: runs at a rate before it counts as failed [default: $BCAST_TRIES]
                          (each run lasts --open-duration after the room is connected; loadgen
                          does not busy-poll in bcast-max, so its CPU share says whether it is
                          the limit: at or above 90% the table marks the rate ‡, as it marks
                          a uws-client rate whose client used 90% or more of its core)
  --server-cpu N / --client-cpu N   cores [default: $SERVER_CPU / $CLIENT_CPU]
  --port N                first port to try [default: $PORT]
  --quiet-wait S          before each run, wait up to S seconds until the two cores are less
                          than --quiet-busy percent busy [default: $QUIET_WAIT; 0 disables]
  --quiet-busy PCT        [default: $QUIET_BUSY]
  --max-other PCT         repeat a run (up to --attempts in all) when other work took more than
                          PCT% of the two cores during its traffic [default: $MAX_OTHER]
  --attempts N            [default: $ATTEMPTS]
  --out DIR               output directory [default: \$CARGO_TARGET_DIR/compare]
  --syscalls              also count the server's socket and epoll syscalls per message with
                          perf stat (syscall tracepoints; adds overhead, so not for headline runs)
  --no-busy-poll          let loadgen sleep between sends in the open-loop runs (by default it
                          busy-polls on its own core: sends leave on time, replies are seen at
                          once, and no server pays for waking the client)
  --no-build              use the binaries already built
EOF
}

die() { echo "compare: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) REPS=1 DURATION=2 WARMUP=1 OPEN_DURATION=3 IDLE_CONNS=2000 IDLE_SETTLE=3 UWSC_SAMPLES=2 ;;
        --only) ONLY=$2; shift ;;
        --servers) SERVERS=$2; SERVERS_GIVEN=1; shift ;;
        --variant) [[ $2 == *=* ]] || die "--variant wants NAME=CMD"; VARIANT[${2%%=*}]=${2#*=}; shift ;;
        --reps) REPS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --open-duration) OPEN_DURATION=$2; shift ;;
        --echo-cases) ECHO_CASES=$2; shift ;;
        --cpu-rate) CPU_RATE=$2; shift ;;
        --latency-rate) LATENCY_RATE=$2; shift ;;
        --idle-conns) IDLE_CONNS=$2; shift ;;
        --rooms) ROOMS=$2; shift ;;
        --bcast-deliveries) BCAST_DELIVERIES=$2; shift ;;
        --uws-bin) UWS_BIN=$2; shift ;;
        --uwsc-cases) UWSC_CASES=$2; shift ;;
        --uwsc-samples) UWSC_SAMPLES=$2; shift ;;
        --uwsc-discard) UWSC_DISCARD=$2; shift ;;
        --bcast-p99-ms) BCAST_P99_MS=$2; shift ;;
        --bcast-start) BCAST_START=$2; shift ;;
        --bcast-step) BCAST_STEP=$2; shift ;;
        --bcast-precision) BCAST_PRECISION=$2; shift ;;
        --bcast-probes) BCAST_PROBES=$2; shift ;;
        --bcast-tries) BCAST_TRIES=$2; shift ;;
        --server-cpu) SERVER_CPU=$2; shift ;;
        --client-cpu) CLIENT_CPU=$2; shift ;;
        --port) PORT=$2; shift ;;
        --quiet-wait) QUIET_WAIT=$2; shift ;;
        --quiet-busy) QUIET_BUSY=$2; shift ;;
        --max-other) MAX_OTHER=$2; shift ;;
        --attempts) ATTEMPTS=$2; shift ;;
        --out) OUT=$2; shift ;;
        --no-build) BUILD=0 ;;
        --no-busy-poll) BUSY_POLL=0 ;;
        --syscalls) SYSCALLS=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

for t in ${ONLY//,/ }; do
    [[ ,$ALL_TESTS, == *,$t,* ]] || die "unknown test $t (tests: $ALL_TESTS)"
done
[[ $UWSC_SAMPLES =~ ^[1-9][0-9]*$ ]] || die "--uwsc-samples wants a positive integer"
[[ $UWSC_DISCARD =~ ^[1-9][0-9]*$ ]] || die "--uwsc-discard wants a positive integer"
[[ $BCAST_PROBES =~ ^[1-9][0-9]*$ ]] || die "--bcast-probes wants a positive integer"
[[ $BCAST_TRIES =~ ^[1-9][0-9]*$ ]] || die "--bcast-tries wants a positive integer"
wants() { [[ ,$ONLY, == *,$1,* ]]; }

# uWebSockets is built outside this repository (benches/peers/README.md); UWS_BIN says where.
UWS_WHY=
if [[ -z $UWS_BIN ]]; then
    UWS_WHY="UWS_BIN is not set (benches/peers/README.md says how to build uWS's server and client)"
elif [[ ! -x $UWS_BIN/uws-echo || ! -x $UWS_BIN/uws-load-test ]]; then
    UWS_WHY="UWS_BIN=$UWS_BIN has no executable uws-echo and uws-load-test"
else
    UWS_BIN=$(cd "$UWS_BIN" && pwd)
fi
if [[ -z $SERVERS ]]; then
    SERVERS=$ALL_SERVERS
    [[ -z $UWS_WHY ]] && SERVERS+=,uws
fi
OPEN_LOOP=()
[[ $BUSY_POLL == 1 ]] && OPEN_LOOP=(--busy-poll)

# shellcheck source=benches/servers.sh
source "$ROOT/benches/servers.sh"
OUT=${OUT:-$TARGET/compare}
RAW=$OUT/raw
CLK_TCK=$(getconf CLK_TCK)
PAGE=$(getconf PAGESIZE)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Servers

read -r -a SERVER_LIST <<<"${SERVERS//,/ }"
NODE=1
command -v node >/dev/null && command -v npm >/dev/null || NODE=0

for s in "${SERVER_LIST[@]}"; do
    server_known "$s" || die "unknown server $s (define it with --variant $s=CMD)"
done
drop_server() {
    local kept=() s
    for s in "${SERVER_LIST[@]}"; do [[ $s == "$1" ]] || kept+=("$s"); done
    SERVER_LIST=("${kept[@]}")
}
if [[ $NODE == 0 && ,$SERVERS, == *,node-ws,* ]]; then
    log "node or npm not found: skipping node-ws"
    drop_server node-ws
fi
if [[ -n $UWS_WHY ]]; then
    if [[ " ${SERVER_LIST[*]} " == *" uws "* ]]; then
        log "skipping the uws server: $UWS_WHY"
        drop_server uws
    elif [[ -z ${SERVERS_GIVEN:-} ]]; then
        log "uWebSockets not measured: $UWS_WHY"
    fi
    if wants uws-client; then
        log "skipping the uws-client test (uWS's load_test as the client): $UWS_WHY"
        ONLY=,$ONLY,
        ONLY=${ONLY//,uws-client,/,}
        ONLY=${ONLY#,}
        ONLY=${ONLY%,}
    fi
fi
[[ -n $ONLY ]] || die "no test left to run"
[[ ${#SERVER_LIST[@]} -gt 0 ]] || die "no server to measure"

wants_server() { [[ " ${SERVER_LIST[*]} " == *" $1 "* ]]; }

build() {
    cd "$ROOT"
    log "building corecast and loadgen (target $TARGET)"
    cargo build --release --quiet
    cargo build --release --quiet -p loadgen
    if wants_server tokio-tungstenite || wants_server fastwebsockets \
        || wants_server ceiling-epoll || wants_server ceiling-uring; then
        log "building the peers (target $PEERS_TARGET)"
        (cd benches/peers && CARGO_TARGET_DIR=$PEERS_TARGET cargo build --release --quiet)
    fi
    if [[ -z $UWS_WHY ]] && { wants_server uws || wants uws-client; }; then
        log "uWebSockets: using $UWS_BIN (built outside this repository: $(tr '\n' ' ' <"$UWS_BIN/SOURCE" 2>/dev/null || echo 'no SOURCE file'))"
    fi
    if wants_server node-ws && [[ ! -d benches/peers/node-ws/node_modules/ws ]]; then
        log "installing ws for node-ws"
        (cd benches/peers/node-ws && npm install --no-audit --no-fund --silent)
    fi
}


port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Every server gets a fresh port, so nothing of an earlier run (TIME_WAIT, late packets) meets it.
next_port() {
    PORT=$((PORT + 1))
    while port_busy "$PORT"; do PORT=$((PORT + 1)); done
}

SERVER_PID=
LOADGEN_PID=
cleanup() {
    local pid
    for pid in $LOADGEN_PID $SERVER_PID; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $LOADGEN_PID $SERVER_PID; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts server $1 pinned to $SERVER_CPU on a fresh port; sets SERVER_PID and ADDR.
start_server() {
    local name=$1 log=$2 cmd
    next_port
    ADDR=127.0.0.1:$PORT
    mapfile -t cmd < <(server_cmd "$name" "$ADDR")
    taskset -c "$SERVER_CPU" "${cmd[@]}" >"$log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 100); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID" || true
            SERVER_PID=
            log "$name failed to start (see $log)"
            return 1
        fi
        port_busy "$PORT" && return 0
        sleep 0.1
    done
    log "$name did not listen on $ADDR within 10 s"
    stop_server
    return 1
}

# SIGTERM (graceful in corecast, immediate in the peers), then SIGKILL after 10 s.
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local i
    for i in $(seq 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# utime + stime of process $1 (all threads), in clock ticks, into TICKS (0 once it is gone).
# Builtins only (no fork): these run while a measurement is in progress. The command name in
# field 2 may contain spaces, so fields are counted after its closing parenthesis.
cpu_ticks() {
    local line f
    TICKS=0
    read -r line 2>/dev/null <"/proc/$1/stat" || return 0
    read -r -a f <<<"${line##*) }"
    TICKS=$((f[11] + f[12]))
}

# Busy jiffies (all but idle and iowait) of cores $SERVER_CPU and $CLIENT_CPU, into BUSY.
cores_busy() {
    local name user nice sys idle iowait irq softirq steal rest
    BUSY=0
    while read -r name user nice sys idle iowait irq softirq steal rest; do
        if [[ $name == "cpu$SERVER_CPU" || $name == "cpu$CLIENT_CPU" ]]; then
            BUSY=$((BUSY + user + nice + sys + irq + softirq + steal))
        fi
    done </proc/stat
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
sock_pages() { awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) }' /proc/net/sockstat; }
slab_kb() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }

# The machine is shared: before each run, wait (up to $QUIET_WAIT s) until the two cores are
# less than $QUIET_BUSY% busy over one second with nothing of ours running.
wait_quiet() {
    [[ $QUIET_WAIT -gt 0 ]] || return 0
    local waited=0 b0 b1 pct
    while :; do
        cores_busy
        b0=$BUSY
        sleep 1
        cores_busy
        b1=$BUSY
        pct=$(( (b1 - b0) * 100 / (2 * CLK_TCK) ))
        [[ $pct -lt $QUIET_BUSY ]] && break
        if [[ $waited -ge $QUIET_WAIT ]]; then
            log "cores $SERVER_CPU,$CLIENT_CPU still ${pct}% busy with other work after ${waited}s: measuring anyway"
            break
        fi
        [[ $waited -eq 0 ]] && log "cores $SERVER_CPU,$CLIENT_CPU ${pct}% busy with other work: waiting"
        sleep 2
        waited=$((waited + 3))
    done
    BACKGROUND_PCT=$pct
}

# User + system seconds of this shell's reaped children (bash's `times`, second line). Read
# around a `wait` for loadgen it is loadgen's CPU time (servers are reaped only after it).
# Sets CHILDREN_CPU; must run in this shell, not in a $(...) subshell.
children_cpu() {
    times >"$RAW/.times"
    CHILDREN_CPU=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); t += p[1] * 60 + p[2] } print t }' "$RAW/.times")
}

# Starts loadgen in the background pinned to $CLIENT_CPU with one thread; $1 names the run, the
# rest are its options. Sets LOADGEN_PID.
loadgen_start() {
    local run=$1
    shift
    : >"$RAW/$run.progress"  # exists before loadgen starts, for watch_traffic
    children_cpu  # before the start: bash may reap loadgen before loadgen_wait runs
    CHILDREN_CPU_BEFORE=$CHILDREN_CPU
    taskset -c "$CLIENT_CPU" "$BIN/loadgen" --cpus "$CLIENT_CPU" --threads 1 \
        --json "$RAW/$run.json" "$@" >"$RAW/$run.txt" 2>"$RAW/$run.progress" &
    LOADGEN_PID=$!
    LOADGEN_T0=$EPOCHREALTIME
}

# Waits for loadgen; sets CLIENT_CPU_S to the CPU seconds it used and WALL_S to its run time.
loadgen_wait() {
    local run=$1 rc=0
    wait "$LOADGEN_PID" || rc=$?
    LOADGEN_PID=
    children_cpu
    CLIENT_CPU_S=$(awk -v a="$CHILDREN_CPU_BEFORE" -v b="$CHILDREN_CPU" 'BEGIN { printf "%.3f", b - a }')
    WALL_S=$(awk -v a="$LOADGEN_T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
    [[ $rc -le 1 ]] || log "loadgen exited with $rc for $run (see $RAW/$run.progress)"
    return 0
}

# While loadgen runs: at each of its progress lines in the traffic phase (every 2 s, with the
# count of messages received so far), sample the CPU time of the server and of loadgen and the
# busy time of both cores into RAW/<run>.samples ("time server_ticks loadgen_ticks cores_busy
# received"). The first and last samples bound a window that excludes the ramp (handshakes)
# and the end of the run (closes), so CPU per message counts traffic only. Builtins only, and
# an idle wait on a FIFO instead of `sleep`, so the runner itself stays off the two cores.
watch_traffic() {
    local run=$1 line partial= received
    local samples=$RAW/$run.samples
    : >"$samples"
    [[ -p $RAW/.tick ]] || mkfifo "$RAW/.tick"
    exec 4<"$RAW/$run.progress" 5<>"$RAW/.tick"
    while kill -0 "$LOADGEN_PID" 2>/dev/null; do
        while IFS= read -r line <&4; do
            line=$partial$line
            partial=
            if [[ $line == *"] traffic:"* && $line =~ received\ ([0-9]+) ]]; then
                received=${BASH_REMATCH[1]}
                cpu_ticks "$SERVER_PID"
                local st=$TICKS
                cpu_ticks "$LOADGEN_PID"
                cores_busy
                echo "$EPOCHREALTIME $st $TICKS $BUSY $received" >>"$samples"
            fi
        done
        partial+=$line  # a line still being written
        read -r -t 0.05 -u 5 _ || true
    done
    exec 4<&- 5<&-
}

# Syscalls counted with --syscalls: every way these servers read, write and wait.
SYSCALL_EVENTS=$(printf 'syscalls:sys_enter_%s,' read readv recvfrom recvmsg write writev sendto \
    sendmsg epoll_wait epoll_pwait epoll_pwait2 epoll_ctl)
SYSCALL_EVENTS=${SYSCALL_EVENTS%,}

# Appends one measurement to runs.jsonl: test, server, rep, then KEY=NUMBER pairs.
record() {
    local test=$1 server=$2 rep=$3 run=$4
    shift 4
    local fields="\"test\":\"$test\",\"server\":\"$server\",\"rep\":$rep,\"run\":\"$run\""
    local kv
    for kv in "$@"; do fields+=",\"${kv%%=*}\":${kv#*=}"; done
    echo "{$fields}" >>"$RAW/runs.jsonl"
}

# One loadgen run against a fresh server, with the server's CPU time around it.
# $1 test, $2 server, $3 rep, then loadgen options (without --url: $URL_PATH is appended).
# The run is named TEST.SERVER.REP$RUN_TAG. Sets MEASURED to 0 if the server did not start.
measure() {
    local test=$1 server=$2 rep=$3
    shift 3
    local run=$test.$server.$rep${RUN_TAG:-}
    MEASURED=0
    with_attempts "$RAW/$run.samples" measure_once "$test" "$server" "$rep" "$@" || return 0
    MEASURED=1
    record "$test" "$server" "$rep" "$run" cpu_ticks="$RUN_TICKS" \
        client_cpu_s="$CLIENT_CPU_S" wall_s="$WALL_S" cores_ticks="$RUN_CORES" \
        background_pct_before="$BACKGROUND_PCT" attempts="$ATTEMPT"
}

# Runs "$@" (one attempt of a measurement; it returns 1 when its server did not start) again,
# up to --attempts times in all, while other work took more than --max-other of the two cores
# during the window of samples file $1. Sets ATTEMPT to the attempts made; returns 1 when the
# server did not start.
with_attempts() {
    local samples=$1 other name=${1##*/}
    shift
    for ATTEMPT in $(seq "$ATTEMPTS"); do
        "$@" || return 1
        other=$(interference "$samples")
        if [[ $ATTEMPT -lt $ATTEMPTS && -n $other && $other -gt $MAX_OTHER ]]; then
            log "other work took ${other}% of the two cores during ${name%.*}: measuring it again"
            continue
        fi
        break
    done
}

# Percent of the two cores' time (rounded down) that neither the server nor loadgen used during
# the traffic window of a samples file; empty without two samples.
interference() {
    awk -v hz="$CLK_TCK" 'NR == 1 { t = $1; s = $2; c = $3; b = $4 }
        END { if (NR < 2 || $1 <= t) exit
              o = ($4 - b) - ($2 - s) - ($3 - c); if (o < 0) o = 0
              printf "%d\n", o * 100 / (2 * hz * ($1 - t)) }' "$1"
}

# One attempt of `measure`; sets RUN_TICKS (server CPU over the whole loadgen run) and
# RUN_CORES (busy ticks of the two cores meanwhile). Returns 1 if the server did not start.
measure_once() {
    local test=$1 server=$2 rep=$3
    shift 3
    local run=$test.$server.$rep${RUN_TAG:-}
    wait_quiet
    if ! start_server "$server" "$RAW/$run.server.log"; then
        record "$test" "$server" "$rep" "$run" failed=1
        return 1
    fi
    local t0 c0
    cpu_ticks "$SERVER_PID"
    t0=$TICKS
    cores_busy
    c0=$BUSY
    local perf_pid=
    if [[ $SYSCALLS == 1 ]]; then
        perf stat -x, -o "$RAW/$run.syscalls" -e "$SYSCALL_EVENTS" -p "$SERVER_PID" &
        perf_pid=$!
    fi
    loadgen_start "$run" --url "ws://$ADDR$URL_PATH" "$@"
    watch_traffic "$run"
    loadgen_wait "$run"
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
    fi
    cpu_ticks "$SERVER_PID"
    RUN_TICKS=$((TICKS - t0))
    cores_busy
    RUN_CORES=$((BUSY - c0))
    stop_server
}

# ---------------------------------------------------------------------------------------------
# Measurements

test_echo() {
    local case conns size inflight name rep s
    for case in ${ECHO_CASES//,/ }; do
        # CONNSxBYTES, or CONNSxBYTES/INFLIGHT for more than one message in flight.
        inflight=1 name=echo_${case%/*}
        if [[ $case == */* ]]; then
            inflight=${case#*/} name=echo_${case%/*}_if$inflight
        fi
        case=${case%/*}
        conns=${case%x*} size=${case#*x}
        for rep in $(seq "$REPS"); do
            for s in "${SERVER_LIST[@]}"; do
                log "echo $conns x $size B, closed loop, $inflight in flight: $s (rep $rep/$REPS)"
                URL_PATH=/echo measure "$name" "$s" "$rep" \
                    --conns "$conns" --size "$size" --rate max --inflight "$inflight" \
                    --duration "${DURATION}s" --warmup "${WARMUP}s"
            done
        done
    done
}

test_cpu() {
    local rep s
    for rep in $(seq "$REPS"); do
        for s in "${SERVER_LIST[@]}"; do
            log "CPU per message at $CPU_RATE msg/s (100 x 512 B, open loop): $s (rep $rep/$REPS)"
            URL_PATH=/echo measure cpu "$s" "$rep" --conns 100 --size 512 --rate "$CPU_RATE" \
                --duration "${OPEN_DURATION}s" --warmup "${WARMUP}s" "${OPEN_LOOP[@]}"
        done
    done
}

test_latency() {
    local rate=$LATENCY_RATE rep s
    if [[ -z $rate ]]; then
        rate=$(python3 "$ROOT/benches/compare/summarize.py" half-slowest-peak "$RAW" echo_100x512 || true)
        if [[ -z $rate ]]; then
            rate=$LATENCY_FALLBACK
            log "no 100x512 echo peak in this run: latency at the fallback $rate msg/s"
        fi
    fi
    for rep in $(seq "$REPS"); do
        for s in "${SERVER_LIST[@]}"; do
            log "latency at $rate msg/s (100 x 512 B, open loop): $s (rep $rep/$REPS)"
            URL_PATH=/echo measure latency "$s" "$rep" --conns 100 --size 512 --rate "$rate" \
                --duration "${OPEN_DURATION}s" --warmup 2s "${OPEN_LOOP[@]}" \
                --hgrm "$RAW/latency.$s.$rep.hgrm"
        done
    done
}

# Idle memory: ramp IDLE_CONNS upgraded connections, let them rest, read the server's RSS.
# loadgen's --rate 0 holds the connections for the window without sending anything.
test_idle() {
    local rep s run base_rss base_sock base_slab rss sock slab i
    local window=$((IDLE_SETTLE + 15))
    for rep in $(seq "$REPS"); do
        for s in "${SERVER_LIST[@]}"; do
            log "idle memory at $IDLE_CONNS connections: $s (rep $rep/$REPS)"
            run=idle.$s.$rep
            wait_quiet
            start_server "$s" "$RAW/$run.server.log" || { record idle "$s" "$rep" "$run" failed=1; continue; }
            sleep 1
            base_rss=$(rss_kb "$SERVER_PID") base_sock=$(sock_pages) base_slab=$(slab_kb)
            loadgen_start "$run" --url "ws://$ADDR/echo" --conns "$IDLE_CONNS" \
                --connect-rate 2500 --connect-timeout 30s --size 64 --rate 0 \
                --duration "${window}s"
            # Progress lines come every 2 s; "traffic:" means every connection is upgraded.
            for i in $(seq 600); do
                grep -q '] traffic:' "$RAW/$run.progress" 2>/dev/null && break
                kill -0 "$LOADGEN_PID" 2>/dev/null || break
                sleep 0.2
            done
            sleep "$IDLE_SETTLE"
            rss=$(rss_kb "$SERVER_PID") sock=$(sock_pages) slab=$(slab_kb)
            loadgen_wait "$run"
            stop_server
            record idle "$s" "$rep" "$run" rss_base_kb="$base_rss" rss_kb="$rss" \
                sock_pages_base="$base_sock" sock_pages="$sock" page="$PAGE" \
                slab_base_kb="$base_slab" slab_kb="$slab"
        done
    done
}

test_broadcast() {
    local members rate rep s deliveries test first=${BCAST_DELIVERIES%%,*}
    for members in ${ROOMS//,/ }; do
        for deliveries in ${BCAST_DELIVERIES//,/ }; do
            rate=$(python3 -c "print(f'{$deliveries / $members:g}')")
            # The first level keeps the name earlier results used.
            test=bcast_$members
            [[ $deliveries == "$first" ]] || test=bcast_${members}_at_$deliveries
            for rep in $(seq "$REPS"); do
                for s in "${SERVER_LIST[@]}"; do
                    # The ceiling only echoes: it has no rooms to measure.
                    [[ $s == ceiling-* ]] && continue
                    log "broadcast: room of $members, 1 publisher at $rate msg/s: $s (rep $rep/$REPS)"
                    URL_PATH=/broadcast/bench measure "$test" "$s" "$rep" --mode broadcast \
                        --publishers 1 --conns "$members" --size "$BCAST_SIZE" --rate "$rate" \
                        --connect-rate 2500 --duration "${OPEN_DURATION}s" --warmup "${WARMUP}s" \
                        "${OPEN_LOOP[@]}"
                done
            done
        done
    done
}

# uWS's closed-loop C client (its benchmarks/load_test.c, requesting /echo): CONNS connections,
# one binary message of BYTES in flight on each; every 4 s it prints "Msg/sec: N", the replies
# of those 4 s divided by 4. The servers take turns within each round, as in the other tests.
test_uws_client() {
    local case conns size rep s
    for case in ${UWSC_CASES//,/ }; do
        [[ $case =~ ^[0-9]+x[0-9]+$ ]] || die "bad --uwsc-cases entry $case (want CONNSxBYTES)"
        conns=${case%x*} size=${case#*x}
        for rep in $(seq "$REPS"); do
            for s in "${SERVER_LIST[@]}"; do
                log "echo $conns x $size B with uWS's client: $s (round $rep/$REPS)"
                measure_uwsc "uwsclient_$case" "$s" "$rep" "$conns" "$size"
            done
        done
    done
}

# One uws-client measurement, repeated (up to --attempts in all) when other work took more than
# --max-other of the two cores during its samples.
measure_uwsc() {
    local test=$1 server=$2 rep=$3 conns=$4 size=$5
    local run=$test.$server.$rep
    if ! with_attempts "$RAW/$run.csamples" uwsc_once "$run" "$server" "$conns" "$size"; then
        record "$test" "$server" "$rep" "$run" failed=1
        return 0
    fi
    record "$test" "$server" "$rep" "$run" clean="$UWSC_CLEAN" conns="$conns" size="$size" \
        background_pct_before="$BACKGROUND_PCT" attempts="$ATTEMPT"
}

# Runs uWS's client against a fresh server until it has printed UWSC_DISCARD + UWSC_SAMPLES
# Msg/sec lines. From the UWSC_DISCARD-th line on, at each line the runner samples the CPU time of
# the server and of the client and the busy time of both cores into RAW/<run>.csamples ("time
# server_ticks client_ticks cores_busy msgs_per_s"): that line only opens the window (the first
# covers the ramp and part of an interval), the next UWSC_SAMPLES are the samples. Builtins
# only while the client runs, as in watch_traffic. Sets UWSC_CLEAN to 0 when the client saw a
# connection close or a wrong byte count, exited early, or printed too few lines.
uwsc_once() {
    local run=$1 server=$2 conns=$3 size=$4
    local out=$RAW/$run.txt samples=$RAW/$run.csamples line partial= n=0 st
    local need=$((UWSC_DISCARD + UWSC_SAMPLES)) deadline
    wait_quiet
    start_server "$server" "$RAW/$run.server.log" || return 1
    : >"$out"
    : >"$samples"
    [[ -p $RAW/.tick ]] || mkfifo "$RAW/.tick"
    taskset -c "$CLIENT_CPU" "$UWS_BIN/uws-load-test" "$conns" 127.0.0.1 "$PORT" 0 0 "$size" \
        >"$out" 2>&1 &
    LOADGEN_PID=$!
    # The ramp connects one connection after another, well under a second for 500.
    deadline=$((EPOCHSECONDS + 4 * need + 30))
    UWSC_CLEAN=1
    exec 4<"$out" 5<>"$RAW/.tick"
    while [[ $n -lt $need ]]; do
        while IFS= read -r line <&4; do
            line=$partial$line
            partial=
            if [[ $line =~ ^Msg/sec:\ ([0-9.]+) ]]; then
                n=$((n + 1))
                [[ $n -ge $UWSC_DISCARD ]] || continue
                cpu_ticks "$SERVER_PID"
                st=$TICKS
                cpu_ticks "$LOADGEN_PID"
                cores_busy
                echo "$EPOCHREALTIME $st $TICKS $BUSY ${BASH_REMATCH[1]}" >>"$samples"
            elif [[ $line == Closed!* || $line == ERROR* ]]; then
                UWSC_CLEAN=0
            fi
        done
        partial+=$line  # a line still being written
        [[ $n -lt $need ]] || break
        if ! kill -0 "$LOADGEN_PID" 2>/dev/null; then
            log "uWS's client exited early in $run (see $out)"
            UWSC_CLEAN=0
            break
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "$server exited during $run (see $RAW/$run.server.log)"
            UWSC_CLEAN=0
            break
        fi
        if [[ $EPOCHSECONDS -gt $deadline ]]; then
            log "uWS's client printed $n of $need Msg/sec lines in time in $run (see $out)"
            UWSC_CLEAN=0
            break
        fi
        read -r -t 0.05 -u 5 _ || true
    done
    exec 4<&- 5<&-
    kill -TERM "$LOADGEN_PID" 2>/dev/null || true
    wait "$LOADGEN_PID" 2>/dev/null || true
    LOADGEN_PID=
    stop_server
    [[ $n -gt $UWSC_DISCARD ]] || UWSC_CLEAN=0
    return 0
}

# bcast-max: for each room size and server, the highest deliveries/s (one publisher, the room's
# members receiving) with fan-out p99 under BCAST_P99_MS and nothing lost. Rates grow by
# BCAST_STEP from BCAST_START until a rate fails (BCAST_TRIES runs at it in a row failed), or
# shrink until one passes, then the gap is bisected until the failing rate is within
# BCAST_PRECISION of the passing one. Every run uses a fresh server and room. loadgen does not busy-poll here: its CPU share then says whether it,
# and not the server, is the limit.
test_bcast_max() {
    local members rep s lo hi rate n best above try
    for rep in $(seq "$REPS"); do
        for members in ${ROOMS//,/ }; do
            for s in "${SERVER_LIST[@]}"; do
                [[ $s == ceiling-* ]] && continue  # the ceiling has no rooms
                lo=0 hi=0 rate=$BCAST_START best=none above= n=0
                while [[ $n -lt $BCAST_PROBES ]]; do
                    n=$((n + 1))
                    for try in $(seq "$BCAST_TRIES"); do
                        bcast_probe "$members" "$s" "$rep" "$rate" "$n" "$try"
                        [[ $PROBE_PASS == 0 && $MEASURED == 1 ]] || break
                    done
                    if [[ $PROBE_PASS == 1 ]]; then
                        lo=$rate best=$PROBE_RUN
                    else
                        [[ $MEASURED == 1 ]] || break
                        hi=$rate above=$PROBE_RUN
                    fi
                    if [[ $hi == 0 ]]; then
                        rate=$(awk -v r="$rate" -v f="$BCAST_STEP" 'BEGIN { printf "%d", r * f }')
                    elif [[ $lo == 0 ]]; then
                        rate=$(awk -v r="$rate" -v f="$BCAST_STEP" 'BEGIN { printf "%d", r / f }')
                        [[ $rate -ge $members ]] || break  # less than one publish a second
                    else
                        awk -v lo="$lo" -v hi="$hi" -v p="$BCAST_PRECISION" \
                            'BEGIN { exit !(hi <= lo * (1 + p)) }' && break
                        rate=$(((lo + hi) / 2))
                    fi
                done
                local failed=" (every rate passed: the limit is higher, raise --bcast-start or --bcast-probes)"
                [[ $hi == 0 ]] || failed=" (failed at $hi)"
                log "bcast-max: room of $members, $s: $lo deliveries/s sustained$failed, $n rates tried"
                record "bcastmax_$members" "$s" "$rep" "$best" max_deliveries="$lo" \
                    failed_at="$hi" probes="$n" above_run="\"$above\"" p99_limit_ms="$BCAST_P99_MS"
            done
        done
    done
}

# One bcast-max run at $4 deliveries/s in all, try $6 of rate $5 of a search; sets PROBE_PASS
# (1: nothing lost, every member connected, p99 under BCAST_P99_MS) and PROBE_RUN.
bcast_probe() {
    local members=$1 server=$2 rep=$3 deliveries=$4 n=$5 try=$6 rate note
    rate=$(awk -v d="$deliveries" -v m="$members" 'BEGIN { printf "%g", d / m }')
    log "bcast-max: room of $members at $deliveries deliveries/s ($rate publishes/s): $server (rep $rep/$REPS, rate $n, try $try)"
    RUN_TAG=.p$n.$try
    PROBE_RUN=bcastprobe_$members.$server.$rep$RUN_TAG
    URL_PATH=/broadcast/bench measure "bcastprobe_$members" "$server" "$rep" --mode broadcast \
        --publishers 1 --conns "$members" --size "$BCAST_SIZE" --rate "$rate" \
        --connect-rate 2500 --duration "${OPEN_DURATION}s" --warmup "${WARMUP}s"
    RUN_TAG=
    PROBE_PASS=0
    if [[ $MEASURED != 1 ]]; then
        log "  $server did not start"
        return 0
    fi
    note=$(python3 "$ROOT/benches/compare/summarize.py" probe-verdict "$RAW" "$PROBE_RUN" \
        --p99-ms "$BCAST_P99_MS" --clk-tck "$CLK_TCK") && PROBE_PASS=1
    log "  $note"
}

# ---------------------------------------------------------------------------------------------

# The whole run is one function, read before it starts: editing this file during a run is safe.
main() {
    [[ $BUILD == 1 ]] && build
    if [[ $SYSCALLS == 1 ]] && ! perf stat -e syscalls:sys_enter_read true >/dev/null 2>&1; then
        die "--syscalls needs perf with syscall tracepoints"
    fi
    for b in "$BIN/corecast" "$BIN/loadgen"; do
        [[ -x $b ]] || die "$b is missing: build first (or drop --no-build)"
    done
    mkdir -p "$RAW"
    rm -f "$RAW"/*
    started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    git_at_start=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
    log "servers: ${SERVER_LIST[*]}; tests: $ONLY; $REPS repetition(s); output $OUT"

    wants echo && test_echo
    wants cpu && test_cpu
    wants latency && test_latency
    wants idle && test_idle
    wants broadcast && test_broadcast
    wants uws-client && test_uws_client
    wants bcast-max && test_bcast_max

    variants=()
    for name in "${!VARIANT[@]}"; do variants+=(--variant "$name=${VARIANT[$name]}"); done
    [[ -z $UWS_WHY ]] && variants+=(--uws-bin "$UWS_BIN")
    python3 "$ROOT/benches/compare/summarize.py" summarize "$RAW" "$OUT" \
        --servers "$(IFS=,; echo "${SERVER_LIST[*]}")" --clk-tck "$CLK_TCK" --started "$started" --git "$git_at_start" \
        --command "benches/compare.sh ${ARGS[*]}" --root "$ROOT" "${variants[@]}"
    python3 "$ROOT/benches/chart.py" "$OUT/results.json" "$OUT/chart.svg"
    local wrote="$OUT/results.json, $OUT/table.md, $OUT/chart.svg"
    if wants latency && python3 "$ROOT/benches/compare/percentile_plot.py" "$RAW" \
        "$OUT/latency.svg" --servers "$(IFS=,; echo "${SERVER_LIST[*]}")"; then
        wrote+=", $OUT/latency.svg"
    fi
    log "wrote $wrote"
}

main; exit
