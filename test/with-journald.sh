#!/bin/bash
# with-journald.sh CMD [ARG...] - run CMD next to a private systemd-journald.
#
# Run it inside a private mount namespace, never on the host's:
#
#   unshare -m --propagation private test/with-journald.sh CMD...   (root)
#   unshare -rm test/with-journald.sh CMD...                        (non-root)
#
# Fresh tmpfs mounts hide the host's /run/systemd, /run/log and
# /var/log/journal, so the journald started here, sd_journal_send() from CMD
# and journalctl all see only this namespace's volatile journal; the host's
# journal, /run and kmsg are left alone (ReadKMsg=no, console logging).  The
# journald exits with the script.  Exit status: CMD's, or 1 if the set-up
# failed.  JOURNALD_LOG=FILE appends journald's own messages to FILE.
# NOTIFY_SOCKET is passed to CMD only, never to journald.
#
# How the journald tests use it: docs/TESTING.md.
set -eu

prog=${0##*/}
die() {
    printf '%s: %s\n' "$prog" "$*" >&2
    exit 1
}

[ $# -gt 0 ] || die "usage: unshare -m --propagation private $prog CMD [ARG...]"

# Refuse to mount anything in the caller's mount namespace: under
# `unshare -m` our parent (who ran unshare) is in another one.  Fail closed
# when either cannot be read (/proc/1 is no reference: in a container it may
# be unreadable, or be ours).
self_ns=$(readlink /proc/self/ns/mnt 2>/dev/null || true)
parent_ns=$(readlink "/proc/$PPID/ns/mnt" 2>/dev/null || true)
if [ -z "$self_ns" ] || [ -z "$parent_ns" ] || [ "$self_ns" = "$parent_ns" ]; then
    die "not in a private mount namespace of our own: run me under unshare -m"
fi

journald=/lib/systemd/systemd-journald
[ -x "$journald" ] || journald=/usr/lib/systemd/systemd-journald
[ -x "$journald" ] || die "systemd-journald not found"

for d in /run/systemd /run/log /var/log/journal; do
    [ -d "$d" ] || die "$d does not exist; will not create it on the host"
    mount -t tmpfs -o mode=0755 tmpfs "$d"
done
mkdir -p /run/systemd/journal
printf '[Journal]\nStorage=volatile\nReadKMsg=no\nRateLimitBurst=0\nForwardToSyslog=no\nForwardToKMsg=no\nForwardToWall=no\nForwardToConsole=no\n' \
    >/run/systemd/journald.conf
if [ -e /etc/systemd/journald.conf ]; then
    mount --bind /run/systemd/journald.conf /etc/systemd/journald.conf
fi
# The host's drop-ins would override ours: hide them, or add ours last.
if [ -d /etc/systemd/journald.conf.d ]; then
    mount -t tmpfs -o mode=0755 tmpfs /etc/systemd/journald.conf.d
fi
mkdir -p /run/systemd/journald.conf.d
cp /run/systemd/journald.conf /run/systemd/journald.conf.d/zz-with-journald.conf

# NOTIFY_SOCKET and WATCHDOG_* are for CMD: journald would answer READY=1.
env -u NOTIFY_SOCKET -u WATCHDOG_USEC -u WATCHDOG_PID SYSTEMD_LOG_TARGET=console \
    "$journald" 2>>"${JOURNALD_LOG:-/dev/null}" &
jpid=$!
trap 'kill -TERM "$jpid" 2>/dev/null; wait "$jpid" 2>/dev/null || true' EXIT
trap 'exit 143' TERM INT HUP
for _ in $(seq 200); do
    [ -S /run/systemd/journal/socket ] && break
    kill -0 "$jpid" 2>/dev/null || die "systemd-journald exited at start"
    sleep 0.025
done
[ -S /run/systemd/journal/socket ] || die "journald did not come up within 5 s"

rc=0
"$@" || rc=$?
exit "$rc"
