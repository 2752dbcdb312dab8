#!/usr/bin/env bash
# Side by side, on one machine, with the same certificates and the same load generator:
# server CPU per mutual-TLS handshake and per keep-alive request, and server memory per idle
# mTLS connection, for
#
#   crate              crates/bench/src/bin/crate_server.rs: MtlsServer + TlsConfig +
#                      ClientCertLayer::require() with one subject rule, constant answer, one thread
#   extension          this crate's `extension` example (ClientCertLayer with one rule)
#   extension-nolayer  the same without the rule's layer (the layer's cost, per request)
#   bare               tokio-rustls + hyper, the crate's rustls settings, static answer (floor)
#   bare-axum          the same serving the extension's axum router (the crate's cost alone)
#   nginx              nginx, ssl_verify_client on (Debian's, OpenSSL 3)
#   go                 Go net/http, RequireAndVerifyClientCert (crates/bench/go)
#
# all TLS 1.3 only on the wire (the client offers nothing else), ECDSA P-256 certificates,
# X25519, session tickets off. Each server is pinned to one core, the load generator to the
# other. Each round also times the in-memory handshake (benches/handshake.rs) on the server's
# core, so that loopback figures can be read against it on a machine whose speed drifts. Prints one table (ratios to the floor and to each peer), writes results.jsonl,
# table.md and compare.png into $OUT.
#
# Run by hand (not in CI), as root on Debian 12:   bash crates/bench/compare.sh
# Installs what is missing with apt-get: golang-go, nginx, python3-matplotlib.
#
# Settings (environment): DURATION (s per measurement, 5), WARMUP (s, 1), ROUNDS (5: the
# servers are measured in turn, round after round, each round starting one server later, and
# the median is reported; ratios are medians of per-round ratios),
# CONCURRENCY (32), IDLE_CONNECTIONS (10000), SERVERS (all of the above), MODES (what to
# measure: "handshake h1 h2 idle"), SERVER_CPU (0),
# LOAD_CPU (1), PORT (18443), ALLOW (the extension's rule, cn=loadgen), OUT.
set -euo pipefail

# The workspace root (this script lives in crates/bench).
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/crates/bench"
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-5}
CONCURRENCY=${CONCURRENCY:-32}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
SERVERS=${SERVERS:-"crate extension extension-nolayer bare bare-axum nginx go"}
MODES=${MODES:-"handshake h1 h2 idle"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-18443}
ALLOW=${ALLOW:-cn=loadgen}
OUT=${OUT:-$ROOT/target/compare/$(date -u +%Y%m%dT%H%M%SZ)}

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------------------------

PYTHON=/usr/bin/python3
install_missing() {
    local missing=()
    command -v go >/dev/null 2>&1 || missing+=(golang-go)
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    if ! { [ -x "$PYTHON" ] && "$PYTHON" -c 'import matplotlib' 2>/dev/null; }; then
        missing+=(python3-matplotlib)
    fi
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    # Debian's nginx package starts a system nginx on port 80; we run our own and leave it be.
}

# --- processes -------------------------------------------------------------------------------

SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap 'stop_server' EXIT
trap 'stop_server; exit 130' INT TERM

wait_for_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Starts server $1 pinned to SERVER_CPU; sets SERVER_PID. $2 overrides the extension's rule.
start_server() {
    local name=$1 allow=${2:-$ALLOW} logfile="$OUT/logs/$1.log"
    local pki="$OUT/pki"
    case $name in
        extension | extension-nolayer)
            local rule=$allow
            [ "$name" = extension-nolayer ] && rule=""
            env STEADYBIT_EXTENSION_PORT="$PORT" \
                STEADYBIT_EXTENSION_HEALTH_PORT=$((PORT + 1)) \
                STEADYBIT_EXTENSION_TLS_SERVER_CERT="$pki/server.crt" \
                STEADYBIT_EXTENSION_TLS_SERVER_KEY="$pki/server.key" \
                STEADYBIT_EXTENSION_TLS_CLIENT_CAS="$pki/ca.crt" \
                TOWER_MTLS_CLIENT_ALLOW="$rule" \
                RUST_LOG=warn \
                taskset -c "$SERVER_CPU" "$BIN/extension" >>"$logfile" 2>&1 &
            ;;
        crate)
            taskset -c "$SERVER_CPU" "$BIN/crate_server" --port "$PORT" --allow-cn "${allow#cn=}" \
                --cert "$pki/server.crt" --key "$pki/server.key" --ca "$pki/ca.crt" \
                >>"$logfile" 2>&1 &
            ;;
        bare | bare-axum)
            local app=static
            [ "$name" = bare-axum ] && app=axum
            taskset -c "$SERVER_CPU" "$BIN/bare_server" --port "$PORT" --app "$app" \
                --cert "$pki/server.crt" --key "$pki/server.key" --ca "$pki/ca.crt" \
                >>"$logfile" 2>&1 &
            ;;
        nginx)
            taskset -c "$SERVER_CPU" "$NGINX" -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" \
                >>"$logfile" 2>&1 &
            ;;
        go)
            taskset -c "$SERVER_CPU" "$OUT/bin/goserver" -addr "127.0.0.1:$PORT" \
                -cert "$pki/server.crt" -key "$pki/server.key" -ca "$pki/ca.crt" \
                >>"$logfile" 2>&1 &
            ;;
        *) die "unknown server $name" ;;
    esac
    SERVER_PID=$!
    wait_for_port || { tail -20 "$logfile" >&2; die "$name did not start (log: $logfile)"; }
}

# Runs the load generator pinned to LOAD_CPU against the running server; appends its JSON.
loadgen() {
    local name=$1 round=$2
    shift 2
    local line
    line=$(taskset -c "$LOAD_CPU" "$BIN/loadgen" --addr "127.0.0.1:$PORT" --pid "$SERVER_PID" \
        --ca "$OUT/pki/ca.crt" --cert "$OUT/pki/client.crt" --key "$OUT/pki/client.key" \
        --label "$name" --json "$@" 2>>"$OUT/logs/loadgen.log") ||
        { tail -5 "$OUT/logs/loadgen.log" >&2; die "loadgen failed against $name"; }
    tail -1 "$OUT/logs/loadgen.log" >&2
    "$PYTHON" -c 'import json,sys; d=json.loads(sys.argv[1]); d["server"]=sys.argv[2]; d["round"]=int(sys.argv[3]); print(json.dumps(d))' \
        "$line" "$name" "$round" >>"$OUT/results.jsonl"
}

# Percentage of both cores busy over one second, before a server starts: other work on the
# machine skews every figure, so it is recorded (and warned about).
background_busy() {
    local a b
    a=($(head -1 /proc/stat))
    sleep 1
    b=($(head -1 /proc/stat))
    local total=0 idle=$((b[4] + b[5] - a[4] - a[5]))
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    echo $((100 * (total - idle) / (total > 0 ? total : 1)))
}

# --- material --------------------------------------------------------------------------------

make_pki() {
    local d="$OUT/pki"
    mkdir -p "$d"
    ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    ec "$d/ca.key"
    openssl req -x509 -new -key "$d/ca.key" -sha256 -days 3650 \
        -subj "/O=tower-mtls bench/CN=compare CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$d/ca.crt" 2>/dev/null
    leaf() { # name cn eku san
        ec "$d/$1.key"
        openssl req -new -key "$d/$1.key" -subj "/CN=$2" -out "$d/$1.csr" 2>/dev/null
        printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n%s' \
            "$3" "$4" >"$d/$1.ext"
        openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
            -days 3650 -sha256 -extfile "$d/$1.ext" -out "$d/$1.crt" 2>/dev/null
    }
    leaf server localhost serverAuth "subjectAltName=DNS:localhost,IP:127.0.0.1"
    leaf client loadgen clientAuth ""
    rm -f "$d"/*.csr "$d"/*.ext "$d"/*.srl
}

nginx_conf() {
    mkdir -p "$OUT/nginx/logs" "$OUT/nginx/tmp"
    local body='{"actions":[],"discoveries":[],"eventListeners":[],"targetAttributes":[],"targetTypes":[]}'
    cat >"$OUT/nginx/nginx.conf" <<EOF
# One process, as the other servers: one core, no master.
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
error_log $OUT/nginx/logs/error.log warn;
pid $OUT/nginx/nginx.pid;
events { worker_connections 30000; }
http {
    access_log off;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    client_body_temp_path $OUT/nginx/tmp/body;
    proxy_temp_path $OUT/nginx/tmp/proxy;
    fastcgi_temp_path $OUT/nginx/tmp/fastcgi;
    uwsgi_temp_path $OUT/nginx/tmp/uwsgi;
    scgi_temp_path $OUT/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$PORT ssl http2;
        ssl_certificate $OUT/pki/server.crt;
        ssl_certificate_key $OUT/pki/server.key;
        ssl_client_certificate $OUT/pki/ca.crt;
        ssl_verify_client on;
        ssl_protocols TLSv1.3;
        ssl_session_tickets off;
        location / {
            default_type application/json;
            return 200 '$body';
        }
    }
}
EOF
}

build() {
    log "building (cargo --release, go)"
    (cd "$ROOT" && cargo build --release --quiet -p tower-mtls --example extension &&
        cargo build --release --quiet -p tower-mtls-bench --bin bare_server --bin crate_server --bin loadgen)
    local target
    target=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
        "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    mkdir -p "$OUT/bin"
    cp "$target/release/examples/extension" "$target/release/bare_server" "$target/release/crate_server" \
        "$target/release/loadgen" "$OUT/bin/"
    BIN="$OUT/bin"
    HANDSHAKE_BENCH=$(cd "$ROOT" && cargo bench --quiet -p tower-mtls --bench handshake --no-run \
        --message-format=json 2>/dev/null | "$PYTHON" -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "handshake" and m.get("executable"):
        print(m["executable"])' | tail -1)
    [ -x "$HANDSHAKE_BENCH" ] || die "cannot find the handshake bench binary"
    mkdir -p "$OUT/bin"
    (cd "$HERE/go" && go build -o "$OUT/bin/goserver" .)
}

# The in-memory handshake's server time, on the server's core: the yardstick for this round.
in_memory() {
    local round=$1 spec us
    for spec in "rustls bare" "acceptor crate"; do
        us=$(HANDSHAKE_PROFILE="mtls/p256 $spec 1500" taskset -c "$SERVER_CPU" \
            "$HANDSHAKE_BENCH" 2>>"$OUT/logs/in-memory.log" | sed -n 's/.*: \([0-9.]*\) µs.*/\1/p')
        [ -n "$us" ] || die "in-memory handshake failed (log: $OUT/logs/in-memory.log)"
        echo "round $round: in-memory ${spec%% *} handshake, server side: $us µs" >&2
        echo "{\"server\":\"in-memory ${spec%% *}\",\"round\":$round,\"mode\":\"handshake\",\"protocol\":\"http/1.1\",\"server_cpu_us_per_op\":$us}" \
            >>"$OUT/results.jsonl"
    done
}

# --- run -------------------------------------------------------------------------------------

main() {
    [ "$(nproc)" -ge 2 ] || die "needs two cores (server on one, load on the other)"
    install_missing
    mkdir -p "$OUT/logs"
    : >"$OUT/results.jsonl"
    build
    # 10,000 idle connections on each side, plus the listener and friends.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    [ "$(ulimit -n)" -ge $((IDLE_CONNECTIONS + 100)) ] ||
        die "open-file limit $(ulimit -n) is below $IDLE_CONNECTIONS connections"
    make_pki
    nginx_conf

    {
        echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r)"
        echo "commit: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
        echo "rust: $(rustc --version)"
        echo "go: $(go version)"
        echo "nginx: $("$NGINX" -v 2>&1)"
        echo "openssl: $(openssl version)"
        echo "settings: DURATION=$DURATION WARMUP=$WARMUP ROUNDS=$ROUNDS CONCURRENCY=$CONCURRENCY IDLE_CONNECTIONS=$IDLE_CONNECTIONS SERVER_CPU=$SERVER_CPU LOAD_CPU=$LOAD_CPU"
    } | tee "$OUT/machine.txt" >&2

    # Does the extension example apply TOWER_MTLS_CLIENT_ALLOW? A rule that excludes the load
    # generator's certificate must turn it away.
    local layer_note=""
    if [[ " $SERVERS " == *" extension "* ]]; then
        start_server extension "cn=somebody-else"
        if taskset -c "$LOAD_CPU" "$BIN/loadgen" --addr "127.0.0.1:$PORT" --mode keepalive \
            --ca "$OUT/pki/ca.crt" --cert "$OUT/pki/client.crt" --key "$OUT/pki/client.key" \
            --duration 0 --warmup 0 --concurrency 1 >/dev/null 2>&1; then
            layer_note="the extension example ignores TOWER_MTLS_CLIENT_ALLOW: 'extension' ran without the layer"
            log "NOTE: $layer_note"
        else
            log "the extension example applies TOWER_MTLS_CLIENT_ALLOW ($ALLOW)"
        fi
        stop_server
    fi
    echo "layer: ${layer_note:-applied ($ALLOW)}" >>"$OUT/machine.txt"

    local busy servers=($SERVERS)
    for round in $(seq "$ROUNDS"); do
        [[ " $MODES " != *" handshake "* ]] || in_memory "$round"
        # Each round starts one server later, so that no server always follows the same one.
        local shift=$(((round - 1) % ${#servers[@]}))
        for name in "${servers[@]:shift}" "${servers[@]:0:shift}"; do
            busy=$(background_busy)
            log "round $round/$ROUNDS: $name (machine busy before start: $busy%)"
            [ "$busy" -le 10 ] || log "WARNING: other work is using $busy% of the machine"
            echo "{\"server\":\"$name\",\"round\":$round,\"mode\":\"background\",\"busy_percent\":$busy}" \
                >>"$OUT/results.jsonl"
            start_server "$name"
            for mode in $MODES; do
                case $mode in
                    handshake) set -- --mode handshake --http 1 ;;
                    h1) set -- --mode keepalive --http 1 ;;
                    h2) set -- --mode keepalive --http 2 ;;
                    *) continue ;;
                esac
                loadgen "$name" "$round" "$@" --concurrency "$CONCURRENCY" \
                    --duration "$DURATION" --warmup "$WARMUP"
            done
            stop_server
        done
    done

    # Memory: a fresh server each, so that earlier load does not lend it freed memory.
    [[ " $MODES " == *" idle "* ]] || SERVERS=""
    for name in $SERVERS; do
        log "idle connections: $name"
        start_server "$name"
        loadgen "$name" 1 --mode idle --http 1 --connections "$IDLE_CONNECTIONS" \
            --concurrency "$CONCURRENCY"
        stop_server
    done

    log "results ($OUT)"
    "$PYTHON" "$HERE/report.py" "$OUT/results.jsonl" --machine "$OUT/machine.txt" \
        --markdown "$OUT/table.md" --png "$OUT/compare.png"
}

main "$@"
