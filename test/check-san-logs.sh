#!/usr/bin/env bash
# The last suite of the sanitizer pass (make check-asan): fail if any
# ASan/UBSan/LSan report was written.
#
# The suites run with ASAN_OPTIONS and UBSAN_OPTIONS log_path=$SAN_LOG_DIR/san
# (set by the Makefile), so every report, from a test program or from a
# daemon the tests started (whose stderr only the harness reads), lands in a
# file $SAN_LOG_DIR/san.PID.  One check per run: passed if there is none;
# else each report file counts as a failure and its head is shown.  Run as
# root, one more: the workers' unprivileged user can write there.
set -uo pipefail

dir=${SAN_LOG_DIR:?SAN_LOG_DIR must be set (run through make check-asan)}
shopt -s nullglob

# Run as root, the daemons' workers run as tls-echod or nobody and write
# their own reports (an error found while serving): a directory that user
# cannot write would lose them, with "Can't open file" on the daemon's
# stderr at most.  (The Makefile makes it mode 1777.)
passed=0 failed=0
if ((EUID == 0)) && command -v setpriv >/dev/null 2>&1; then
    u=
    for u in tls-echod nobody; do
        getent passwd "$u" >/dev/null && break
    done
    if setpriv --reuid="$u" --regid="$(id -g "$u")" --clear-groups \
        test -w "$dir" -a -x "$dir"; then
        passed=$((passed + 1))
    else
        echo "sanitizers: $dir is not writable by $u, the workers' user:" \
            "their reports would be lost ($(stat -c '%A %U' "$dir"))"
        failed=$((failed + 1))
    fi
fi
reports=("$dir"/san.*)
if ((${#reports[@]} == 0)); then
    echo "sanitizers: no reports in $dir"
    echo "$((passed + 1)) passed, $failed failed"
    ((failed == 0))
    exit
fi
for f in "${reports[@]}"; do
    echo "--- sanitizer report $f:"
    grep -aE 'ERROR: |runtime error|SUMMARY:|^ +#[0-9]+ ' "$f" | head -25
done
echo "sanitizers: ${#reports[@]} report(s) in $dir"
echo "$passed passed, $((failed + ${#reports[@]})) failed"
exit 1
