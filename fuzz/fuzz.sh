#!/usr/bin/env bash
# fuzz/fuzz.sh - run the libFuzzer drivers for a bounded time each.
#
#   fuzz/fuzz.sh --probe     exit 0 if $FUZZ_CC links -fsanitize=fuzzer (and
#                           runs the result, with LeakSanitizer suppressions
#                           by function name working); else print why and
#                           exit 1
#   fuzz/fuzz.sh [SECONDS]   run $BUILDDIR/fuzz/{fuzz_allow,fuzz_san,
#                           fuzz_config,fuzz_proxy,fuzz_http} (or $FUZZ_TARGETS) for
#                           SECONDS each (default: $FUZZ_SMOKE_SECONDS or 10)
#
# Environment: BUILDDIR (default build), FUZZ_CC (default clang),
# FUZZ_KEEP_CORPUS=1 to grow $BUILDDIR/fuzz/corpus/NAME across runs (make
# fuzz) instead of a scratch copy (make fuzz-smoke, make check).  Seeds come
# from fuzz/corpus/NAME and are never modified.  A crashing input is saved
# as fuzz/crashes/NAME-crash-<sha1> (libFuzzer's -artifact_prefix).
#
# It ends with "N passed, N failed" (a stage of make check); without
# libFuzzer with "0 passed, 0 failed, 1 skipped" and exit status 77.
set -uo pipefail

root=$(cd -- "$(dirname -- "$0")/.." && pwd)
cc=${FUZZ_CC:-clang}
builddir=${BUILDDIR:-build}
[[ $builddir == /* ]] || builddir=$root/$builddir

probe() {
    local dir rc
    dir=$(mktemp -d) || return 1
    # The probe leaks from a named function, and a suppression names it: the
    # binary passes only if LeakSanitizer can name functions (it needs
    # llvm-symbolizer for that), as fuzz/lsan.supp's entries need.
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' '#include <stdlib.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
        '__attribute__((noinline)) void *fuzz_probe_leak(size_t n);' \
        '__attribute__((noinline)) void *fuzz_probe_leak(size_t n) { return malloc(n + 7); }' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {' \
        '  void *volatile p = fuzz_probe_leak(n); (void)d; p = NULL; (void)p; return 0; }' \
        >"$dir/p.c"
    printf 'leak:fuzz_probe_leak\n' >"$dir/supp"
    if ! command -v "$cc" >/dev/null 2>&1; then
        echo "fuzz: skipped: $cc not found (apt-get install clang)"
        rc=1
    elif ! "$cc" -fsanitize=fuzzer,address,undefined -o "$dir/p" "$dir/p.c" \
        >"$dir/log" 2>&1; then
        echo "fuzz: skipped: $cc cannot link -fsanitize=fuzzer (libFuzzer" \
            "missing: install libclang-rt-dev or clang's runtime): $(head -c 300 "$dir/log")"
        rc=1
    elif ! LSAN_OPTIONS=suppressions=$dir/supp "$dir/p" -runs=1 >"$dir/log" 2>&1; then
        if grep -q 'LeakSanitizer: detected memory leaks' "$dir/log"; then
            echo "fuzz: skipped: LeakSanitizer cannot name functions here (no" \
                "llvm-symbolizer: install llvm), so fuzz/lsan.supp cannot" \
                "suppress the known library leaks"
        else
            echo "fuzz: skipped: a libFuzzer binary built by $cc does not run:" \
                "$(grep -a -m1 -E 'ERROR|error' "$dir/log" | head -c 300)"
        fi
        rc=1
    else
        rc=0
    fi
    rm -rf -- "$dir"
    return "$rc"
}

if [[ ${1:-} == --probe ]]; then
    probe
    exit
fi

secs=${1:-${FUZZ_SMOKE_SECONDS:-10}}
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || { echo "usage: $0 [--probe | SECONDS]" >&2; exit 2; }

if ! probe; then
    echo "0 passed, 0 failed, 1 skipped"
    exit 77
fi

passed=0 failed=0
mkdir -p -- "$root/fuzz/crashes"
for name in ${FUZZ_TARGETS:-fuzz_allow fuzz_san fuzz_config fuzz_proxy fuzz_http}; do
    bin=$builddir/fuzz/$name
    seeds=$root/fuzz/corpus/${name#fuzz_}
    if [[ ! -x $bin ]]; then
        echo "$name: FAILED: $bin not built (make fuzz-build)"
        failed=$((failed + 1))
        continue
    fi
    if [[ ${FUZZ_KEEP_CORPUS:-} == 1 ]]; then
        work=$builddir/fuzz/corpus/${name#fuzz_}
        mkdir -p -- "$work"
    else
        work=$(mktemp -d "$builddir/fuzz/smoke-${name#fuzz_}.XXXXXX")
    fi
    log=$builddir/fuzz/$name.log
    # -timeout: one input taking over 10 s is a hang; the RSS limit keeps a
    # leak from eating the machine.  Leaks are reported (ASan) and fail,
    # except the library leaks fuzz/lsan.supp lists with their reasons.
    LSAN_OPTIONS=suppressions=$root/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS} \
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$root/fuzz/crashes/$name-" \
        "$work" "$seeds" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -aEo 'cov: [0-9]+' "$log" | tail -1)
    files=$(find "$work" -type f | wc -l)
    if ((rc == 0)); then
        echo "$name: ok: ${secs} s, ${runs:-?} runs, ${eps:-?} exec/s, ${cov:-cov: ?}, corpus $files file(s)"
        passed=$((passed + 1))
    else
        echo "$name: FAILED (exit $rc); log $log; crash inputs in $root/fuzz/crashes/:"
        grep -aE '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|artifact_prefix|Test unit written)' "$log" | head -20
        failed=$((failed + 1))
    fi
    [[ ${FUZZ_KEEP_CORPUS:-} == 1 ]] || rm -rf -- "$work"
done
echo "$passed passed, $failed failed"
((failed == 0))
