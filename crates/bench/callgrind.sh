#!/usr/bin/env bash
# Server user-space instructions per operation, counted by callgrind: exact and repeatable where
# CPU time on a shared VM drifts by tens of percent.
#
#   bash crates/bench/callgrind.sh            # ≈ 10 min
#
# Each server runs under `valgrind --tool=callgrind --instr-atstart=no`, pinned to SERVER_CPU;
# `loadgen` (pinned to LOAD_CPU) first sets up (the check connection, and for keep-alive modes
# CONCURRENCY connections with one request each), then brackets exactly OPS operations with
# `callgrind_control -i on` / `-i off`, and the script dumps the counters (`callgrind_control
# -d`). Instructions ÷ operations = the figure; the ratio is against the first server.
#
# Modes: h1, h2 (keep-alive requests, OPS_REQUESTS each), handshake (full TLS 1.3 mTLS handshake
# + 1 request + close, OPS_HANDSHAKES each; handshake-mlkem: the same with the client offering
# X25519MLKEM768 only, which every server here accepts). Every server/mode pair runs REPEATS times in a fresh
# server process; the table shows the median and the spread (max-min)/median.
#
# Servers: floor (bare_server: tokio-rustls + hyper-util, handshake deadline, header-read
# timeout), floor-notimer (the same without the header-read timeout), floor-peer (the floor
# plus the least that lets a handler see the client: the chain in an Arc, inserted into each
# request's extensions), crate (crate_server: MtlsServer + TlsConfig + ClientCertLayer::require()
# with one subject rule), crate-nolayer (the same without the layer).
#
# Settings (environment): SERVERS, MODES, REPEATS (3), OPS_REQUESTS (20000), OPS_HANDSHAKES
# (300), CONCURRENCY (1), SERVER_CPU (0), LOAD_CPU (1), PORT (18543), OUT, KEEP (keep the
# callgrind files for callgrind_annotate; default 1).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SERVERS=${SERVERS:-"floor floor-notimer crate"}
MODES=${MODES:-"h1 h2 handshake handshake-mlkem"}
REPEATS=${REPEATS:-3}
OPS_REQUESTS=${OPS_REQUESTS:-20000}
OPS_HANDSHAKES=${OPS_HANDSHAKES:-300}
CONCURRENCY=${CONCURRENCY:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-18543}
OUT=${OUT:-$ROOT/target/callgrind/$(date -u +%Y%m%dT%H%M%SZ)}
KEEP=${KEEP:-1}

die() { printf 'callgrind.sh: %s\n' "$*" >&2; exit 1; }
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || die "needs valgrind"

mkdir -p "$OUT/pki" "$OUT/logs"
(cd "$ROOT" && CARGO_INCREMENTAL=0 cargo build --release --quiet -p tower-mtls-bench \
    --bin bare_server --bin crate_server --bin loadgen)
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET/release"

# The PKI of compare.sh: P-256 CA, server and client (CN=loadgen) certificates.
pki="$OUT/pki"
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ec "$pki/ca.key"
openssl req -x509 -new -key "$pki/ca.key" -sha256 -days 3650 -subj "/O=tower-mtls bench/CN=compare CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$pki/ca.crt" 2>/dev/null
leaf() {
    ec "$pki/$1.key"
    openssl req -new -key "$pki/$1.key" -subj "/CN=$2" -out "$pki/$1.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n%s' \
        "$3" "$4" >"$pki/$1.ext"
    openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
        -days 3650 -sha256 -extfile "$pki/$1.ext" -out "$pki/$1.crt" 2>/dev/null
}
leaf server localhost serverAuth "subjectAltName=DNS:localhost,IP:127.0.0.1"
leaf client loadgen clientAuth ""

SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap stop_server EXIT

start_server() { # name tag
    local name=$1 tag=$2 cmd
    local files=(--cert "$pki/server.crt" --key "$pki/server.key" --ca "$pki/ca.crt" --port "$PORT")
    case $name in
        floor) cmd=("$BIN/bare_server" "${files[@]}") ;;
        floor-notimer) cmd=("$BIN/bare_server" "${files[@]}" --header-read-timeout 0) ;;
        floor-peer) cmd=("$BIN/bare_server" "${files[@]}" --peer-extension) ;;
        crate) cmd=("$BIN/crate_server" "${files[@]}" --allow-cn loadgen) ;;
        crate-nolayer) cmd=("$BIN/crate_server" "${files[@]}" --no-layer) ;;
        *) die "unknown server $name" ;;
    esac
    taskset -c "$SERVER_CPU" valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$OUT/cg.$tag" "${cmd[@]}" >>"$OUT/logs/$tag.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.2
    done
    tail "$OUT/logs/$tag.log" >&2
    die "$name did not start"
}

RESULTS="$OUT/results.tsv"
: >"$RESULTS"
for repeat in $(seq "$REPEATS"); do
    for mode in $MODES; do
        for name in $SERVERS; do
            tag="$name.$mode.$repeat"
            start_server "$name" "$tag"
            case $mode in
                h1) args=(--mode count-requests --http 1 --ops "$OPS_REQUESTS") ;;
                h2) args=(--mode count-requests --http 2 --ops "$OPS_REQUESTS") ;;
                handshake) args=(--mode count-handshakes --http 1 --ops "$OPS_HANDSHAKES") ;;
                handshake-mlkem) args=(--mode count-handshakes --http 1 --ops "$OPS_HANDSHAKES" --kx x25519mlkem768) ;;
                *) die "unknown mode $mode" ;;
            esac
            rm -f "$OUT/cg.$tag"*
            taskset -c "$LOAD_CPU" "$BIN/loadgen" --addr "127.0.0.1:$PORT" --ca "$pki/ca.crt" \
                --cert "$pki/client.crt" --key "$pki/client.key" --label "$tag" \
                --concurrency "$CONCURRENCY" "${args[@]}" \
                --on-start "callgrind_control -z $SERVER_PID >/dev/null && callgrind_control -i on $SERVER_PID >/dev/null" \
                --on-stop "callgrind_control -i off $SERVER_PID >/dev/null && callgrind_control -d $SERVER_PID >/dev/null" \
                2>>"$OUT/logs/loadgen.log" >/dev/null || die "loadgen failed ($tag): $(tail -3 "$OUT/logs/loadgen.log")"
            stop_server
            # The dump of the window is the first numbered file; the exit dump (zero) follows.
            dump=$(ls "$OUT/cg.$tag".* 2>/dev/null | sort -V | head -1)
            [ -n "$dump" ] || die "no callgrind dump for $tag"
            ir=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$dump" | tail -1)
            ops=$([[ "$mode" = handshake* ]] && echo "$OPS_HANDSHAKES" || echo "$OPS_REQUESTS")
            printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$mode" "$repeat" "$ir" "$ops" >>"$RESULTS"
            printf '%-14s %-9s #%s  %12s Ir / %s = %10.1f per op\n' "$name" "$mode" "$repeat" \
                "$ir" "$ops" "$(echo "$ir / $ops" | bc -l)" >&2
            [ "$KEEP" = 1 ] || rm -f "$OUT/cg.$tag"*
        done
    done
done

python3 - "$RESULTS" "$SERVERS" <<'PY' | tee "$OUT/table.md"
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines() if l]
servers = sys.argv[2].split()
per = {}
for name, mode, _, ir, ops in rows:
    per.setdefault((mode, name), []).append(int(ir) / int(ops))
modes = list(dict.fromkeys(m for m, _ in per))
label = {"h1": "keep-alive request, HTTP/1.1", "h2": "keep-alive request, HTTP/2",
         "handshake": "full mTLS handshake + 1 request + close (X25519)",
         "handshake-mlkem": "the same with X25519MLKEM768"}
print("| per … (server user-space instructions) | " + " | ".join(servers) + " | " +
      " | ".join(f"{s} / {servers[0]}" for s in servers[1:]) + " | spread |")
print("|---" * (2 + 2 * (len(servers) - 1)) + "|---|")
for mode in modes:
    med = {s: statistics.median(per[(mode, s)]) for s in servers if (mode, s) in per}
    spread = max((max(v) - min(v)) / statistics.median(v) for (m, _), v in per.items() if m == mode)
    fmt = lambda x: f"{x/1000:,.1f} k" if x < 1e6 else f"{x/1e6:,.3f} M"
    print(f"| {label.get(mode, mode)} | " + " | ".join(fmt(med[s]) for s in servers if s in med) + " | " +
          " | ".join(f"{med[s]/med[servers[0]]:.3f}" for s in servers[1:] if s in med) +
          f" | {spread*100:.2f} % |")
PY
echo "results: $OUT" >&2
