#!/usr/bin/env bash
# check-install.sh - `make install` / `make uninstall` into a DESTDIR.
#
#   - make install DESTDIR=$tmp produces exactly the expected tree (daemon,
#     client, units, sysusers entry, man pages, example configuration) with
#     the expected modes, units and configuration rewritten for the paths;
#   - a second install keeps an edited configuration;
#   - make uninstall removes everything but the configuration directory;
#   - PREFIX=/usr moves binaries, units and man pages, and the unit follows.
#
# usage: test/check-install.sh    (from anywhere; builds what is missing)
# Make variables given to a parent `make check-run` (BUILDDIR, SAN, CI...)
# reach the inner make through MAKEFLAGS, so nothing is rebuilt with other
# flags.  Prints "ok - ..." / "not ok - ..." and ends with "N passed, N failed".
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
root=$PWD

passed=0 failed=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
ok() { passed=$((passed + 1)); echo "ok - $*"; }
nok() { failed=$((failed + 1)); echo "not ok - $*"; }
check() {
    local what=$1
    shift
    if "$@" >"$tmp/last.out" 2>&1; then
        ok "$what"
    else
        nok "$what"
        sed 's/^/#   /' "$tmp/last.out" | tail -20
    fi
}
mk() { make --no-print-directory -C "$root" "$@"; }
# tree DIR: every file and symlink below DIR with its mode, sorted.
tree() { (cd "$1" && find . \( -type f -o -type l \) -printf '%m %P\n' | sort); }

d=$tmp/dest
expected="644 etc/tls-echod/tls-echod.conf
644 usr/local/lib/systemd/system/tls-echod.service
644 usr/local/lib/systemd/system/tls-echod.socket
644 usr/local/lib/sysusers.d/tls-echod.conf
644 usr/local/share/man/man1/tls-echo.1
644 usr/local/share/man/man5/tls-echod.conf.5
644 usr/local/share/man/man8/tls-echod.8
755 usr/local/bin/tls-echo
755 usr/local/sbin/tls-echod"
expected=$(sort <<<"$expected")

check "make install DESTDIR=... succeeds" mk install DESTDIR="$d"
check "the installed tree is exactly the expected one, with these modes" \
    test "$(tree "$d")" = "$expected"
if [[ $(tree "$d") != "$expected" ]]; then
    diff <(echo "$expected") <(tree "$d") | sed 's/^/#   /'
fi
check "installed tls-echod -V runs" "$d/usr/local/sbin/tls-echod" -V
check "installed tls-echo -V runs" "$d/usr/local/bin/tls-echo" -V
check "the service runs the installed daemon" \
    grep -q '^ExecStart=/usr/local/sbin/tls-echod ' "$d/usr/local/lib/systemd/system/tls-echod.service"
check "the service reads /etc/tls-echod/tls-echod.conf" \
    grep -q '/etc/tls-echod/tls-echod.conf' "$d/usr/local/lib/systemd/system/tls-echod.service"
check "the sysusers entry creates the tls-echod user" \
    grep -qE '^u!? +tls-echod ' "$d/usr/local/lib/sysusers.d/tls-echod.conf"
check "the example configuration points at /etc/tls-echod/" \
    grep -q '"/etc/tls-echod/' "$d/etc/tls-echod/tls-echod.conf"
check "the example configuration has no \"../certs/ path left" \
    test "$(grep -c '"\.\./certs/' "$d/etc/tls-echod/tls-echod.conf")" = 0
if command -v groff >/dev/null 2>&1; then
    for page in man1/tls-echo.1 man5/tls-echod.conf.5 man8/tls-echod.8; do
        check "installed $page formats without warnings" \
            test -z "$(groff -mandoc -ww -z "$d/usr/local/share/man/$page" 2>&1)"
    done
fi

# An edited configuration survives a second install.
echo "# local edit $$" >>"$d/etc/tls-echod/tls-echod.conf"
edited=$(sha256sum <"$d/etc/tls-echod/tls-echod.conf")
mk install DESTDIR="$d" >"$tmp/install2.out" 2>&1
check "second install succeeds" test $? -eq 0
check "second install says it keeps the configuration" \
    grep -q "keeping existing" "$tmp/install2.out"
check "second install leaves the edited configuration alone" \
    test "$edited" = "$(sha256sum <"$d/etc/tls-echod/tls-echod.conf")"

check "make uninstall DESTDIR=... succeeds" mk uninstall DESTDIR="$d"
check "uninstall leaves only the configuration" \
    test "$(tree "$d")" = "644 etc/tls-echod/tls-echod.conf"
check "the configuration directory stays" test -d "$d/etc/tls-echod"

# Another prefix: everything moves, and the unit follows.
u=$tmp/usr
check "make install PREFIX=/usr succeeds" mk install PREFIX=/usr DESTDIR="$u"
check "PREFIX=/usr: binaries in usr/bin and usr/sbin" \
    test -x "$u/usr/bin/tls-echo" -a -x "$u/usr/sbin/tls-echod"
check "PREFIX=/usr: man page in usr/share/man/man1" test -f "$u/usr/share/man/man1/tls-echo.1"
check "PREFIX=/usr: the unit runs /usr/sbin/tls-echod" \
    grep -q '^ExecStart=/usr/sbin/tls-echod ' "$u/usr/lib/systemd/system/tls-echod.service"
check "PREFIX=/usr: uninstall" mk uninstall PREFIX=/usr DESTDIR="$u"
check "PREFIX=/usr: only the configuration is left" \
    test "$(tree "$u")" = "644 etc/tls-echod/tls-echod.conf"

echo
echo "$passed passed, $failed failed"
((failed == 0))
