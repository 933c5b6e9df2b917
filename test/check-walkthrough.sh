#!/usr/bin/env bash
# check-walkthrough.sh - the README's quick start runs as written.
#
# Extracts the shell block between "<!-- walkthrough -->" and
# "<!-- /walkthrough -->" in README.md and runs it with `bash -e` from the
# repository root, changing only two things: port 8443 becomes a free
# loopback port (other checkouts may be using 8443), and "build/" becomes
# $BUILDDIR/ when the suite runs on another build folder.  Temporary files
# go to a private TMPDIR; the run is bounded (WALKTHROUGH_TIMEOUT, 120 s)
# and everything it started is killed afterwards (its own process group).
#
# usage: test/check-walkthrough.sh
# Prints "ok - ..." / "not ok - ..." and ends with "N passed, N failed".
# Checks run small programs in bash -c '...' "$1" on purpose; the cleanup
# trap is reached through EXIT.
# shellcheck disable=SC2016,SC2317
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
builddir=${BUILDDIR:-build}
limit=${WALKTHROUGH_TIMEOUT:-120}

passed=0 failed=0
tmp=$(mktemp -d) || exit 1
pgid=
cleanup() {
    [[ -n $pgid ]] && kill -KILL -- "-$pgid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
ok() { passed=$((passed + 1)); echo "ok - $*"; }
nok() { failed=$((failed + 1)); echo "not ok - $*"; }
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else nok "$what"; fi
}
finish() {
    echo
    echo "$passed passed, $failed failed"
    ((failed == 0))
    exit
}

for b in tls-echod tls-echo; do
    if [[ ! -x $builddir/$b ]]; then
        nok "$builddir/$b is built (run make first)"
        finish
    fi
done

# The fenced block, without the ``` lines.
awk '
    /^<!-- walkthrough -->$/ { on = 1; next }
    /^<!-- \/walkthrough -->$/ { on = 0 }
    on && !/^```/ { print }
' README.md >"$tmp/walkthrough.sh"
check "README.md has a walkthrough block" test -s "$tmp/walkthrough.sh"
check "the walkthrough uses gen-certs, the daemon and tls-echo" \
    grep -q 'scripts/gen-certs.sh.*--out' "$tmp/walkthrough.sh"
check "the walkthrough needs no root or systemd" \
    bash -c '! grep -Eq "(^|[^a-z])(sudo|systemctl|make install)" "$1"' _ "$tmp/walkthrough.sh"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null) ||
    port=$((20000 + RANDOM % 30000))
sed -e "s/8443/$port/g" -e "s|build/|$builddir/|g" "$tmp/walkthrough.sh" >"$tmp/run.sh"

# Its own session and process group, so that whatever it leaves behind
# (a daemon, if a step failed before "kill") can be killed by group.
mkdir -p "$tmp/tmp"
TMPDIR=$tmp/tmp setsid bash -e "$tmp/run.sh" >"$tmp/out" 2>&1 &
pgid=$!
waited=0
while kill -0 "$pgid" 2>/dev/null && ((waited < limit * 10)); do
    sleep 0.1
    waited=$((waited + 1))
done
if kill -0 "$pgid" 2>/dev/null; then
    nok "the walkthrough finished within $limit s"
    status=124
else
    ok "the walkthrough finished within $limit s"
    wait "$pgid"
    status=$?
fi
check "the walkthrough ran to the end (bash -e, exit status $status)" test "$status" -eq 0
out=$(cat "$tmp/out")
check "the message came back" grep -qx 'hello, mTLS' <<<"$out"
check "--info showed the version and the chain" \
    bash -c 'grep -q "^TLS version: TLSv1.3" <<<"$1" && grep -q "^  0 CN=localhost" <<<"$1"' _ "$out"
check "--info showed our certificate" grep -q '^our certificate: CN=alice' <<<"$out"
check "--expect-days said OK" grep -q '^TLS-ECHO OK - server certificate CN=localhost expires in ' <<<"$out"
check "the daemon logged the clean closes" grep -q 'CLOSE_REASON=client-closed' <<<"$out"
check "nothing of the walkthrough is left running" \
    bash -c '! pgrep -g "$1" >/dev/null' _ "$pgid"
check "the walkthrough removed its PKI" \
    test -z "$(find "$tmp/tmp" -mindepth 1 -print -quit)"
if ((status != 0)); then
    sed 's/^/#   /' "$tmp/out" | tail -30
fi
finish
