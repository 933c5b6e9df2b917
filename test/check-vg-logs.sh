#!/usr/bin/env bash
# The last suite of the valgrind pass (make check-valgrind): read the logs
# valgrind wrote for every daemon process ($VG_LOG_DIR/vg.PID, --log-file
# with %p) and fail on
#   - any error (ERROR SUMMARY above 0: invalid reads and writes, use of
#     uninitialised values, bad frees, and, with
#     --errors-for-leak-kinds=definite,indirect, definite or indirect leaks);
#   - a master that exits with a file descriptor open that it opened itself:
#     valgrind lists every fd open at exit, and those the process did not
#     open itself (stdin/out/err, the sockets systemd passes, the test's
#     own) say "<inherited from parent>".  Workers are not held to this:
#     they _exit with the listening sockets the master opened, on purpose.
# A master is a process whose parent is not itself a logged process.  Logs
# without a summary (a process killed with SIGKILL by the test) have nothing
# to check.  One check per log with a summary.
set -uo pipefail

dir=${VG_LOG_DIR:?VG_LOG_DIR must be set (run through make check-valgrind)}
shopt -s nullglob
logs=("$dir"/vg.*)
passed=0 failed=0 unchecked=0
declare -A logged
for f in "${logs[@]}"; do
    logged[${f##*.}]=1
done

for f in "${logs[@]}"; do
    if ! grep -q 'ERROR SUMMARY:' "$f"; then
        unchecked=$((unchecked + 1))
        continue
    fi
    why=()
    errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$f" | tail -1)
    ((${errs:-0} == 0)) || why+=("$errs error(s)")
    ppid=$(sed -n 's/^==[0-9]*== Parent PID: \([0-9]*\)$/\1/p' "$f" | head -1)
    if [[ -z ${logged[${ppid:-0}]:-} ]]; then
        # Blocks "Open ... descriptor N: ..." followed by either
        # "<inherited from parent>" or the stack where it was opened.
        own=$(awk '
            /Open (file descriptor|AF_[A-Z0-9]+ socket) [0-9]+/ {
                if (fd != "" && !inh) print fd
                fd = $0; sub(/^==[0-9]+== +/, "", fd); inh = 0; next
            }
            /<inherited from parent>/ { inh = 1 }
            END { if (fd != "" && !inh) print fd }' "$f")
        [[ -z $own ]] || why+=("master exited with fds it opened: $(tr '\n' ';' <<<"$own")")
    fi
    if ((${#why[@]} == 0)); then
        passed=$((passed + 1))
        continue
    fi
    failed=$((failed + 1))
    echo "--- valgrind: $f: ${why[*]}"
    grep -aE '^==[0-9]+== (Command:|Invalid|Conditional|Use of|Syscall param|Mismatched|[0-9,]+ (\(|bytes)|   (at|by) 0x|Open )' "$f" | head -40
done
echo "valgrind: ${#logs[@]} log(s) in $dir; $unchecked without a summary (killed)"
echo "$passed passed, $failed failed"
((failed == 0))
