#!/usr/bin/env bash
# Run the stages of `make check` one after another and sum up.
#
# usage: test/check-stages.sh STAGE...
# Each STAGE is a make target (check-run, check-asan, check-valgrind, lint,
# fuzz-smoke) whose output ends with "N passed, N failed" (optionally
# ", N skipped").  Every stage runs, even after one failed, so one run
# shows everything that is wrong.  Ends with a table of the stages (result
# and wall time) and the sum; fails if any stage failed.
#
# Environment: MAKE (default make) and MAKEFLAGS as make passes them.
set -uo pipefail

make=${MAKE:-make}
names=() results=() times=() bad=0 skips=()
total_p=0 total_f=0 total_s=0 t_all=$SECONDS
log=$(mktemp "${TMPDIR:-/tmp}/check-stages.XXXXXX")
trap 'rm -f "$log"' EXIT

for stage in "$@"; do
    echo
    echo "##### stage $stage"
    t0=$SECONDS
    $make --no-print-directory "$stage" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    dt=$((SECONDS - t0))
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$log" | tail -1)
    p=0 f=0 s=0
    if [[ -n $line ]]; then
        p=${line%% passed*}
        f=$(sed -E 's/.*, ([0-9]+) failed.*/\1/' <<<"$line")
        [[ $line == *skipped ]] && s=$(sed -E 's/.*, ([0-9]+) skipped/\1/' <<<"$line")
    fi
    if ((rc != 0)); then
        result="FAILED (exit $rc${line:+; $line})"
        ((f > 0)) || f=1
        bad=$((bad + 1))
    elif [[ -z $line ]]; then
        result="FAILED (no \"N passed, N failed\" line)"
        f=1
        bad=$((bad + 1))
    else
        result="ok: $line"
    fi
    total_p=$((total_p + p)) total_f=$((total_f + f)) total_s=$((total_s + s))
    # What a stage skipped, and why (test/run-tests.sh's SKIPPED lines,
    # fuzz/fuzz.sh's "fuzz: skipped: why").
    while IFS= read -r why; do
        skips+=("$stage: $why")
    done < <(sed -n -e 's/^SKIPPED: //p' -e 's/^fuzz: skipped: /fuzz: /p' "$log" | sort -u)
    names+=("$stage") results+=("$result") times+=("$dt")
done

echo
echo "##### make check: summary"
for i in "${!names[@]}"; do
    printf '  %-15s %4d s  %s\n' "${names[$i]}" "${times[$i]}" "${results[$i]}"
done
printf '  %-15s %4d s\n' "total" $((SECONDS - t_all))
for why in "${skips[@]}"; do
    echo "  skipped: $why"
done
if ((total_s > 0)); then
    echo "$total_p passed, $total_f failed, $total_s skipped"
else
    echo "$total_p passed, $total_f failed"
fi
((bad == 0))
