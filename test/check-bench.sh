#!/usr/bin/env bash
# check-bench.sh: smoke test of the benchmark tools (bench/), not a benchmark.
#
# Runs build/bench/loadgen in every mode for about a second with tiny counts
# against a real tls-echod (workers = 1, an echo listener and a relay
# listener in front of build/bench/echo-backend) and checks that each run
# completes, reports non-zero figures, sees no client errors and, for
# resume, really resumes (ratio > 0.9).  No figure is judged as a speed.
#
# Environment (set by make check-run): TLS_ECHOD_BIN, TEST_PKI, TEST_TMPDIR,
# BUILDDIR.  Exit 77 (skipped) without libssl-dev or the bench binaries.
# Ends with "N passed, N failed".
set -uo pipefail

BUILDDIR=${BUILDDIR:-build}
BIN=${TLS_ECHOD_BIN:-$BUILDDIR/tls-echod}
LOADGEN=$BUILDDIR/bench/loadgen
BACKEND=$BUILDDIR/bench/echo-backend
PKI=${TEST_PKI:-}

if ! pkg-config --exists openssl 2>/dev/null; then
    echo "check-bench: libssl-dev not installed: skipped"
    exit 77
fi
for b in "$BIN" "$LOADGEN" "$BACKEND"; do
    if [[ ! -x $b ]]; then
        echo "check-bench: $b not built: skipped"
        exit 77
    fi
done
if [[ -z $PKI || ! -f $PKI/client.crt ]]; then
    PKI=$(mktemp -d "${TMPDIR:-/tmp}/check-bench-pki.XXXXXX")
    test/gen-test-pki.sh "$PKI" >/dev/null || { echo "check-bench: no PKI"; exit 1; }
fi

work=$(mktemp -d "${TEST_TMPDIR:-${TMPDIR:-/tmp}}/check-bench.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [[ -n ${CHECK_BENCH_KEEP:-} ]] || rm -rf -- "$work"
}
trap cleanup EXIT

passed=0 failed=0
ok() { echo "PASS: $1"; passed=$((passed + 1)); }
bad() { echo "FAIL: $1"; failed=$((failed + 1)); }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
    local p
    while :; do
        p=$((21000 + RANDOM % 11000)) # below the ephemeral ports
        port_free "$p" && [[ $p != "${used:-}" ]] && { used=$p; echo "$p"; return; }
    done
}
wait_port() {
    local i
    for ((i = 0; i < 50; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

bport=$(pick_port)
"$BACKEND" --listen "127.0.0.1:$bport" --seconds 120 >/dev/null 2>&1 &
pids+=($!)
eport=$(pick_port)
rport=$(pick_port)
cat >"$work/bench.conf" <<EOF
workers = 1;
log = "stderr";
listeners = (
  { name = "echo"; listen = "127.0.0.1:$eport"; mode = "echo";
    tls = { cert = "$PKI/server.crt"; key = "$PKI/server.key"; ca = "$PKI/ca.crt"; }; },
  { name = "relay"; listen = "127.0.0.1:$rport"; mode = "relay";
    backend = { address = "127.0.0.1:$bport"; };
    tls = { cert = "$PKI/server.crt"; key = "$PKI/server.key"; ca = "$PKI/ca.crt"; }; }
);
EOF
"$BIN" -c "$work/bench.conf" >/dev/null 2>"$work/daemon.log" &
dpid=$!
pids+=("$dpid")
if ! wait_port "$bport" || ! wait_port "$eport" || ! wait_port "$rport"; then
    ss -ltnp | grep -E ":($bport|$eport|$rport) " || echo "nothing listens on $bport $eport $rport"
    cat "$work/daemon.log"
    bad "daemon and echo backend start"
    echo "$passed passed, $failed failed"
    exit 1
fi

# lg NAME PORT MODE ARGS... -- CHECKS: run loadgen, then each check is
# "key>value" (numeric) on its key=value output.
lg() {
    local name=$1 port=$2 mode=$3 out
    shift 3
    local args=() checks=()
    while (($#)) && [[ $1 != -- ]]; do args+=("$1"); shift; done
    (($#)) && shift
    checks=("$@")
    out=$(timeout 30 "$LOADGEN" "$mode" --port "$port" --cert "$PKI/client.crt" \
        --key "$PKI/client.key" --ca "$PKI/ca.crt" --seconds 1 "${args[@]}" 2>"$work/lg.err")
    local rc=$?
    if ((rc != 0)); then
        bad "$name: loadgen exit status $rc: $(tail -2 "$work/lg.err" | tr '\n' ' ')"
        return
    fi
    local c key min v
    for c in "errors=0" "${checks[@]}"; do
        if [[ $c == *=* ]]; then
            key=${c%%=*} min=${c#*=}
            v=$(sed -n "s/^$key=//p" <<<"$out")
            if [[ $v != "$min" ]]; then
                bad "$name: $key is '$v', expected $min"
                return
            fi
        else
            key=${c%%>*} min=${c#*>}
            v=$(sed -n "s/^$key=//p" <<<"$out")
            if ! awk -v v="${v:-x}" -v m="$min" 'BEGIN { exit !(v + 0 == v && v > m) }'; then
                bad "$name: $key is '$v', expected > $min"
                return
            fi
        fi
    done
    ok "$name"
}

lg "full handshakes, TLS 1.2, counted" "$eport" full --tls1.2 --conns 2 --count 20 \
    -- "handshakes>0" "hs_per_s>0"
lg "full handshakes, TLS 1.3, counted" "$eport" full --tls1.3 --conns 2 --count 20 \
    -- "handshakes>0" "hs_per_s>0" "tls_version=TLSv1.3"
lg "resumed handshakes, TLS 1.2, really resumed" "$eport" resume --tls1.2 --conns 2 \
    --count 200 -- "handshakes>0" "resumption_ratio>0.9"
lg "resumed handshakes, TLS 1.3, really resumed" "$eport" resume --tls1.3 --conns 2 \
    --count 100 -- "handshakes>0" "resumption_ratio>0.9"
lg "latency mode reports round trips and percentiles" "$eport" latency --conns 4 \
    --count 2000 -- "round_trips>0" "p50_us>0" "p99_us>0" "p999_us>0"
lg "bulk echo, every byte verified" "$eport" bulk --conns 2 --count 8 \
    -- "bytes_echoed>0" "mb_per_s>0" "verify_failures=0"
lg "bulk through the relay and the echo backend" "$rport" bulk --tls1.2 --conns 2 \
    --count 8 -- "bytes_echoed>0" "verify_failures=0"
lg "idle connections held, RSS of master and worker" "$eport" idle --conns 20 \
    --idle-base 5 --rss-pid "$dpid" -- "idle_conns=20" "rss_procs=2" "rss_n_kb>0"
lg "mixed: latency while handshakes arrive" "$eport" mixed --conns 4 --rate 40 \
    -- "round_trips>0" "handshakes>0" "p99_us>0"

echo "$passed passed, $failed failed"
((failed == 0))
