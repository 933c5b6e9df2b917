#!/usr/bin/env bash
# The last suite of the sanitizer pass (make check-asan): fail if any
# ASan/UBSan/LSan report was written.
#
# The suites run with ASAN_OPTIONS and UBSAN_OPTIONS log_path=$SAN_LOG_DIR/san
# (set by the Makefile), so every report, from a test program or from a
# daemon the tests started (whose stderr only the harness reads), lands in a
# file $SAN_LOG_DIR/san.PID.  One check per run: passed if there is none;
# else each report file counts as a failure and its head is shown.
set -uo pipefail

dir=${SAN_LOG_DIR:?SAN_LOG_DIR must be set (run through make check-asan)}
shopt -s nullglob
reports=("$dir"/san.*)
if ((${#reports[@]} == 0)); then
    echo "sanitizers: no reports in $dir"
    echo "1 passed, 0 failed"
    exit 0
fi
for f in "${reports[@]}"; do
    echo "--- sanitizer report $f:"
    grep -aE 'ERROR: |runtime error|SUMMARY:|^ +#[0-9]+ ' "$f" | head -25
done
echo "sanitizers: ${#reports[@]} report(s) in $dir"
echo "0 passed, ${#reports[@]} failed"
exit 1
