#!/usr/bin/env bash
# check-systemd.sh - drive tls-echod under a real systemd, like an operator.
#
# Boots Debian 12 under systemd-nspawn (systemd is PID 1 of the container,
# never of the host), installs tls-echod into the container root with
# `make install DESTDIR=...`, then: systemctl start / status, an mTLS echo,
# workers' user (the default one: the config sets none) and seccomp filter,
# a refused client in the journal, reload (good, broken, bypassed with kill
# -HUP), the structured journal record, stop, watchdog (+ Restart=on-failure)
# and socket activation.
#
# usage: test/check-systemd.sh            (`make check-systemd`; needs root)
# env:   BUILDDIR       build tree (default build); the Debian root is cached
#                       in $BUILDDIR/nspawn/rootfs (delete it to rebuild)
#        MAKE           make program (default make)
#        DEBIAN_MIRROR  default: the first .../debian URI of the apt sources
#        CHECK_SYSTEMD_REQUIRE=1  a skip (not root, no nspawn...) fails
# Prints "ok N - ..." / "not ok N - ..." per check and ends with
# "N passed, N failed".  Exit 0 all passed, 1 failure, 77 skipped.
set -euo pipefail

T0=$(date +%s%N)
ms() { echo $((($(date +%s%N) - T0) / 1000000)); }
ts() { echo "# [$(ms) ms] $*"; }

cd "$(dirname "$0")/.."
REPO=$PWD
BUILDDIR=${BUILDDIR:-build}
MAKE=${MAKE:-make}
case $BUILDDIR in /*) BD=$BUILDDIR ;; *) BD=$REPO/$BUILDDIR ;; esac
W=$BD/nspawn
ROOT=$W/rootfs
SUITE=bookworm
PKGS=systemd,systemd-sysv,dbus,procps,libssl3,openssl,libconfig9,libsystemd0,libseccomp2
STAMP="debootstrap --variant=minbase --include=$PKGS $SUITE"
UNIT=tls-echod.service
CONF=/etc/tls-echod/tls-echod.conf
ID_CLOSED=5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c06
ID_REFUSED=5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c07
CT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

NSPAWN='' L='' done_summary=0
n=0 passed=0 failed=0
declare -A T=()   # phase timings, ms

skip() {
    done_summary=1
    echo "SKIP: $*" >&2
    echo "1..0 # SKIP $*"
    if [[ ${CHECK_SYSTEMD_REQUIRE:-0} == 1 ]]; then
        exit 1
    fi
    exit 77
}
diag() { sed 's/^/#   /'; }
ok() {
    n=$((n + 1)) passed=$((passed + 1))
    echo "ok $n - $1"
}
notok() {
    n=$((n + 1)) failed=$((failed + 1))
    echo "not ok $n - $1"
}
# check DESCRIPTION CMD...: one TAP line from CMD's status (CMD runs with
# errexit off, so check functions chain their steps with && or return).
# LAST is 0 if it passed.  Always returns 0 (errexit).
LAST=0
check() {
    local d=$1
    shift
    if "$@"; then
        LAST=0
        ok "$d"
    else
        LAST=1
        notok "$d"
    fi
}

summary() {
    [[ $done_summary == 0 ]] || return 0
    done_summary=1
    local k line=
    for k in apt rootfs install boot tests poweroff; do
        [[ -z ${T[$k]:-} ]] || line+=" $k=${T[$k]}ms"
    done
    echo "# timings:${line} total=$(ms)ms"
    echo "1..$n"
    echo "$passed passed, $failed failed"
}

poweroff() {
    [[ -n $NSPAWN ]] || return 0
    local t i st=
    t=$(ms)
    if kill -TERM "$NSPAWN" 2>/dev/null; then
        # Bounded: SIGKILL nspawn if the container is not down in 20 s.  (No
        # background timer: it would hold our stdout open after we exit.)
        for ((i = 0; i < 200; i++)); do
            st=$(awk '{ print $3 }' "/proc/$NSPAWN/stat" 2>/dev/null || true)
            [[ -n $st && $st != Z ]] || break
            sleep 0.1
        done
        if [[ -n $st && $st != Z ]]; then
            echo "# container not down after 20 s: SIGKILL to systemd-nspawn"
            kill -KILL "$NSPAWN" 2>/dev/null || true
        fi
        wait "$NSPAWN" 2>/dev/null || true
    fi
    NSPAWN=
    T[poweroff]=$(($(ms) - t))
    ts "container powered off"
}

on_exit() {
    local rc=$?
    trap - EXIT
    poweroff
    if [[ $done_summary == 0 && $n -gt 0 ]]; then
        if [[ $rc != 0 && $rc != 77 ]]; then
            notok "test script ran to its end (aborted with status $rc)"
        fi
        summary
        ((failed == 0)) || rc=1
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- setup ---

((EUID == 0)) || skip "needs root (systemd-nspawn, debootstrap, nsenter)"
[[ -r /proc/self/ns/pid && -d /sys/fs/cgroup ]] ||
    skip "no namespaces or cgroups here: systemd-nspawn cannot work"
command -v python3 >/dev/null 2>&1 || command -v jq >/dev/null 2>&1 ||
    skip "needs python3 or jq on the host to read the journal's JSON"
# systemd-nspawn makes / a slave mount in its namespace first, which fails
# where / is no mount point ("Failed to mount n/a ... on / (MS_REC|MS_SLAVE)"):
# a debootstrap root entered with chroot.  Say so before apt and debootstrap.
if command -v mountpoint >/dev/null 2>&1 && ! mountpoint -q /; then
    skip "/ is not a mount point (a chroot?): systemd-nspawn cannot set up its mount namespace here"
fi

mkdir -p "$W"

t=$(ms)
need=()
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
if [[ ! -f $W/rootfs.stamp || $(cat "$W/rootfs.stamp") != "$STAMP" ]] &&
    ! command -v debootstrap >/dev/null 2>&1 && [[ ! -x /usr/sbin/debootstrap ]]; then
    need+=(debootstrap)
fi
if ((${#need[@]} > 0)); then
    ts "installing ${need[*]}"
    apt_install() {
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get -o DPkg::Lock::Timeout=600 \
            install -y -q --no-install-recommends "${need[@]}" >"$W/apt.log" 2>&1
    }
    if ! apt_install; then
        timeout 600 apt-get -o DPkg::Lock::Timeout=600 update -q >>"$W/apt.log" 2>&1 || true
        apt_install || { tail -5 "$W/apt.log" >&2; skip "cannot install ${need[*]} (see $W/apt.log)"; }
    fi
fi
T[apt]=$(($(ms) - t))

t=$(ms)
if [[ -f $W/rootfs.stamp && $(cat "$W/rootfs.stamp") == "$STAMP" && -x $ROOT/lib/systemd/systemd ]]; then
    ts "reusing $ROOT"
else
    mirror=${DEBIAN_MIRROR:-}
    if [[ -z $mirror ]]; then
        mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' \
            /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    fi
    if [[ -z $mirror ]]; then
        mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*\/debian\/?$/) { print $i; exit } }' \
            /etc/apt/sources.list 2>/dev/null || true)
    fi
    [[ -n $mirror ]] || skip "no Debian mirror in /etc/apt/sources.list{,.d/*.sources} (set DEBIAN_MIRROR)"
    ts "debootstrap $SUITE from $mirror into $ROOT"
    rm -rf "$W/rootfs.stamp" "$W/rootfs.new" "$ROOT"
    if ! timeout 1800 debootstrap --variant=minbase --include="$PKGS" "$SUITE" \
        "$W/rootfs.new" "$mirror" >"$W/debootstrap.log" 2>&1; then
        tail -5 "$W/debootstrap.log" >&2
        rm -rf "$W/rootfs.new"
        skip "debootstrap failed (network to $mirror?), see $W/debootstrap.log"
    fi
    mv "$W/rootfs.new" "$ROOT"
    echo "$STAMP" >"$W/rootfs.stamp"
fi
T[rootfs]=$(($(ms) - t))
ts "root filesystem ready ($(du -sh "$ROOT" 2>/dev/null | cut -f1))"

# --- install, exactly as an operator would (fresh every run) ---
t=$(ms)
rm -rf "$ROOT/etc/tls-echod" "$ROOT/etc/systemd/system/tls-echod.service.d" \
    "$ROOT/etc/systemd/system/tls-echod.socket.d"
# A volatile journal: no stale records from earlier runs in the cached root.
mkdir -p "$ROOT/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRateLimitBurst=0\n' \
    >"$ROOT/etc/systemd/journald.conf.d/tls-echod-test.conf"

t_install() {
    "$MAKE" -C "$REPO" --no-print-directory install DESTDIR="$ROOT" \
        BUILDDIR="$BUILDDIR" >"$W/install.log" 2>&1 ||
        { diag <"$W/install.log"; return 1; }
    local f
    for f in usr/local/sbin/tls-echod usr/local/lib/systemd/system/tls-echod.service \
        usr/local/lib/systemd/system/tls-echod.socket usr/local/lib/sysusers.d/tls-echod.conf \
        etc/tls-echod/tls-echod.conf; do
        [[ -f $ROOT/$f ]] || { echo "missing /$f" | diag; return 1; }
    done
    cmp -s "$BD/tls-echod" "$ROOT/usr/local/sbin/tls-echod" &&
        grep -q '^ExecStart=/usr/local/sbin/tls-echod -c /etc/tls-echod/tls-echod.conf$' \
            "$ROOT/usr/local/lib/systemd/system/tls-echod.service" &&
        grep -q '"/etc/tls-echod/server.crt"' "$ROOT$CONF"
}
check "make install DESTDIR=<container root> installs binary, units, sysusers.d and config" t_install

t_pki() {
    "$REPO/scripts/gen-certs.sh" --dir "$ROOT/etc/tls-echod" --force >"$W/gen-certs.log" 2>&1 ||
        { diag <"$W/gen-certs.log"; return 1; }
    local f
    for f in ca.crt server.crt server.key client.crt client.key; do
        [[ -s $ROOT/etc/tls-echod/$f ]] || { echo "missing $f" | diag; return 1; }
    done
}
check "scripts/gen-certs.sh --dir <root>/etc/tls-echod --force writes the PKI" t_pki

# The operator's edit: 2 workers.  No `user`: started as root, the workers
# run as the sysusers user by default (that they do is checked below).
t_conf() {
    sed -i -E -e 's|^workers = [0-9]+;|workers = 2;|' "$ROOT$CONF" &&
        grep -qx 'workers = 2;' "$ROOT$CONF" &&
        ! grep -qE '^[[:space:]]*(user|group)[[:space:]]*=' "$ROOT$CONF" &&
        cp "$ROOT$CONF" "$W/conf.gen1"
}
check "installed config edited: workers = 2; no user or group set" t_conf
T[install]=$(($(ms) - t))

# ----------------------------------------------------------------- boot ---

t=$(ms)
systemd-nspawn --register=no --keep-unit -q -b -D "$ROOT" -M tls-echod-test \
    --private-network --console=pipe </dev/null >"$W/nspawn.log" 2>&1 &
NSPAWN=$!
state=
for _ in $(seq 300); do # 30 s
    if ! kill -0 "$NSPAWN" 2>/dev/null; then
        break
    fi
    [[ -n $L ]] || L=$(pgrep -P "$NSPAWN" -x systemd || true)
    if [[ -n $L ]]; then
        state=$(timeout 5 nsenter -t "$L" -a systemctl is-system-running 2>/dev/null || true)
        case $state in running | degraded) break ;; esac
    fi
    sleep 0.1
done
case $state in
    running | degraded) ;;
    *)
        tail -20 "$W/nspawn.log" >&2 || true
        skip "the container did not boot (leader '${L}', state '${state}'); systemd-nspawn cannot work here? see $W/nspawn.log"
        ;;
esac
T[boot]=$(($(ms) - t))
ts "container booted: leader pid $L, state $state"

# in_ct [-t SECONDS] CMD...: run CMD inside the container, clean environment.
in_ct() {
    local to=30
    if [[ $1 == -t ]]; then
        to=$2
        shift 2
    fi
    timeout -k 5 "$to" nsenter -t "$L" -a env -i PATH="$CT_PATH" LANG=C.UTF-8 \
        SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}
if [[ $state == degraded ]]; then
    in_ct systemctl --failed --no-legend 2>&1 | diag || true
fi

t=$(ms)

# prop UNIT PROPERTY: its value.
prop() { in_ct systemctl show -p "$2" --value "$1"; }
mainpid() { prop "$UNIT" MainPID; }
# wait_prop UNIT PROPERTY REGEX [TENTHS]: poll until the value matches.
wait_prop() {
    local v i
    for ((i = 0; i < ${4:-50}; i++)); do
        v=$(prop "$1" "$2" 2>/dev/null || true)
        [[ $v =~ $3 ]] && return 0
        sleep 0.1
    done
    echo "$1 $2='$v', wanted /$3/" | diag
    return 1
}
state_is() { # UNIT ACTIVE SUB
    local a s
    a=$(prop "$1" ActiveState) && s=$(prop "$1" SubState) || return 1
    [[ $a == "$2" && $s == "$3" ]] && return 0
    echo "$1: $a/$s, wanted $2/$3" | diag
    return 1
}

# The client, run inside the container: send one line, print what comes back
# up to the echoed line (a banner first, if any), then close stdin so that
# s_client (-no_ign_eof) sends close_notify and exits: no fixed sleeps.
# shellcheck disable=SC2016 # expanded by the bash inside the container
ECHO_CLIENT='
trap "" PIPE
line=$1 mode=$2
args=(-connect 127.0.0.1:8443 -CAfile /etc/tls-echod/ca.crt -verify_return_error -quiet -no_ign_eof)
[[ $mode == cert ]] && args+=(-cert /etc/tls-echod/client.crt -key /etc/tls-echod/client.key)
coproc S { exec timeout 10 openssl s_client "${args[@]}" 2>/dev/null; }
in=${S[1]} out=${S[0]} pid=$S_PID
printf "%s\n" "$line" >&"$in"
while IFS= read -r -t 5 l <&"$out"; do
    printf "%s\n" "$l"
    [[ $l == "$line" ]] && break
done
exec {in}>&-
wait "$pid"
exit 0
'
# tls_echo LINE [cert|nocert]: the lines received.
tls_echo() { in_ct -t 20 bash -c "$ECHO_CLIENT" tls-echo-client "$1" "${2:-cert}"; }
# echo_ok LINE [EXPECTED_OUTPUT]
echo_ok() {
    local got want=${2:-$1}
    got=$(tls_echo "$1") || true
    [[ $got == "$want" ]] && return 0
    printf 'echo: sent %q, got %q, wanted %q\n' "$1" "$got" "$want" | diag
    return 1
}

# journal_has [journalctl MATCHES...] -- CONDITION...: a JSON record of this
# boot's journal (default match: -u tls-echod.service) meets every CONDITION
# (KEY=VALUE exact, KEY~REGEX, KEY present).  Polled 3 s (logging is async).
JSON_MATCH='
import json, re, sys
conds = []
for c in sys.argv[1:]:
    m = re.match(r"^([A-Za-z0-9_]+)([=~])(.*)$", c, re.S)
    conds.append((m.group(1), m.group(2), m.group(3)) if m else (c, "", ""))
for raw in sys.stdin:
    try:
        r = json.loads(raw)
    except ValueError:
        continue
    def hit(k, op, v):
        x = r.get(k)
        if op == "":
            return x is not None
        if not isinstance(x, str):
            return False
        return x == v if op == "=" else re.search(v, x) is not None
    if all(hit(*c) for c in conds):
        keep = [k for k in sorted(r) if not k.startswith("_") or k in ("_SYSTEMD_UNIT", "_PID", "_UID")]
        print(" ".join("%s=%s" % (k, r[k]) for k in keep if k not in ("MESSAGE", "SYSLOG_IDENTIFIER", "PRIORITY", "CODE_FILE", "CODE_LINE", "CODE_FUNC")))
        print("MESSAGE=%s" % r.get("MESSAGE"))
        sys.exit(0)
sys.exit(1)
'
journal_has() {
    local jargs=() i out tries=${JTRIES:-15}
    while [[ $1 != -- ]]; do
        jargs+=("$1")
        shift
    done
    shift
    ((${#jargs[@]} > 0)) || jargs=(-u "$UNIT")
    for ((i = 0; i < tries; i++)); do
        in_ct journalctl --sync >/dev/null 2>&1 || true
        if out=$(in_ct journalctl -b -o json --no-pager "${jargs[@]}" |
            python3 -c "$JSON_MATCH" "$@"); then
            diag <<<"$out"
            return 0
        fi
        sleep 0.2
    done
    echo "no journal record with: $*" | diag
    return 1
}

# workers_of PID: "user comm" of its children.
workers_of() { in_ct ps -o user:32=,comm= --ppid "$1" || true; }
# wait_workers PID COUNT: exactly COUNT children, all tls-echod processes of
# user tls-echod (polled: a worker drops privileges after the fork).
wait_workers() {
    local i out
    for ((i = 0; i < 50; i++)); do
        out=$(workers_of "$1")
        if [[ $(grep -c . <<<"$out") == "$2" ]] &&
            ! grep -qv '^tls-echod \+tls-echod$' <<<"$out"; then
            return 0
        fi
        sleep 0.1
    done
    { echo "children of $1 (wanted $2 x 'tls-echod tls-echod'):"; echo "$out"; } | diag
    return 1
}

edit_conf() { # SED-EXPR: edit the installed config in place (the operator's editor)
    sed -i -E "$1" "$ROOT$CONF"
}

# ------------------------------------------------------------ the tests ---

t_verify() {
    local out
    out=$(in_ct systemd-analyze verify --man=no /usr/local/lib/systemd/system/tls-echod.service \
        /usr/local/lib/systemd/system/tls-echod.socket 2>&1) || { diag <<<"$out"; return 1; }
    [[ -z $out ]] || { diag <<<"$out"; return 1; }
}
check "systemd-analyze verify (in the container) is silent on both units" t_verify
in_ct systemd-analyze security --no-pager "$UNIT" 2>/dev/null | tail -1 | diag || true

t_user() {
    if in_ct getent passwd tls-echod >/dev/null; then
        echo "user tls-echod existed at boot (systemd-sysusers.service)" | diag
    else
        echo "user tls-echod absent at boot: running systemd-sysusers" | diag
        in_ct systemd-sysusers 2>&1 | diag
    fi
    in_ct getent passwd tls-echod | diag
    in_ct getent passwd tls-echod >/dev/null
}
check "sysusers.d file gives user tls-echod" t_user

t_check() {
    local out rc=0
    out=$(in_ct tls-echod -t 2>&1) || rc=$?
    diag <<<"$out"
    ((rc == 0)) &&
        grep -qE '^workers run as user tls-echod \(uid [0-9]+\), group tls-echod \(gid [0-9]+\): the default, no user set$' <<<"$out" &&
        ! grep -q 'workers run as root' <<<"$out"
}
check "tls-echod -t accepts the installed configuration: workers as tls-echod by default" t_check

in_ct systemctl daemon-reload
t_start() { in_ct -t 60 systemctl start "$UNIT" 2>&1 | diag && [[ ${PIPESTATUS[0]} == 0 ]]; }
check "systemctl start tls-echod: rc 0" t_start
if ((LAST != 0)); then
    in_ct systemctl status --no-pager -l "$UNIT" 2>&1 | diag || true
fi

t_running() {
    state_is "$UNIT" active running &&
        wait_prop "$UNIT" StatusText '^generation 1: [0-9]+ connection\(s\), 1 listener\(s\), 2 worker\(s\)( \(\+[0-9]+ draining\))?(; nearest expiry: .*)?$' &&
        prop "$UNIT" StatusText | diag
}
check "active/running, StatusText \"generation 1: ...\"" t_running
PID1=$(mainpid)

check "mTLS echo inside the container (openssl s_client, client cert)" echo_ok ping

t_users() {
    local u
    u=$(in_ct ps -o user= -p "$PID1" | tr -d ' ')
    [[ $u == root ]] || { echo "master $PID1 runs as '$u'" | diag; return 1; }
    wait_workers "$PID1" 2
}
check "master runs as root, its 2 workers as tls-echod" t_users
check "journal: \"workers run as user tls-echod ...: the default, no user set\"" \
    journal_has -- MESSAGE~'^workers run as user tls-echod \(uid [0-9]+\), group tls-echod \(gid [0-9]+\): the default, no user set$'

# Two seccomp layers: the unit's filter on every process, and each worker's
# own on top (it loads it after the privilege drop; seccomp(2) must be in
# the unit's SystemCallFilter=).  Seccomp_filters counts them (Linux 5.9+).
t_seccomp() {
    local m w fm fw
    m=$(in_ct sed -n 's/^Seccomp_filters:[[:space:]]*//p' "/proc/$PID1/status")
    [[ -n $m ]] || { echo "no Seccomp_filters line: kernel before 5.9?" | diag; return 0; }
    for w in $(in_ct ps -o pid= --ppid "$PID1"); do
        fm=$m
        fw=$(in_ct sed -n 's/^Seccomp_filters:[[:space:]]*//p' "/proc/$w/status")
        echo "master $PID1: $fm filter(s); worker $w: $fw" | diag
        [[ $fw == $((fm + 1)) ]] || return 1
    done
}
check "each worker has its own seccomp filter on top of the unit's" t_seccomp

# The master signals its (unprivileged) workers: SIGUSR1 makes each log status.
t_usr1() {
    in_ct kill -USR1 "$PID1" &&
        journal_has -- MESSAGE_ID=5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c0b MESSAGE~'^status: worker 0 \(generation 1\)' &&
        journal_has -- MESSAGE_ID=5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c0b MESSAGE~'^status: worker 1 \(generation 1\)'
}
check "kill -USR1 master: both workers log their status (master can signal them)" t_usr1

t_refused() {
    local got
    got=$(tls_echo ping nocert) || true
    [[ -z $got ]] || { echo "a client without certificate got: $got" | diag; return 1; }
    journal_has -- MESSAGE_ID="$ID_REFUSED" CLOSE_REASON=no-client-cert \
        _SYSTEMD_UNIT="$UNIT" LISTENER=echo PEER_ADDR
}
check "client without certificate refused; journal CLOSE_REASON=no-client-cert" t_refused

# --- reload: a good edit ---
edit_conf 's|^workers = 2;|workers = 3;|'
edit_conf 's|^([[:space:]]*)# banner = .*$|\1banner = "hello from generation 2\\n";|'
cp "$ROOT$CONF" "$W/conf.gen2"
t_reload() {
    grep -q 'banner = "hello from generation 2\\n";' "$ROOT$CONF" || { echo "edit failed" | diag; return 1; }
    in_ct systemctl reload "$UNIT" 2>&1 | diag && [[ ${PIPESTATUS[0]} == 0 ]] &&
        wait_prop "$UNIT" StatusText '^generation 2: [0-9]+ connection\(s\), 1 listener\(s\), 3 worker\(s\)( \(\+[0-9]+ draining\))?(; nearest expiry: .*)?$' &&
        state_is "$UNIT" active running &&
        [[ $(mainpid) == "$PID1" ]]
}
check "edit (workers 3, banner) + systemctl reload: rc 0, StatusText generation 2, same MainPID" t_reload
check "after reload: banner then echo" echo_ok ping $'hello from generation 2\nping'
check "after reload: 3 workers, all tls-echod (generation 1 drained)" wait_workers "$PID1" 3
t_reloaded_log() {
    journal_has -- MESSAGE~'^reloaded: generation 2 serving \(listener sockets: 1 kept'
}
check "journal: \"reloaded: generation 2 serving (listener sockets: 1 kept ...\"" t_reloaded_log

# --- reload: a broken edit, stopped by ExecReload's `tls-echod -t` ---
echo 'garbage {' >>"$ROOT$CONF"
BAD_LINE=$(wc -l <"$ROOT$CONF")
t_badreload() {
    local out rc
    out=$(in_ct systemctl reload "$UNIT" 2>&1) && rc=0 || rc=$?
    diag <<<"rc=$rc: $out"
    ((rc != 0)) &&
        state_is "$UNIT" active running &&
        [[ $(mainpid) == "$PID1" ]] &&
        wait_prop "$UNIT" StatusText '^generation 2: '
}
check "broken edit + systemctl reload: rc != 0, still active/running on generation 2" t_badreload
t_badreload_log() {
    # tls-echod -t prints the problem to stderr: the unit's journal has it.
    journal_has -- MESSAGE~"tls-echod\\.conf:[0-9]+: "
}
check "journal: ExecReload's tls-echod -t names file:line" t_badreload_log
check "echo still works after the refused reload" echo_ok ping $'hello from generation 2\nping'

# --- the daemon's own failed-reload path: SIGHUP straight to the master ---
t_hup() {
    in_ct kill -HUP "$PID1" &&
        wait_prop "$UNIT" StatusText '^reload failed, still serving generation 2: .*tls-echod\.conf:[0-9]+: ' &&
        prop "$UNIT" StatusText | diag &&
        state_is "$UNIT" active running &&
        [[ $(mainpid) == "$PID1" ]]
}
check "kill -HUP MainPID with the broken file: StatusText \"reload failed, still serving generation 2: ...\"" t_hup
t_hup_log() {
    journal_has -- MESSAGE_ID=5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c0a _SYSTEMD_UNIT="$UNIT" \
        MESSAGE~"^reload failed, still serving generation 2: /etc/tls-echod/tls-echod\\.conf:[0-9]+: " &&
        echo "the broken line is $BAD_LINE" | diag
}
check "journal: \"reload failed, still serving generation 2: /etc/tls-echod/tls-echod.conf:N: ...\"" t_hup_log
check "echo still works after the failed SIGHUP reload" echo_ok ping $'hello from generation 2\nping'

# --- restore ---
cp "$W/conf.gen2" "$ROOT$CONF"
t_restore() {
    in_ct systemctl reload "$UNIT" 2>&1 | diag && [[ ${PIPESTATUS[0]} == 0 ]] &&
        wait_prop "$UNIT" StatusText '^generation 3: [0-9]+ connection\(s\), 1 listener\(s\), 3 worker\(s\)( \(\+[0-9]+ draining\))?(; nearest expiry: .*)?$' &&
        echo_ok ping $'hello from generation 2\nping'
}
check "config restored + reload: generation 3, no \"last reload failed\", echo works" t_restore

# --- the structured record of a closed connection ---
t_closed() {
    journal_has -- MESSAGE_ID="$ID_CLOSED" _SYSTEMD_UNIT="$UNIT" LISTENER=echo \
        PEER_ADDR~'^127\.0\.0\.1:[0-9]+$' CLIENT_SUBJECT~'tls-echod dev client' \
        TLS_VERSION~'^TLSv1\.[23]$' TLS_CIPHER BYTES_IN=5 BYTES_OUT~'^[0-9]+$' \
        DURATION_MS~'^[0-9]+$' CLOSE_REASON=client-closed
}
check "journalctl -o json: connection-closed record ($ID_CLOSED) with all fields" t_closed

# --- stop ---
t_stop() {
    local t1 el
    t1=$(ms)
    in_ct -t 60 systemctl stop "$UNIT" 2>&1 | diag && [[ ${PIPESTATUS[0]} == 0 ]] || return 1
    el=$(($(ms) - t1))
    echo "stop took $el ms" | diag
    [[ $(prop "$UNIT" Result) == success ]] &&
        state_is "$UNIT" inactive dead &&
        ! in_ct pgrep -a -x tls-echod &&
        ((el < 10000))
}
check "systemctl stop: rc 0 in < 10 s, Result=success, no tls-echod process left" t_stop
# By SYSLOG_IDENTIFIER, not -u: a worker exits right after this record and
# journald then often cannot tell its cgroup, so the record has no
# _SYSTEMD_UNIT and `journalctl -u` misses it (journald race, not tls-echod's).
t_stop_workers() {
    local i nounit
    for i in 0 1 2; do
        journal_has -t tls-echod -- MESSAGE~"^worker $i \\(generation 3\\) stopping \\(shutdown\\)" || return 1
    done
    nounit=$(in_ct journalctl -b -o json --no-pager -t tls-echod MESSAGE_ID=5b1c4a0e6f2d4b8a9c3e1f7a2d6b4c05 |
        python3 -c 'import json, sys; print(sum("_SYSTEMD_UNIT" not in json.loads(l) for l in sys.stdin))')
    echo "note: $nounit worker record(s) without _SYSTEMD_UNIT (invisible to journalctl -u)" | diag
}
check "journal (-t tls-echod): all 3 workers got the master's SIGTERM (\"stopping (shutdown)\")" t_stop_workers

# --- watchdog (WatchdogSec=3s drop-in; the unit's 30 s is too slow here) ---
mkdir -p "$ROOT/etc/systemd/system/tls-echod.service.d"
printf '[Service]\nWatchdogSec=3s\nLimitCORE=0\n' >"$ROOT/etc/systemd/system/tls-echod.service.d/test.conf"
in_ct systemctl daemon-reload
t_watchdog() {
    local p t1
    in_ct -t 60 systemctl start "$UNIT" && p=$(mainpid) && [[ $p != 0 ]] || return 1
    in_ct kill -STOP "$p" || return 1
    t1=$(ms)
    wait_prop "$UNIT" Result '^watchdog$' 100 || return 1
    echo "Result=watchdog $(($(ms) - t1)) ms after SIGSTOP" | diag
    # Restart=on-failure (RestartSec=2) brings it back.
    wait_prop "$UNIT" NRestarts '^[1-9]' 100 &&
        wait_prop "$UNIT" SubState '^running$' 50 &&
        [[ $(mainpid) != "$p" ]] &&
        echo_ok ping $'hello from generation 2\nping'
}
check "watchdog: SIGSTOP on the master -> Result=watchdog, then Restart=on-failure serves again" t_watchdog
in_ct -t 60 systemctl stop "$UNIT" >/dev/null 2>&1 || true
rm -rf "$ROOT/etc/systemd/system/tls-echod.service.d"
in_ct systemctl daemon-reload
in_ct systemctl reset-failed "$UNIT" >/dev/null 2>&1 || true

# --- socket activation ---
t_sock_start() {
    in_ct systemctl start tls-echod.socket &&
        state_is tls-echod.socket active listening &&
        state_is "$UNIT" inactive dead
}
check "systemctl start tls-echod.socket: listening, service not started" t_sock_start
t_sock_echo() {
    local p
    echo_ok ping $'hello from generation 2\nping' &&
        state_is "$UNIT" active running &&
        wait_prop "$UNIT" StatusText '^generation 1: ' &&
        p=$(mainpid) &&
        in_ct cat "/proc/$p/environ" | tr '\0' '\n' | grep -x 'LISTEN_FDNAMES=echo' | diag &&
        in_ct readlink "/proc/$p/fd/3" | grep '^socket:' | diag &&
        ! JTRIES=1 journal_has -- MESSAGE~'matches no listener' >/dev/null
}
check "first connection activates the service; it serves the passed fd (FileDescriptorName=echo)" t_sock_echo
t_sock_reload() {
    in_ct systemctl reload "$UNIT" &&
        wait_prop "$UNIT" StatusText '^generation 2: ' &&
        echo_ok ping $'hello from generation 2\nping'
}
check "socket-activated: reload keeps the passed socket, echo works" t_sock_reload
t_sock_restart() {
    in_ct -t 60 systemctl stop "$UNIT" 2>/dev/null &&
        state_is tls-echod.socket active listening &&
        echo_ok ping $'hello from generation 2\nping' &&
        state_is "$UNIT" active running
}
check "service stopped, socket still listening: next connection starts it again" t_sock_restart
t_sock_stop() {
    in_ct -t 60 systemctl stop tls-echod.socket "$UNIT" &&
        [[ $(prop "$UNIT" Result) == success ]] &&
        state_is "$UNIT" inactive dead &&
        ! in_ct pgrep -a -x tls-echod
}
check "systemctl stop socket + service: Result=success, nothing left" t_sock_stop

if ((failed > 0)); then
    echo "# journal of tls-echod.service (last 60 lines):"
    in_ct journalctl -b -u "$UNIT" --no-pager -n 60 2>&1 | diag || true
fi
T[tests]=$(($(ms) - t))

poweroff
summary
((failed == 0))
