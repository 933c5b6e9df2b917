#!/usr/bin/env bash
# check-prometheus.sh: a real Prometheus server scrapes tls-echod's /metrics
# on loopback and answers queries about traffic this script made.
#
# Starts tls-echod (workers = 2, one echo listener, metrics on a free
# loopback port), makes N echo connections with build/tls-echo, starts
# prometheus with a 1 s scrape interval and its storage in a scratch folder,
# and asks its HTTP API (/api/v1/query) until the answers match: the target
# is up, tls_echod_connections_total and the handshakes are N, the
# handshake histogram counted N.  Every wait is bounded; everything started
# here is stopped here, by pid.
#
# Environment (set by make check-run): TLS_ECHOD_BIN, TEST_PKI, TEST_TMPDIR,
# BUILDDIR.  Exit 77 (skipped, with the reason) without prometheus (Debian
# package prometheus; scripts/install-deps.sh installs it).  Ends with
# "N passed, N failed".
set -uo pipefail

BUILDDIR=${BUILDDIR:-build}
BIN=${TLS_ECHOD_BIN:-$BUILDDIR/tls-echod}
CLIENT=$(dirname "$BIN")/tls-echo
PKI=${TEST_PKI:-}
N=5

if ! command -v prometheus >/dev/null 2>&1; then
    echo "check-prometheus: skipped: prometheus is not installed (Debian package prometheus)"
    exit 77
fi
for b in "$BIN" "$CLIENT"; do
    if [[ ! -x $b ]]; then
        echo "check-prometheus: skipped: $b not built"
        exit 77
    fi
done
if [[ -z $PKI || ! -f $PKI/client.crt ]]; then
    echo "check-prometheus: skipped: TEST_PKI has no test PKI (run it through make check-run)"
    exit 77
fi

work=$(mktemp -d "${TEST_TMPDIR:-${TMPDIR:-/tmp}}/check-prometheus.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf -- "$work"
}
trap cleanup EXIT

passed=0 failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAILED: $*"; failed=$((failed + 1)); }

# A loopback port free a moment ago.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# GET http://127.0.0.1:$1$2: the body on stdout; status 1 on any failure.
http_get() {
    python3 - "$1" "$2" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]), timeout=5) as r:
        sys.stdout.write(r.read().decode())
except Exception as e:
    sys.stderr.write("%s\n" % e)
    sys.exit(1)
EOF
}

# The one value of PromQL query $2 at Prometheus on port $1 (empty if none).
prom_value() {
    python3 - "$1" "$2" <<'EOF'
import json, sys, urllib.parse, urllib.request
url = "http://127.0.0.1:%s/api/v1/query?query=%s" % (sys.argv[1], urllib.parse.quote(sys.argv[2]))
try:
    with urllib.request.urlopen(url, timeout=5) as r:
        d = json.load(r)
    res = d["data"]["result"]
    if d["status"] == "success" and len(res) == 1:
        print(res[0]["value"][1])
except Exception:
    pass
EOF
}

# Ask query $2 until it answers $3 (as a number), at most $4 seconds.
expect_query() {
    local port=$1 q=$2 want=$3 secs=$4 got="" i
    for ((i = 0; i < secs * 4; i++)); do
        got=$(prom_value "$port" "$q")
        if [[ -n $got ]] && python3 -c "import sys; sys.exit(0 if float('$got') == float('$want') else 1)"; then
            ok "$q = $want"
            return 0
        fi
        sleep 0.25
    done
    fail "$q: got '${got}', want $want within ${secs} s"
    return 1
}

port=$(free_port)
mport=$(free_port)
pport=$(free_port)
cat >"$work/tls-echod.conf" <<EOF
log = "stderr";
workers = 2;
metrics = "127.0.0.1:$mport";
listeners = ({ name = "echo"; listen = "127.0.0.1:$port"; mode = "echo";
  tls = { cert = "$PKI/server.crt"; key = "$PKI/server.key"; ca = "$PKI/ca.crt"; }; });
EOF
"$BIN" -c "$work/tls-echod.conf" 2>"$work/tls-echod.log" &
pids+=($!)

ready=""
for ((i = 0; i < 100; i++)); do
    if ready=$(http_get "$mport" /readyz 2>/dev/null) && [[ $ready == ready* ]]; then
        break
    fi
    sleep 0.1
done
if [[ $ready == ready* ]]; then
    ok "tls-echod ready (/readyz)"
else
    fail "tls-echod not ready within 10 s; log:"
    tail -20 "$work/tls-echod.log"
    echo "$passed passed, $failed failed"
    exit 1
fi

sent=0
for ((i = 0; i < N; i++)); do
    if "$CLIENT" --cert "$PKI/client.crt" --key "$PKI/client.key" \
        --ca "$PKI/ca.crt" -m "hello $i" "127.0.0.1:$port" >>"$work/client.log" 2>&1; then
        sent=$((sent + 1))
    fi
done
if ((sent == N)); then ok "$N echo connections"; else fail "only $sent of $N echo connections worked"; fi

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: tls-echod
    static_configs:
      - targets: ["127.0.0.1:$mport"]
EOF
prometheus --config.file="$work/prometheus.yml" \
    --storage.tsdb.path="$work/data" \
    --web.listen-address="127.0.0.1:$pport" \
    --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)

if expect_query "$pport" 'up{job="tls-echod"}' 1 60; then
    expect_query "$pport" 'tls_echod_connections_total{listener="echo"}' "$N" 20
    expect_query "$pport" 'sum(tls_echod_handshakes_total{listener="echo"})' "$N" 20
    expect_query "$pport" 'tls_echod_handshake_seconds_count{listener="echo"}' "$N" 20
    expect_query "$pport" 'tls_echod_connections_active{listener="echo"}' 0 20
    expect_query "$pport" 'tls_echod_workers{state="current"}' 2 20
    expect_query "$pport" 'count(tls_echod_certificate_expiry_timestamp_seconds{listener="echo",kind="server"} > time())' 1 20
else
    echo "prometheus log:"
    tail -20 "$work/prometheus.log"
    echo "targets:"
    http_get "$pport" /api/v1/targets || true
    echo
fi

echo "$passed passed, $failed failed"
((failed == 0))
