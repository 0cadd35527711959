# Sourced by benches/compare.sh and benches/instructions.sh: where the builds are, and how to
# start each server they measure. Needs ROOT (the repository) and the associative array VARIANT
# (name -> "BINARY [ARGS...]", corecast-like servers added with --variant); UWS_BIN (optional)
# is the directory of the uWebSockets peer's uws-echo.

# Cargo resolves a relative CARGO_TARGET_DIR against the directory it runs in; the scripts
# build from $ROOT, so resolve it there too.
TARGET=${CARGO_TARGET_DIR:-target}
[[ $TARGET == /* ]] || TARGET=$ROOT/$TARGET
PEERS_TARGET=$ROOT/benches/peers/target
[[ -n ${CARGO_TARGET_DIR:-} ]] && PEERS_TARGET=$TARGET/peers
BIN=$TARGET/release

server_known() {
    case $1 in
        corecast|tokio-tungstenite|fastwebsockets|node-ws|ceiling-epoll|ceiling-uring) return 0 ;;
        uws) return 0 ;;  # built outside the repository, found through UWS_BIN
        *) [[ -n ${VARIANT[$1]:-} ]] ;;
    esac
}

# The command line of server $1 listening on $2 (an address), one word per line.
server_cmd() {
    local name=$1 addr=$2
    case $name in
        corecast) printf '%s\n' "$BIN/corecast" --listen "$addr" --workers 1 --stats-interval 0 ;;
        tokio-tungstenite) printf '%s\n' "$PEERS_TARGET/release/peer-tokio-tungstenite" --listen "$addr" ;;
        fastwebsockets) printf '%s\n' "$PEERS_TARGET/release/peer-fastwebsockets" --listen "$addr" ;;
        node-ws) printf '%s\n' node "$ROOT/benches/peers/node-ws/server.js" --listen "$addr" ;;
        uws) printf '%s\n' "${UWS_BIN:?the uws server needs UWS_BIN (benches/peers/README.md)}/uws-echo" --listen "$addr" ;;
        ceiling-epoll|ceiling-uring)
            printf '%s\n' "$PEERS_TARGET/release/peer-ceiling" --listen "$addr" --io "${name#ceiling-}" ;;
        *)
            local words
            read -r -a words <<<"${VARIANT[$name]}"
            printf '%s\n' "${words[0]}" --listen "$addr" --workers 1 --stats-interval 0 "${words[@]:1}"
            ;;
    esac
}
