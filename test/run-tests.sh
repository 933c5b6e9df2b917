#!/usr/bin/env bash
# Run test suites, show their output, and sum up.
#
# usage: test/run-tests.sh PROGRAM...
# Each program is a Check suite runner (CK_VERBOSITY=normal prints its
# "NN%: Checks: N, Failures: F, Errors: E" line) or a script ending with a
# plain "N passed, N failed" line; exit status 77 means skipped.  Ends with "N passed, N failed" and fails if anything failed.
set -uo pipefail

passed=0 failed=0 skipped=0 bad=() skips=()
for bin in "$@"; do
    name=${bin##*/}
    echo "=== $name"
    out=$(CK_VERBOSITY=${CK_VERBOSITY:-normal} CK_DEFAULT_TIMEOUT=${CK_DEFAULT_TIMEOUT:-60} "$bin" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    if ((rc == 77)); then
        skipped=$((skipped + 1))
        # Its reason: a TAP "1..0 # SKIP why" or a "...: skipped: why" line.
        why=$(sed -n -e 's/^1\.\.0 # SKIP //p' -e 's/^.*: skipped: //p' <<<"$out" | tail -1)
        skips+=("$name: ${why:-exit status 77}")
        continue
    fi
    line=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' <<<"$out" | tail -1)
    plain=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' <<<"$out" | tail -1)
    if [[ -z $line && -n $plain ]]; then
        # A script suite (test/check-systemd.sh) ends with the plain line.
        line="Checks: $(( ${plain%% passed*} + $(sed -E 's/.*, ([0-9]+) failed/\1/' <<<"$plain") )), Failures: $(sed -E 's/.*, ([0-9]+) failed/\1/' <<<"$plain"), Errors: 0"
    fi
    if [[ -z $line ]]; then
        echo "$name: no Check summary (exit status $rc)"
        failed=$((failed + 1)); bad+=("$name")
        continue
    fi
    checks=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
    fails=$(sed -E 's/.*Failures: ([0-9]+).*/\1/' <<<"$line")
    errs=$(sed -E 's/.*Errors: ([0-9]+).*/\1/' <<<"$line")
    passed=$((passed + checks - fails - errs))
    failed=$((failed + fails + errs))
    if ((rc != 0 || fails + errs > 0)); then
        bad+=("$name")
        ((fails + errs > 0)) || failed=$((failed + 1))
    fi
done
echo
for s in "${skips[@]}"; do
    echo "SKIPPED: $s"
done
if ((${#bad[@]} > 0)); then
    echo "FAILED: ${bad[*]}"
fi
if ((skipped > 0)); then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
((failed == 0 && ${#bad[@]} == 0))
