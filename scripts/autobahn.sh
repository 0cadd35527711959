#!/usr/bin/env bash
# autobahn.sh: run the Autobahn|Testsuite fuzzingclient against a WebSocket echo server.
#
# usage: scripts/autobahn.sh [options] URL OUTDIR
#        scripts/autobahn.sh --setup-only
#
#   URL     ws://HOST:PORT/PATH or wss://HOST:PORT/PATH of a server that echoes every text
#           and binary message (e.g. corecast's /echo, or /broadcast/<unique room>: a room
#           of one echoes). Over wss:// the suite does not check the server's certificate
#           (Twisted's ClientContextFactory), so a self-signed one will do.
#   OUTDIR  report directory; earlier reports in it are removed. Open OUTDIR/index.html.
#
# options:
#   --quick          leave out section 9 (large messages, many fragments: the slow part)
#   --cases LIST     comma-separated case patterns instead of the default 1.* .. 10.*,
#                    e.g. "1.*,5.*" or "7.7.*" ('*' matches anything)
#   --exclude LIST   more patterns to leave out, e.g. "9.7.*,9.8.*"
#   --agent NAME     name of the server in the report (default: corecast)
#   --wait SECS      how long to wait for the server's port to open (default: 10)
#   --timeout SECS   wall-clock limit for the test run (default: 1800)
#   --setup-only     build (or check) the cached environment and stop
#
# Sections 12 and 13 (permessage-deflate) are always left out: corecast does not
# negotiate compression, so the suite would only report them as UNIMPLEMENTED.
#
# Output: progress on stderr; the summary (scripts/autobahn/summarize.py) on stdout,
# ending with the line "conformance: N passed, M failed" where passed counts OK,
# NON-STRICT and INFORMATIONAL, and failed counts FAILED, any other verdict, and every
# selected case that is missing from the report.
#
# Exit status: 0 every case passed; 1 a case failed or is missing; 2 usage, setup or
# connection error; 3 the suite wrote no report (crashed or hit --timeout).
#
# Setup (first run about 2 minutes; later runs reuse it): wstest is Python 2.7 only, and
# Debian 12 has no Python 2.7. The script fetches CPython 2.7 from Debian 11 with apt-get
# using a private sources list and private apt state, unpacks it with dpkg -x, and installs
# autobahntestsuite into it with pip, every version pinned (scripts/autobahn/*.txt).
# Nothing is installed system-wide. Needs: bash, python3 with pip, gcc, apt-get and dpkg,
# and access to the Debian mirror and PyPI. Everything lives in
# target/autobahn/env-<hash of the pins>/ (override the parent with AUTOBAHN_CACHE);
# a change to any pin builds a fresh environment and removes the old one.
set -euo pipefail

# The body is a function called on the last line, so bash has read the whole file
# before running any of it: editing the script during a long run is harmless.
main() {
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    DATA="$here/autobahn"
    CACHE="${AUTOBAHN_CACHE:-$(cd "$here/.." && pwd)/target/autobahn}"

    local quick=0 setup_only=0 cases="" excludes="" agent=corecast wait=10 timeout=1800
    local args=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --quick) quick=1 ;;
            --setup-only) setup_only=1 ;;
            --cases) cases="$(value "$@")"; shift ;;
            --exclude) excludes="$(value "$@")"; shift ;;
            --agent) agent="$(value "$@")"; shift ;;
            --wait) wait="$(value "$@")"; shift ;;
            --timeout) timeout="$(value "$@")"; shift ;;
            -h | --help) usage 0 ;;
            --) shift; args+=("$@"); break ;;
            -*) fail "unknown option $1 (try --help)" ;;
            *) args+=("$1") ;;
        esac
        shift
    done
    [[ "$agent" =~ ^[A-Za-z0-9._-]+$ ]] || fail "--agent may use only letters, digits and ._-"
    [[ "$wait" =~ ^[0-9]+$ && "$timeout" =~ ^[0-9]+$ ]] || fail "--wait and --timeout take whole seconds"

    with_lock setup
    if [[ $setup_only == 1 ]]; then
        echo "autobahn: environment ready in $ENV" >&2
        return 0
    fi

    [[ ${#args[@]} -eq 2 ]] || usage 2
    local url="${args[0]}" outdir="${args[1]}"
    [[ "$url" =~ ^(wss?)://([^/:]+)(:([0-9]+))?(/.*)?$ ]] || fail "URL must look like ws[s]://HOST:PORT/PATH (got $url)"
    local scheme="${BASH_REMATCH[1]}" host="${BASH_REMATCH[2]}" port="${BASH_REMATCH[4]}" path="${BASH_REMATCH[5]:-/}"
    if [[ -z "$port" ]]; then
        if [[ $scheme == wss ]]; then port=443; else port=80; fi
    fi

    # Which cases: sections 1-10 unless --cases says otherwise; never 12.*/13.*.
    local -a include exclude
    if [[ -n "$cases" ]]; then
        IFS=, read -r -a include <<<"$cases"
    else
        include=(1.* 2.* 3.* 4.* 5.* 6.* 7.* 8.* 9.* 10.*)
    fi
    exclude=(12.* 13.*)
    [[ $quick == 1 ]] && exclude+=(9.*)
    if [[ -n "$excludes" ]]; then
        local -a more
        IFS=, read -r -a more <<<"$excludes"
        exclude+=("${more[@]}")
    fi

    mkdir -p "$outdir"
    outdir="$(cd "$outdir" && pwd)"
    rm -f "$outdir"/index.json "$outdir"/index.html "$outdir"/*_case_*.json \
        "$outdir"/*_case_*.html "$outdir"/spec.json "$outdir"/expected.txt "$outdir"/wstest.log

    # The spec is JSON; let Python quote it rather than printf.
    python3 - "$outdir" "$agent" "$url" "${#include[@]}" "${include[@]}" "${exclude[@]}" \
        >"$outdir/spec.json" <<'PY'
import json, sys
outdir, agent, url, n = sys.argv[1:5]
rest = sys.argv[5:]
json.dump({
    "outdir": outdir,
    "servers": [{"agent": agent, "url": url}],
    "cases": rest[:int(n)],
    "exclude-cases": rest[int(n):],
    "exclude-agent-cases": {},
}, sys.stdout, indent=2)
PY
    # The ids the suite should report, from its own case table and pattern matching,
    # so that a case lost to a server crash shows up as missing rather than vanishing.
    "$ENV/bin/py27" "$DATA/expected_cases.py" "$outdir/spec.json" >"$outdir/expected.txt" \
        || fail "cannot list the selected cases (bad --cases/--exclude pattern?)"
    local expected
    expected=$(wc -l <"$outdir/expected.txt")
    [[ $expected -gt 0 ]] || fail "no case matches --cases '${cases}' minus --exclude"
    echo "autobahn: $expected cases against $url (excluded: ${exclude[*]})" >&2

    if ! wait_for_port "$host" "$port" "$wait"; then
        echo "autobahn: nothing listens on $host:$port after ${wait}s" >&2
        echo "conformance: 0 passed, $expected failed"
        return 2
    fi
    if ! check_upgrade "$scheme" "$host" "$port" "$path"; then
        echo "autobahn: $url does not answer a WebSocket upgrade with 101" >&2
        echo "conformance: 0 passed, $expected failed"
        return 2
    fi

    local started rc
    started=$(date +%s)
    set +e
    (cd "$outdir" && timeout -k 10 "$timeout" "$ENV/bin/wstest" -m fuzzingclient -s spec.json) \
        >"$outdir/wstest.log" 2>&1 &
    local pid=$!
    # timeout(1) runs wstest in a process group of its own, out of reach of Ctrl-C: pass
    # an interrupt on (timeout forwards the TERM to wstest).
    trap 'kill -TERM "$pid" 2>/dev/null; echo "autobahn: interrupted" >&2; exit 130' INT TERM
    show_progress "$outdir/wstest.log" "$pid" "$expected" "$started"
    wait "$pid"
    rc=$?
    trap - INT TERM
    set -e
    echo "autobahn: wstest exited with $rc after $(($(date +%s) - started))s; log $outdir/wstest.log" >&2

    if [[ ! -s "$outdir/index.json" ]]; then
        tail -n 15 "$outdir/wstest.log" >&2
        [[ $rc == 124 || $rc == 137 ]] && echo "autobahn: the run hit --timeout ${timeout}s" >&2
        echo "conformance: 0 passed, $expected failed"
        return 3
    fi
    echo "autobahn: report $outdir/index.html" >&2
    python3 "$DATA/summarize.py" "$outdir" --expected "$outdir/expected.txt"
}

value() {
    [[ $# -ge 2 && -n "$2" ]] || fail "$1 needs a value"
    printf '%s' "$2"
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit "$1"
}

fail() {
    echo "autobahn: $*" >&2
    exit 2
}

# --------------------------------------------------------------------------- setup

# Runs "$@" holding target/autobahn/.lock, so two runs never build the same environment.
with_lock() {
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9
    "$@"
    flock -u 9
    exec 9>&-
}

# Sets ENV to the environment for the current pins and builds it unless it is complete.
setup() {
    local setup_rev=1 key
    key=$( { echo "$setup_rev"; cat "$DATA/debs-bullseye.txt" "$DATA/bootstrap-py27.txt" \
        "$DATA/constraints-py27.txt"; } | sha256sum | cut -c1-16)
    ENV="$CACHE/env-$key"
    if [[ -f "$ENV/ready" && "$(cat "$ENV/ready")" == "$key" ]]; then
        return 0
    fi

    command -v python3 >/dev/null || fail "setup needs python3"
    python3 -m pip --version >/dev/null 2>&1 || fail "setup needs pip for python3"
    command -v gcc >/dev/null || fail "setup needs gcc (Twisted, wsaccel and ujson build C extensions)"
    command -v apt-get >/dev/null && command -v dpkg >/dev/null || fail "setup needs apt-get and dpkg"

    echo "autobahn: building $ENV (about 2 minutes, once)" >&2
    rm -rf "$ENV"
    mkdir -p "$ENV/bin" "$ENV/debs" "$ENV/wheels"
    fetch_debs "$ENV/debs"
    local deb
    for deb in "$ENV"/debs/*.deb; do
        dpkg -x "$deb" "$ENV/root"
    done
    [[ -x "$ENV/root/usr/bin/python2.7" ]] || fail "no python2.7 in the unpacked packages"

    # Launchers: the private interpreter must never see the host's Python settings.
    cat >"$ENV/bin/py27" <<EOF
#!/bin/sh
# Private CPython 2.7 for Autobahn|Testsuite (generated by scripts/autobahn.sh).
exec env -u PYTHONPATH -u PYTHONSTARTUP PYTHONHOME="$ENV/root/usr" PYTHONNOUSERSITE=1 \\
    PYTHONDONTWRITEBYTECODE=1 LD_LIBRARY_PATH="$ENV/root/usr/lib/x86_64-linux-gnu" \\
    "$ENV/root/usr/bin/python2.7" "\$@"
EOF
    cat >"$ENV/bin/wstest" <<EOF
#!/bin/sh
# Autobahn|Testsuite's wstest on the private CPython 2.7 (generated by scripts/autobahn.sh).
exec "$ENV/bin/py27" -u "$ENV/root/usr/local/bin/wstest" "\$@"
EOF
    chmod +x "$ENV/bin/py27" "$ENV/bin/wstest"
    "$ENV/bin/py27" -c 'import ssl, ctypes, zlib' || fail "the private python2.7 cannot load ssl/ctypes/zlib"

    echo "autobahn: installing pip for python2.7" >&2
    local -a boot
    mapfile -t boot < <(pins "$DATA/bootstrap-py27.txt")
    local pip_env=(env -u PIP_FIND_LINKS PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1)
    "${pip_env[@]}" python3 -m pip download -q --no-deps --only-binary=:all: \
        --python-version 2.7 --implementation cp --abi cp27mu --platform manylinux1_x86_64 \
        -d "$ENV/wheels" "${boot[@]}" >"$ENV/pip-bootstrap.log" 2>&1 \
        || { cat "$ENV/pip-bootstrap.log" >&2; fail "could not download ${boot[*]}"; }
    local pipwheel
    pipwheel=$(ls "$ENV"/wheels/pip-*.whl)
    # A pip wheel is importable as it is: run it from the archive to install itself.
    "${pip_env[@]}" "$ENV/bin/py27" "$pipwheel/pip" install -q --no-index --find-links "$ENV/wheels" \
        --no-warn-script-location "${boot[@]}" >>"$ENV/pip-bootstrap.log" 2>&1 \
        || { cat "$ENV/pip-bootstrap.log" >&2; fail "could not install pip into python2.7"; }

    echo "autobahn: installing autobahntestsuite for python2.7 (compiles Twisted; about a minute)" >&2
    CFLAGS="-I$ENV/root/usr/include/python2.7 -I$ENV/root/usr/include" \
        LDFLAGS="-L$ENV/root/usr/lib/x86_64-linux-gnu" \
        "${pip_env[@]}" "$ENV/bin/py27" -m pip install -q --no-warn-script-location \
        -c "$DATA/constraints-py27.txt" autobahntestsuite >"$ENV/pip-install.log" 2>&1 \
        || { tail -n 30 "$ENV/pip-install.log" >&2; fail "pip could not install autobahntestsuite"; }
    "$ENV/bin/py27" -m pip freeze >"$ENV/installed.txt" 2>/dev/null || true
    "$ENV/bin/wstest" -a >&2 || fail "wstest does not start"

    rm -rf "$ENV/debs" "$ENV/wheels"
    echo "$key" >"$ENV/ready"
    # Environments built for earlier pins are dead weight now.
    local old
    for old in "$CACHE"/env-*; do
        [[ "$old" == "$ENV" ]] || rm -rf "$old"
    done
}

# Prints the non-comment lines of a pin file.
pins() {
    sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$1"
}

# Downloads the bullseye packages into $1 with apt-get, using only private state:
# the host's apt configuration, lists and cache are neither read nor changed.
fetch_debs() {
    local dest="$1" apt="$ENV/apt" mirror
    mirror=$(debian_mirror) || fail "found no Debian mirror in /etc/apt/sources.list{,.d/*}"
    mkdir -p "$apt/lists/partial" "$apt/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bullseye main" \
        >"$apt/sources.list"
    local opts=(-q -o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt" -o "Dir::Cache::Archives=$apt/archives"
        -o "Dir::State::status=/dev/null" -o "APT::Sandbox::User=root")
    echo "autobahn: fetching CPython 2.7 from Debian bullseye ($mirror)" >&2
    apt-get "${opts[@]}" update >"$apt/update.log" 2>&1 \
        || { cat "$apt/update.log" >&2; fail "apt-get update (private bullseye list) failed"; }
    local -a debs
    mapfile -t debs < <(pins "$DATA/debs-bullseye.txt")
    (cd "$dest" && apt-get "${opts[@]}" download "${debs[@]}") >"$apt/download.log" 2>&1 \
        || { cat "$apt/download.log" >&2; fail "apt-get download failed"; }
    (cd "$dest" && ls) >"$ENV/debs.txt"
    rm -rf "$apt"
}

# The first http(s) URI ending in /debian from the host's apt sources (deb822 or one-line).
debian_mirror() {
    local uri
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' \
        | grep -E '^https?://.*/debian/?$' | head -n 1) || true
    if [[ -z "$uri" ]]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; break } }' \
            | grep -E '/debian/?$' | head -n 1) || true
    fi
    [[ -n "$uri" ]] && printf '%s\n' "${uri%/}"
}

# ----------------------------------------------------------------------------- run

# Succeeds once a TCP connection to $1:$2 opens, trying for up to $3 seconds.
wait_for_port() {
    local deadline=$((SECONDS + $3))
    while true; do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then
            return 0
        fi
        [[ $SECONDS -lt $deadline ]] || return 1
        sleep 0.2
    done
}

# Succeeds if the server ($1 ws or wss) answers a WebSocket upgrade of $4 with "101". Reads
# the whole response and closes politely (close frame, then the server's close frame), so the
# probe never shows up as a reset connection on the server.
check_upgrade() {
    if [[ $1 == wss ]]; then
        check_upgrade_tls "$2" "$3" "$4"
        return
    fi
    shift
    local fd status="" line
    exec {fd}<>"/dev/tcp/$1/$2" || return 1
    printf 'GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n' \
        "$3" "$1" "$2" >&"$fd"
    IFS= read -r -t 5 status <&"$fd" || true
    while IFS= read -r -t 5 line <&"$fd" && [[ -n "${line%$'\r'}" ]]; do :; done
    if [[ "$status" == "HTTP/1.1 101"* ]]; then
        # A masked close frame with code 1000 (mask key 0), then wait for the reply.
        printf '\x88\x82\x00\x00\x00\x00\x03\xe8' >&"$fd"
        LC_ALL=C read -r -t 2 -N 4 line <&"$fd" || true
    fi
    exec {fd}>&-
    [[ "$status" == "HTTP/1.1 101"* ]]
}

# check_upgrade over TLS (bash's /dev/tcp speaks no TLS): the host's Python 3 does the same
# exchange, without checking the certificate, as the suite itself does not.
check_upgrade_tls() {
    python3 - "$1" "$2" "$3" <<'PY'
import socket, ssl, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with socket.create_connection((host, port), timeout=5) as raw:
    with context.wrap_socket(raw, server_hostname=host) as s:
        s.sendall((
            "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (path, host, port)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        ok = head.startswith(b"HTTP/1.1 101")
        if ok:
            s.sendall(b"\x88\x82\x00\x00\x00\x00\x03\xe8")
            try:
                s.recv(4)
            except OSError:
                pass
sys.exit(0 if ok else 1)
PY
}

# Prints how far wstest (pid $2, writing log $1) has got, every 10 seconds until it ends.
show_progress() {
    local log="$1" pid="$2" expected="$3" started="$4" done next=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        if [[ $SECONDS -ge $next ]]; then
            done=$(grep -c '^Running test case ID' "$log" 2>/dev/null) || done=0
            echo "  ... $done/$expected cases started ($(($(date +%s) - started))s)" >&2
            next=$((SECONDS + 10))
        fi
    done
}

main "$@"
exit $?
