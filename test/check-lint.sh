#!/usr/bin/env bash
# Static analysis, the lint stage of make check:
#   cppcheck over the C sources, with the compiler's flags;
#   and each shell script through shellcheck.
#
# usage: test/check-lint.sh SCRIPT... -- CPPCHECK_ARG... SOURCE_DIR
# (the Makefile's lint target passes its CPPCHECK_FLAGS and src).  One check
# for cppcheck, one per script.  Suppressions live next to what they
# silence, each with its reason: inline "cppcheck-suppress" comments, and
# disable directives for shellcheck.  A missing tool fails the stage
# (scripts/install-deps.sh installs both).
set -uo pipefail

scripts=()
while (($# > 0)) && [[ $1 != -- ]]; do
    scripts+=("$1")
    shift
done
[[ ${1:-} == -- ]] && shift
passed=0 failed=0

if ! command -v cppcheck >/dev/null 2>&1; then
    echo "cppcheck: FAILED: not installed (apt-get install cppcheck)"
    failed=$((failed + 1))
elif out=$(cppcheck "$@" 2>&1); then
    echo "cppcheck: ok ($(cppcheck --version))"
    passed=$((passed + 1))
else
    printf '%s\n' "$out"
    echo "cppcheck: FAILED"
    failed=$((failed + 1))
fi

if ! command -v shellcheck >/dev/null 2>&1; then
    echo "shellcheck: FAILED: not installed (apt-get install shellcheck)"
    failed=$((failed + 1))
else
    clean=0
    for f in "${scripts[@]}"; do
        if out=$(shellcheck -x "$f" 2>&1); then
            clean=$((clean + 1))
        else
            printf '%s\n' "$out"
            echo "shellcheck: $f: FAILED"
            failed=$((failed + 1))
        fi
    done
    passed=$((passed + clean))
    echo "shellcheck: $clean of ${#scripts[@]} script(s) clean ($(shellcheck --version | sed -n 's/^version: //p'))"
fi
echo "$passed passed, $failed failed"
((failed == 0))
