#!/usr/bin/env bash
# bench/run.sh: tls-echod next to stunnel and haproxy, and next to the crypto
# bound of its own mbedTLS, on this machine, now.  `make bench` runs it after
# building everything it needs.
#
# For each server (tls-echod in relay mode to a plaintext echo backend and in
# echo mode, with `workers = 1`; stunnel4 and haproxy relaying to the same
# backend, one thread) on the same certificates (ECDSA P-256 everywhere): the
# server is pinned to CPU BENCH_SERVER_CPU (0), the load generator and the echo
# backend to BENCH_CLIENT_CPU (1).  Every mode runs BENCH_REPS times (3) for
# BENCH_SECONDS (4) and the medians go into one markdown table (bench/report.py).
# TLS 1.2 runs use ECDHE-ECDSA-AES128-GCM-SHA256 (the suite of the README's
# and bench/RESULTS.md's tables), TLS 1.3 runs TLS_AES_128_GCM_SHA256, for
# tls-echod only.
#
# Environment:
#   BENCH_QUICK=1        smoke run: ~1.5 s per mode, 1 repetition, 600 idle conns
#   BENCH_SECONDS, BENCH_REPS, BENCH_IDLE_CONNS, BENCH_IDLE_BASE
#   BENCH_SERVERS        subset of "echod-relay echod-echo stunnel haproxy"
#                        (and "ref-relay ref-echo" with BENCH_ECHOD_REF)
#   BENCH_ECHOD_REF      a reference tls-echod binary (e.g. a build of the
#                        previous commit): servers ref-relay and ref-echo run
#                        it on the same configs, next to echod-relay and
#                        echod-echo, measurement by measurement (A, B, A, B...:
#                        machine noise hits both alike); the report gives each
#                        tls-echod figure as a ratio to the reference too
#   BENCH_MODES          subset of "full resume latency bulk mixed idle"
#   BENCH_ECHOD_TLS      extra settings for tls-echod's tls group, e.g.
#                        'record_size = 16384;' (bulk vs memory trade-off)
#   BENCH_PERF=1         also perf-record the tls-echod worker (relay) under the
#                        full and resume modes; top symbols go into the results
#   BENCH_OUT            results file (default bench/results/YYYY-MM-DD.md)
#   BENCH_KEEP=1         keep the work dir (configs, logs, raw results, perf data)
#   BUILDDIR             where tls-echod and build/bench/* are (default build)
# Needs: the binaries (make bench builds them), openssl, python3; stunnel4 and
# haproxy (skipped with a note when missing).
set -euo pipefail

readonly PROG=${0##*/}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=$(cd "${BUILDDIR:-$ROOT/build}" && pwd)
BB=$BUILDDIR/bench
ECHOD=${TLS_ECHOD_BIN:-$BUILDDIR/tls-echod}
ECHOD_REF=${BENCH_ECHOD_REF:-}
LOADGEN=$BB/loadgen

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }

for b in "$ECHOD" "$LOADGEN" "$BB/cryptobench" "$BB/echo-backend"; do
    [[ -x $b ]] || die "$b missing: run make bench (or make bench-build)"
done
[[ -z $ECHOD_REF || -x $ECHOD_REF ]] || die "BENCH_ECHOD_REF: $ECHOD_REF is not executable"
command -v python3 >/dev/null || die "python3 needed for the report"

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
    SECS=${BENCH_SECONDS:-1.5} REPS=${BENCH_REPS:-1}
    IDLE_N=${BENCH_IDLE_CONNS:-600} IDLE_BASE=${BENCH_IDLE_BASE:-200}
    CRYPTO_SECS=0.1
else
    SECS=${BENCH_SECONDS:-4} REPS=${BENCH_REPS:-3}
    IDLE_N=${BENCH_IDLE_CONNS:-9000} IDLE_BASE=${BENCH_IDLE_BASE:-2000}
    CRYPTO_SECS=0.5
fi
SERVERS=${BENCH_SERVERS:-echod-relay echod-echo stunnel haproxy${ECHOD_REF:+ ref-relay ref-echo}}
[[ -n $ECHOD_REF || " $SERVERS " != *" ref-"* ]] || die "ref-* servers need BENCH_ECHOD_REF"
MODES=${BENCH_MODES:-full resume latency bulk mixed idle}
SCPU=${BENCH_SERVER_CPU:-0} CCPU=${BENCH_CLIENT_CPU:-1}
if (($(nproc) < 2)); then
    say "warning: one CPU only: server and load generator share it"
    CCPU=$SCPU
fi
CIPHER12=ECDHE-ECDSA-AES128-GCM-SHA256
CIPHER13=TLS_AES_128_GCM_SHA256
DATE=$(date -u +%Y-%m-%d)
OUT=${BENCH_OUT:-$ROOT/bench/results/$DATE.md}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tls-echod-bench.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        say "kept $WORK"
    else
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
RES=$WORK/res
mkdir -p "$RES"
# The daemons get many descriptors: 9,000 relayed connections are 18,000.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Free loopback ports, picked at random so concurrent runs do not collide.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
    local p i
    for ((i = 0; i < 100; i++)); do
        p=$((20000 + RANDOM % 12000))
        if port_free "$p" && [[ " ${USED_PORTS:-} " != *" $p "* ]]; then
            USED_PORTS="${USED_PORTS:-} $p"
            echo "$p"
            return
        fi
    done
    die "no free port found"
}
wait_port() { # PORT PID
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

say "PKI, crypto bound, echo backend (work dir $WORK)"
"$ROOT/test/gen-test-pki.sh" "$WORK/pki" >/dev/null
PKI=$WORK/pki
cat "$PKI/server.crt" "$PKI/server.key" >"$WORK/haproxy.pem"
chmod 0600 "$WORK/haproxy.pem"

# The bound is measured REPS times too (medians), on the server's CPU.
for ((rep = 1; rep <= REPS; rep++)); do
    taskset -c "$SCPU" "$BB/cryptobench" --seconds "$CRYPTO_SECS" \
        --cert "$PKI/client.crt" >"$RES/crypto.$rep.txt" 2>"$WORK/crypto.log" ||
        { cat "$WORK/crypto.log" >&2; die "cryptobench failed"; }
    sed -n 's/^/  /; 2p' "$WORK/crypto.log" >&2
done

BPORT=$(pick_port)
taskset -c "$CCPU" "$BB/echo-backend" --listen "127.0.0.1:$BPORT" \
    --seconds 3600 >"$WORK/backend.out" 2>&1 &
BPID=$!
PIDS+=("$BPID")
wait_port "$BPORT" "$BPID" || die "echo backend did not start"

# --- servers -------------------------------------------------------------------

# Several servers may run at once (a group, below): their pids and ports.
declare -A PID_OF PORT_OF
start_server() { # NAME
    local name=$1 port
    port=$(pick_port)
    case $name in
    echod-echo | echod-relay | ref-echo | ref-relay)
        local mode=${name#*-} backend='' bin=$ECHOD
        [[ $name == ref-* ]] && bin=$ECHOD_REF
        [[ $mode == relay ]] && backend="backend = { address = \"127.0.0.1:$BPORT\"; };"
        cat >"$WORK/$name.conf" <<EOF
workers = 1;
log = "stderr";
max_connections = 20000;
listeners = (
  { name = "bench"; listen = "127.0.0.1:$port"; mode = "$mode"; $backend
    tls = { cert = "$PKI/server.crt"; key = "$PKI/server.key"; ca = "$PKI/ca.crt"; ${BENCH_ECHOD_TLS:-} }; }
);
EOF
        # one log line per connection: formatted, written to /dev/null
        taskset -c "$SCPU" "$bin" -c "$WORK/$name.conf" \
            >/dev/null 2>"$WORK/$name.log" &
        ;;
    stunnel)
        cat >"$WORK/stunnel.conf" <<EOF
foreground = yes
pid =
syslog = no
debug = 3
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
[bench]
accept = 127.0.0.1:$port
connect = 127.0.0.1:$BPORT
cert = $PKI/server.crt
key = $PKI/server.key
CAfile = $PKI/ca.crt
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.2
ciphers = $CIPHER12:ECDHE-ECDSA-CHACHA20-POLY1305
EOF
        taskset -c "$SCPU" stunnel4 "$WORK/stunnel.conf" \
            >/dev/null 2>"$WORK/stunnel.log" &
        ;;
    haproxy)
        cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 9500
    tune.ssl.cachesize 20000
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend bench
    bind 127.0.0.1:$port ssl crt $WORK/haproxy.pem ca-file $PKI/ca.crt verify required ssl-min-ver TLSv1.2
    default_backend echo
backend echo
    server b 127.0.0.1:$BPORT
EOF
        taskset -c "$SCPU" haproxy -db -f "$WORK/haproxy.cfg" \
            >/dev/null 2>"$WORK/haproxy.log" &
        ;;
    esac
    PID_OF[$name]=$! PORT_OF[$name]=$port
    PIDS+=("$!")
    if ! wait_port "$port" "${PID_OF[$name]}"; then
        tail -5 "$WORK/$name.log" >&2 || true
        die "$name did not start"
    fi
    sleep 0.2
}
stop_server() { # NAME
    kill "${PID_OF[$1]}" 2>/dev/null || true
    wait "${PID_OF[$1]}" 2>/dev/null || true
    unset "PID_OF[$1]" "PORT_OF[$1]"
}
have_server() {
    case $1 in
    stunnel) command -v stunnel4 >/dev/null ;;
    haproxy) command -v haproxy >/dev/null ;;
    *) true ;;
    esac
}

# run NAME TLS MODE REP [loadgen args...]: one measurement into $RES
run_lg() {
    local name=$1 tls=$2 mode=$3 rep=$4
    shift 4
    local cipher=$CIPHER12
    [[ $tls == 13 ]] && cipher=$CIPHER13
    local f="$RES/$name.$tls.$mode.$rep.txt"
    if ! taskset -c "$CCPU" "$LOADGEN" "$mode" --port "${PORT_OF[$name]}" \
        --cert "$PKI/client.crt" --key "$PKI/client.key" --ca "$PKI/ca.crt" \
        "--tls1.${tls#1}" --cipher "$cipher" "$@" >"$f" 2>"$f.log"; then
        say "warning: $name TLS $tls $mode failed: $(tail -1 "$f.log")"
    fi
    printf '  %-12s TLS 1.%s %-8s #%s %s\n' "$name" "${tls#1}" "$mode" "$rep" \
        "$(grep -v '^negotiated' "$f.log" | tail -1)" >&2
}
median_of() { # NAME TLS MODE KEY
    cat "$RES/$1.$2.$3".*.txt 2>/dev/null | sed -n "s/^$4=//p" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}
want_mode() { [[ " $MODES " == *" $1 "* ]]; }

perf_worker() { # NAME TLS MODE: perf record the worker while the mode runs
    local name=$1 tls=$2 mode=$3 wpid spid=${PID_OF[$1]}
    wpid=$(awk '{ print $1 }' "/proc/$spid/task/$spid/children" 2>/dev/null)
    [[ -n $wpid ]] || { say "perf: no worker of $spid"; return; }
    perf record -q -g -o "$WORK/perf.$mode.$tls.data" -p "$wpid" \
        -- sleep "$SECS" >/dev/null 2>&1 &
    local ppid=$!
    run_lg "$name" "$tls" "$mode" perf --seconds "$SECS"
    wait "$ppid" || true
    perf report -q -i "$WORK/perf.$mode.$tls.data" --no-children \
        --sort symbol --percent-limit 1.5 --stdio 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -15 >"$RES/perf.$mode.$tls.txt" || true
    rm -f "$RES/$name.$tls.$mode.perf.txt"
}

tls_list() { [[ $1 == echod-* || $1 == ref-* ]] && echo "12 13" || echo "12"; }
# group NAME: the servers measured together, one measurement each in turn:
# echod-X with ref-X when both are selected; nothing for a ref-X that goes
# with its echod-X.
group() {
    case $1 in
    echod-*) if [[ " $SERVERS " == *" ref-${1#echod-} "* ]]; then
        echo "$1 ref-${1#echod-}"
        return
    fi ;;
    ref-*) if [[ " $SERVERS " == *" echod-${1#ref-} "* ]]; then return; fi ;;
    esac
    echo "$1"
}
each() { # TLS MODE REP [loadgen args...]: run_lg on each server of $GROUP
    local s
    for s in $GROUP; do
        run_lg "$s" "$@"
    done
}

for name in $SERVERS; do
    if ! have_server "$name"; then
        say "$name not installed: skipped (make bench installs it)"
        continue
    fi
    GROUP=$(group "$name")
    [[ -n $GROUP ]] || continue
    for s in $GROUP; do
        for tls in $(tls_list "$s"); do
            if want_mode idle; then
                # a fresh server: its RSS at IDLE_BASE and at IDLE_N connections
                start_server "$s"
                run_lg "$s" "$tls" idle 1 --conns "$IDLE_N" \
                    --idle-base "$IDLE_BASE" --rss-pid "${PID_OF[$s]}" --seconds 120
                stop_server "$s"
            fi
        done
    done
    for s in $GROUP; do
        start_server "$s"
        say "$s on port ${PORT_OF[$s]} (pid ${PID_OF[$s]}), CPU $SCPU; load generator on CPU $CCPU"
    done
    for tls in $(tls_list "$name"); do
        for ((rep = 1; rep <= REPS; rep++)); do
            want_mode full && each "$tls" full "$rep" --conns 16 --seconds "$SECS"
            want_mode resume && each "$tls" resume "$rep" --conns 16 --seconds "$SECS"
            want_mode latency && each "$tls" latency "$rep" --conns 32 --seconds "$SECS"
            want_mode bulk && each "$tls" bulk "$rep" --conns 4 --seconds "$SECS"
        done
        if want_mode mixed; then
            # full handshakes arriving at half the capacity just measured
            for ((rep = 1; rep <= REPS; rep++)); do
                for s in $GROUP; do
                    cap=$(median_of "$s" "$tls" full hs_per_s)
                    rate=$(awk -v c="${cap:-0}" 'BEGIN { r = c / 2; if (r < 10) r = 10; printf "%.0f", r }')
                    run_lg "$s" "$tls" mixed "$rep" --conns 32 --rate "$rate" --seconds "$SECS"
                done
            done
        fi
        if [[ ${BENCH_PERF:-0} == 1 && $name == echod-relay ]] && command -v perf >/dev/null; then
            perf_worker "$name" "$tls" full
            perf_worker "$name" "$tls" resume
        fi
    done
    for s in $GROUP; do
        stop_server "$s"
    done
done

# --- versions, machine, table --------------------------------------------------
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "tls_echod=$("$ECHOD" -V 2>&1 | head -2 | paste -sd ';' | sed 's/;/; /')"
    [[ -z $ECHOD_REF ]] ||
        echo "tls_echod_ref=$ECHOD_REF: $("$ECHOD_REF" -V 2>&1 | head -2 | paste -sd ';' | sed 's/;/; /')"
    echo "openssl=$(openssl version)"
    command -v stunnel4 >/dev/null &&
        echo "stunnel=$(stunnel4 -version 2>&1 | grep -m1 -i '^stunnel' || true)"
    command -v haproxy >/dev/null &&
        echo "haproxy=$(haproxy -v 2>&1 | head -1)"
    echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    echo "cpus=$(nproc)"
    echo "kernel=$(uname -r)"
    echo "load=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "settings=seconds $SECS, repetitions $REPS, idle $IDLE_BASE -> $IDLE_N connections, server CPU $SCPU, client CPU $CCPU${BENCH_QUICK:+, BENCH_QUICK=$BENCH_QUICK}"
} >"$RES/meta.txt"

mkdir -p "$(dirname "$OUT")"
python3 "$ROOT/bench/report.py" "$RES" >"$OUT"
cat "$OUT"
say "written to $OUT"
