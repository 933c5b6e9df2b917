#!/usr/bin/env bash
# check-readme.sh - README.md matches the code, the Makefile and itself.
#
#   - log fields: every FIELD= of the README's sample log lines is one the
#     code writes (the keys of src/*.c's struct log_field tables, and the
#     fields src/log.c adds), each sample is a line one log call could
#     write (its fields in that call's order, none it always writes left
#     out unless a "…" stands for them), the Logs table lists every field
#     of those tables, and journalctl examples filter on real fields;
#   - Layout: every src/*.c module, src/client/*.c file, test/check_*.c and
#     test/check-*.sh suite and docs/*.md note is an item of its folder's
#     list in the Layout block, every top-level folder has an entry, and
#     every entry and item exists;
#   - figures stated twice agree: the valgrind suites with the Makefile's
#     VALGRIND_SUITES; the stages with CHECK_STAGES (names, order, count);
#     the BENCH_QUICK duration in README, Makefile and bench/RESULTS.md;
#     each numeric default and range of the configuration tables with
#     src/config.c (DEFAULT_* and get_uint/get_seconds bounds), with
#     tls-echod.conf(5) and with conf/tls-echod.conf; the defaults the
#     prose repeats ("`idle_timeout` (300 s"); every MESSAGE_ID with
#     src/log.h; every number of the Performance table with bench/RESULTS.md;
#   - links: every relative link of README.md and docs/*.md reaches a file,
#     and its #anchor a heading there; no file of the repository points at
#     a folder outside it or names a tracker issue by number.
#
# usage: test/check-readme.sh     (from anywhere; works on the repository)
# Prints "ok - ..." / "not ok - ..." per check and ends with
# "N passed, N failed".  Exit 0 all passed, 1 failure.
# The backquotes in single-quoted patterns are markdown's, not expansions:
# shellcheck disable=SC2016
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1

README=README.md
CONFIG_C=src/config.c
LOG_C=src/log.c
LOG_H=src/log.h
MAN5=man/tls-echod.conf.5
CONF=conf/tls-echod.conf
RESULTS=bench/RESULTS.md

passed=0 failed=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
ok() { passed=$((passed + 1)); echo "ok - $*"; }
nok() { failed=$((failed + 1)); echo "not ok - $*"; }
# check DESCRIPTION COMMAND...: ok if COMMAND succeeds.
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else nok "$what"; fi
}
# same A B DESCRIPTION: ok if the strings are equal, else say both.
same() {
    if [[ $1 == "$2" ]]; then
        ok "$3"
    else
        nok "$3"
        printf '#   %s\n#   %s\n' "got:  $1" "want: $2"
    fi
}
# Numbers compare as numbers: "0.1" and ".1", "300" and "300.0".
num_eq() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 == b + 0) }'; }
# range_eq LO HI LO2 HI2: the same range.
range_eq() { num_eq "$1" "$3" && num_eq "$2" "$4"; }

# The file on one line, runs of blanks squeezed: phrases wrapped over lines
# become greppable.
flat() { tr '\n\t' '  ' <"$1" | tr -s ' '; }

# Print the body of markdown section "## $2" of file $1 (to the next "## ").
md_section() {
    awk -v want="## $2" '
        /^## / { on = ($0 == want); next }
        on { print }
    ' "$1"
}

# Print "LINE<TAB>TEXT" for every line inside ``` fences of file $1.
fenced() {
    awk '/^ *```/ { in_f = !in_f; next } in_f { print NR "\t" $0 }' "$1"
}

# --- log fields: src/*.c <-> README ------------------------------------------

# Each struct log_field table of src/*.c, one line each:
# "FILE:LINE<TAB>KEY KEY? ...", KEY? for a field whose value may be NULL
# (then it is left out of the record).
log_tables() {
    local f
    for f in src/*.c; do
        awk -v file="$f" '
            /struct log_field [a-z_]+\[\] = \{/ { on = 1; buf = ""; at = FNR }
            on { buf = buf " " $0 }
            on && /\};/ {
                on = 0; keys = ""
                while (match(buf, /\{ *"[A-Z][A-Z0-9_]*" *,[^}]*\}/)) {
                    e = substr(buf, RSTART, RLENGTH)
                    buf = substr(buf, RSTART + RLENGTH)
                    k = e; sub(/^\{ *"/, "", k); sub(/".*/, "", k)
                    keys = keys " " k (e ~ /NULL/ ? "?" : "")
                }
                sub(/^ /, "", keys)
                if (keys != "") print file ":" at "\t" keys
            }
        ' "$f"
    done
}
log_tables >"$tmp/tables"
cut -f2 "$tmp/tables" | tr ' ' '\n' | tr -d '?' | sort -u >"$tmp/table_keys"
# What log.c adds to every record: native journald fields ("KEY=%s") and the
# JSON lines' members ("\"KEY\":").
{
    cat "$tmp/table_keys"
    grep -oE '"[A-Z][A-Z0-9_]*=' "$LOG_C" | tr -d '"='
    grep -oE '\\"[A-Z][A-Z0-9_]*\\":' "$LOG_C" | tr -d '\\":'
} | sort -u >"$tmp/written"
if [[ $(wc -l <"$tmp/tables") -lt 3 ]]; then
    nok "src/*.c: struct log_field tables found (only $(wc -l <"$tmp/tables"))"
fi

# The fields of a log line on stdin, in order ("…" kept: it stands for
# fields left out), quoted values dropped first.
line_fields() {
    sed -E 's/"[^"]*"//g' | grep -oE '(^| )(…|[A-Z][A-Z0-9_]*=)' |
        tr -d ' =' | paste -sd ' '
}

# judge TABLE SAMPLE: "ok", "missing K..." (the sample follows the table's
# order but leaves out fields it always writes), or "order" (it does not
# follow the table at all).
judge() {
    awk -v t="$1" -v s="$2" 'BEGIN {
        n = split(t, T, " "); m = split(s, S, " "); j = 1; el = 0; miss = ""
        for (i = 1; i <= n; i++) {
            k = T[i]; opt = sub(/\?$/, "", k)
            while (j <= m && S[j] == "…") { el = 1; j++ }
            if (j <= m && S[j] == k) { j++; el = 0; continue }
            if (!opt && !el) miss = miss " " k
        }
        while (j <= m && S[j] == "…") j++
        if (j <= m) print "order"
        else if (miss != "") print "missing" miss
        else print "ok"
    }'
}

# A sample log line: in a fence, with FIELD= tokens after a message that
# has a colon ("tls-echod[4242]: info: connection closed: ... LISTENER=").
fenced "$README" | while IFS=$'\t' read -r ln text; do
    bare=$(sed -E 's/"[^"]*"//g' <<<"$text")
    head=$(sed -E 's/ [A-Z][A-Z0-9_]*=.*//' <<<"$bare")
    [[ $head != "$bare" && $head == *": "* ]] || continue
    case $head in journalctl* | systemctl* | sudo* | '$ '*) continue ;; esac
    printf '%s\t%s\n' "$ln" "$(line_fields <<<"$text")"
done >"$tmp/samples"

nsamples=$(wc -l <"$tmp/samples")
check "$README: sample log lines found ($nsamples)" test "$nsamples" -ge 3
while IFS=$'\t' read -r ln fields; do
    bad=""
    for k in $fields; do
        [[ $k == "…" ]] && continue
        grep -qxF -- "$k" "$tmp/written" || bad+=" $k="
    done
    if [[ -n $bad ]]; then
        nok "$README:$ln: sample log line: fields the code writes (not:$bad)"
        continue
    fi
    verdict="" best="" where=""
    while IFS=$'\t' read -r at keys; do
        v=$(judge "$keys" "$fields")
        if [[ $v == ok ]]; then
            verdict=ok
            break
        fi
        if [[ $v == missing* ]] &&
            { [[ -z $best ]] || ((${#v} < ${#best})); }; then
            best=$v where=$at
        fi
    done <"$tmp/tables"
    if [[ $verdict == ok ]]; then
        ok "$README:$ln: sample log line is one a log call writes ($fields)"
    elif [[ -n $best ]]; then
        nok "$README:$ln: sample log line carries every field its log call always writes"
        echo "#   lacks$(sed -E 's/^missing//; s/ ([A-Z0-9_]+)/ \1=/g' <<<"$best") (written by $where)"
    else
        nok "$README:$ln: sample log line has its fields in the order of one log call"
        echo "#   $fields"
    fi
done <"$tmp/samples"

# The Logs table: every field of a log_field table, and only real fields.
md_section "$README" Logs | awk '/^\|/ { t = 1 } t && !/^\|/ { exit } t' |
    cut -d'|' -f2 | grep -oE '`[A-Z][A-Z0-9_]*`' | tr -d '`' |
    sort -u >"$tmp/doc_fields"
check "$README: Logs section has a table of fields" test -s "$tmp/doc_fields"
while read -r k; do
    check "field $k (src/) is in $README's Logs table" \
        grep -qxF -- "$k" "$tmp/doc_fields"
done <"$tmp/table_keys"
while read -r k; do
    check "$README Logs table: $k is a field the code writes" \
        grep -qxF -- "$k" "$tmp/written"
done <"$tmp/doc_fields"

# journalctl examples filter on fields that exist.  (Loops that count
# read from a process substitution, never from a pipe: a pipe's loop runs
# in a subshell and its counts would be lost.)
while IFS=$'\t' read -r ln text; do
    for k in $(grep -oE ' [A-Z][A-Z0-9_]*=' <<<"$text" | tr -d ' ='); do
        check "$README:$ln: journalctl matches $k=, a field the code writes" \
            grep -qxF -- "$k" "$tmp/written"
    done
done < <(fenced "$README" | awk -F'\t' '$2 ~ /^(sudo )?journalctl /')

# --- Layout: the tree <-> README ------------------------------------------------

# The Layout block: an entry per folder ("DIR  what is in it"), then its
# list, one item per line indented by two blanks ("  NAME  what it is").
# $tmp/layout: "DIR<TAB>all of the entry's text"; $tmp/items: "DIR<TAB>NAME".
md_section "$README" Layout | awk -v items="$tmp/items" '
    /^```/ { f = !f; next }
    !f { next }
    /^[^ ]/ { if (d != "") print d "\t" t; d = $1; t = $0; next }
    /^  [^ ]/ { print d "\t" $1 > items }
    { t = t " " $0 }
    END { if (d != "") print d "\t" t }
' >"$tmp/layout"
touch "$tmp/items"
check "$README: Layout block found" test -s "$tmp/layout"
# entry DIR: the text of DIR's entry ("" if none).
entry() { awk -F'\t' -v d="$1" '$1 == d { print $2 }' "$tmp/layout"; }
# listed DIR NAME: NAME is an item of DIR's list.
listed() { awk -F'\t' -v d="$1" -v n="$2" '$1 == d && $2 == n { f = 1 } END { exit !f }' "$tmp/items"; }

for f in src/*.c; do
    m=${f#src/}
    check "Layout src/ lists module ${m%.c} ($f)" listed src/ "${m%.c}"
done
for f in src/client/*.c; do
    check "Layout src/client/ lists ${f#src/client/}" listed src/client/ "${f#src/client/}"
done
for f in test/check_*.c; do
    s=${f#test/}
    check "Layout test/ lists suite ${s%.c}" listed test/ "${s%.c}"
done
for f in test/check-*.sh; do
    check "Layout test/ lists ${f#test/}" listed test/ "${f#test/}"
done
for f in docs/*.md; do
    [[ -e $f ]] || continue
    check "Layout docs/ lists ${f#docs/}" listed docs/ "${f#docs/}"
done
# Every item is real: DIR/NAME, or a module or suite DIR/NAME.c.
item_exists() { [[ -e $1$2 || -e $1$2.c ]]; }
while IFS=$'\t' read -r d n; do
    check "Layout item $d$n exists" item_exists "$d" "$n"
done <"$tmp/items"
# Top-level folders: tracked ones (a checkout), else those present but build/.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files | awk -F/ 'NF > 1 && $1 !~ /^\./ { print $1 "/" }' | sort -u
else
    find . -mindepth 1 -maxdepth 1 -type d ! -name '.*' ! -name build |
        sed 's|^\./||; s|$|/|' | sort
fi >"$tmp/dirs"
while read -r d; do
    check "Layout has an entry for $d" test -n "$(entry "$d")"
done <"$tmp/dirs"
while IFS=$'\t' read -r d _; do
    check "Layout entry $d is a folder of the repository" test -d "$d"
done <"$tmp/layout"

# --- figures stated twice --------------------------------------------------------

dev=$(md_section "$README" Development | tr '\n' ' ' | tr -s ' ')

# The valgrind suites.
vg_make=$(sed -nE 's/^VALGRIND_SUITES \?= *//p' Makefile | tr ' ' '\n' |
    sed '/^$/d' | sort | paste -sd ' ')
vg_readme=$(grep -oE '`check-valgrind`: [^(]*\(`VALGRIND_SUITES`\)' <<<"$dev" |
    grep -oE 'check_[a-z_]+' | sort | paste -sd ' ')
check "Makefile: VALGRIND_SUITES found" test -n "$vg_make"
same "$vg_readme" "$vg_make" \
    "$README check-valgrind names the Makefile's VALGRIND_SUITES"

# The stages of make check: names in order, and their count in words.
st_make=$(sed -nE 's/^CHECK_STAGES := *//p' Makefile | tr -s ' ')
st_readme=$(md_section "$README" Development |
    sed -nE 's/^ +[0-9]+\. `([a-z-]+)`:.*/\1/p' | paste -sd ' ')
check "Makefile: CHECK_STAGES found" test -n "$st_make"
same "$st_readme" "$st_make" \
    "$README's numbered stages are the Makefile's CHECK_STAGES, in order"
words=(zero one two three four five six seven eight nine ten)
n_make=$(wc -w <<<"$st_make")
n_word=$(grep -oE 'goes through [a-z]+ stages' <<<"$dev" | awk '{ print $3 }')
same "$n_word" "${words[n_make]:-$n_make}" \
    "$README: \"goes through N stages\" counts CHECK_STAGES"

# BENCH_QUICK's duration, in seconds, as FILE states it.
quick_s() {
    flat "$1" | grep -oE 'BENCH_QUICK=1[^0-9]{0,50}[0-9]+(\.[0-9]+)?[ -]?(s|min|minutes?|minute)([^a-z]|$)' |
        head -1 | sed -E 's/^BENCH_QUICK=1[^0-9]*//' |
        awk '{ n = $0 + 0; if ($0 ~ /min/) n *= 60; print n }'
}
q_readme=$(quick_s "$README")
check "$README: BENCH_QUICK duration found" test -n "$q_readme"
for f in Makefile "$RESULTS"; do
    q=$(quick_s "$f")
    check "$f: BENCH_QUICK duration found" test -n "$q"
    same "${q:-none} s" "${q_readme:-none} s" \
        "BENCH_QUICK run time: $f agrees with $README"
done

# The configuration tables: "NAME;DEFAULT;MIN;MAX" for rows with a single
# setting name, a numeric default ("300", "0 (no limit)") and/or a range
# ("0–3600").  Fields are separated by ";", not a blank: empty ones stay.
md_section "$README" Configuration | awk -F'|' '
    /^\| `[a-z_.]+` \|/ {
        name = $2; gsub(/[ `]/, "", name)
        def = $4; sub(/^ +/, "", def)
        sub(/ +$/, "", def)
        d = (def ~ /^[0-9][0-9.]*( \(.*\))?$/) ? def : ""
        sub(/ .*/, "", d)
        lo = hi = ""
        if (match($3, /[0-9][0-9.]*–[0-9][0-9.]*/)) {
            r = substr($3, RSTART, RLENGTH)
            split(r, p, "–"); lo = p[1]; hi = p[2]
        }
        if (d != "" || lo != "") print name ";" d ";" lo ";" hi
    }
' >"$tmp/settings"
check "$README: settings with numeric defaults or ranges found ($(wc -l <"$tmp/settings"))" \
    test "$(wc -l <"$tmp/settings")" -ge 10

# What src/config.c says of setting $1: "DEFAULT;MIN;MAX" (each may be
# empty), in the units of the configuration file (seconds, not ms).
code_of() {
    local key=$1 m v scale=1 call lo='' hi='' def=''
    m=$(tr '[:lower:]' '[:upper:]' <<<"$key" | sed 's/_PER_SECOND$/_PER_S/')
    v=$(sed -nE "s/^#define DEFAULT_${m}(_MS|_S)? +([0-9]+)u?.*/\1 \2/p" "$CONFIG_C" |
        head -1)
    if [[ -n $v ]]; then
        [[ $v == _MS* ]] && scale=1000
        def=$(awk -v n="${v##* }" -v s="$scale" 'BEGIN { print n / s }')
    fi
    call=$(tr '\n\t' '  ' <"$CONFIG_C" | tr -s ' ' |
        grep -oE "get_(uint|seconds)\([^,]*, [^,]*, \"$key\", [^,]+, [^,]+," | head -1)
    if [[ -n $call ]]; then
        scale=1
        [[ $call == get_seconds* ]] && scale=1000
        lo=$(awk -F', ' '{ print $4 }' <<<"$call")
        hi=$(awk -F', ' '{ print $5 }' <<<"$call" | tr -d ',')
        # A bound may be a macro of config.c.
        for b in lo hi; do
            if [[ ! ${!b} =~ ^[0-9]+u?$ ]]; then
                printf -v "$b" '%s' "$(sed -nE "s/^#define ${!b} +([0-9]+)u?.*/\1/p" "$CONFIG_C")"
            fi
            printf -v "$b" '%s' "$(awk -v n="${!b%u}" -v s="$scale" 'BEGIN { if (n != "") print n / s }')"
        done
    fi
    printf '%s;%s;%s\n' "$def" "$lo" "$hi"
}

# What tls-echod.conf(5) says of setting $1 in its first item that has a
# default or a range: "DEFAULT;MIN;MAX".
man_of() {
    awk -v key="$1" '
        /^\.It / { if (on && (d != "" || lo != "")) exit; on = ($0 ~ ("^\\.It Ic " key "( |$)")); next }
        on {
            if (d == "" && match($0, /default [0-9][0-9.]*/))
                d = substr($0, RSTART + 8, RLENGTH - 8)
            if (d == "" && match($0, /[0-9][0-9.]* \([^)]*the default\)/)) {
                d = substr($0, RSTART, RLENGTH); sub(/ .*/, "", d)
            }
            if (lo == "" && match($0, /From [0-9][0-9.]*( \([^)]*\))? to [0-9][0-9.]*/)) {
                r = substr($0, RSTART, RLENGTH)
                lo = r; sub(/^From /, "", lo); sub(/ .*/, "", lo)
                hi = r; sub(/.* to /, "", hi)
            }
        }
        END { sub(/\.$/, "", d); sub(/\.$/, "", hi); print d ";" lo ";" hi }
    ' "$MAN5"
}

ndef=0
while IFS=';' read -r name def lo hi; do
    key=${name##*.}
    IFS=';' read -r c_def c_lo c_hi < <(code_of "$key")
    IFS=';' read -r m_def m_lo m_hi < <(man_of "$key")
    f_def=$(sed -nE "s/^[# ]*$key *= *([0-9][0-9.]*);.*/\1/p" "$CONF" | head -1)
    if [[ -n $def ]]; then
        ndef=$((ndef + 1))
        [[ -z $c_def ]] ||
            check "default of $name: $README ($def) = $CONFIG_C ($c_def)" num_eq "$def" "$c_def"
        [[ -z $m_def ]] ||
            check "default of $name: $README ($def) = $MAN5 ($m_def)" num_eq "$def" "$m_def"
        [[ -z $f_def ]] ||
            check "default of $name: $README ($def) = $CONF ($f_def)" num_eq "$def" "$f_def"
        if [[ -z $c_def$m_def$f_def ]]; then
            nok "default of $name ($def) is stated elsewhere too (code, man page or $CONF)"
        fi
    fi
    if [[ -n $lo ]]; then
        [[ -z $c_lo ]] ||
            check "range of $name: $README ($lo–$hi) = $CONFIG_C ($c_lo–$c_hi)" \
                range_eq "$lo" "$hi" "$c_lo" "$c_hi"
        [[ -z $m_lo ]] ||
            check "range of $name: $README ($lo–$hi) = $MAN5 ($m_lo–$m_hi)" \
                range_eq "$lo" "$hi" "$m_lo" "$m_hi"
        if [[ -z $c_lo$m_lo ]]; then
            nok "range of $name ($lo–$hi) is stated elsewhere too (code or man page)"
        fi
    fi
done <"$tmp/settings"
check "$README: numeric defaults compared ($ndef)" test "$ndef" -ge 10

# Defaults the prose repeats: "`handshake_timeout` (10 s)", "`linger_timeout`
# after a half-close (30 s)", "`log_refusals_per_second` (default 10)".
flat "$README" |
    grep -oE '`[a-z_.]+`[^`()|]{0,30}\((default )?[0-9][0-9,.]*( s)?[;),]' |
    sed -E 's/^`([a-z_.]+)`.*\((default )?([0-9][0-9,.]*).*/\1 \3/' |
    tr -d ',' >"$tmp/restated"
nrest=0
while read -r name n; do
    def=$(awk -F';' -v k="$name" '$1 == k || $1 ~ ("\\." k "$") { print $2; exit }' "$tmp/settings")
    [[ -n $def ]] || continue
    nrest=$((nrest + 1))
    check "$README prose: \`$name\` ($n) agrees with the configuration table ($def)" \
        num_eq "$n" "$def"
done <"$tmp/restated"
check "$README: defaults restated in the prose found ($nrest)" test "$nrest" -ge 3

# MESSAGE_IDs: whole ones are in src/log.h; "…c07" ends one.
grep -oE '[0-9a-f]{32}' "$LOG_H" | sort -u >"$tmp/ids"
while read -r id; do
    check "$README: MESSAGE_ID $id is in $LOG_H" grep -qxF -- "$id" "$tmp/ids"
done < <(grep -oE '(^|[^0-9a-f])[0-9a-f]{32}([^0-9a-f]|$)' "$README" |
    grep -oE '[0-9a-f]{32}' | sort -u)
while read -r s; do
    check "$README: MESSAGE_ID …$s ends one of $LOG_H" grep -qE -- "$s\$" "$tmp/ids"
done < <(grep -oE '…[0-9a-f]{3}`' "$README" | tr -d '…`' | sort -u)

# The Performance table quotes bench/RESULTS.md: every figure in it, but
# those rounded to k (100k) or restated in ms, appears there.
# has_number FILE N: N is a number of FILE, not part of a longer one.
has_number() {
    local re
    re=${2//./\\.}
    grep -qE -- "(^|[^0-9.,])$re([^0-9,.]|[.,][^0-9]|[.,]?$)" "$1"
}
md_section "$README" Performance | awk '/^\|/' | tail -n +3 |
    sed -E 's/[0-9][0-9,.]*k\b//g; s/[0-9][0-9,.]* ms\b//g' |
    grep -oE '[0-9][0-9,]*(\.[0-9]+)?' | sed -E 's/[,.]$//' | sort -u >"$tmp/perf"
check "$README: Performance table figures found ($(wc -l <"$tmp/perf"))" \
    test "$(wc -l <"$tmp/perf")" -ge 10
while read -r n; do
    check "$README Performance table: $n is a figure of $RESULTS" has_number "$RESULTS" "$n"
done <"$tmp/perf"

# --- links, and nothing outside the repository -------------------------------------

# GitHub's anchor of each heading of FILE (outside fences).
anchors() {
    awk '/^ *```/ { f = !f; next } !f && /^#+ / { sub(/^#+ /, ""); print }' "$1" |
        tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9 _-]//g; s/ /-/g'
}
for f in "$README" docs/*.md; do
    [[ -e $f ]] || continue
    dir=$(dirname "$f")
    while read -r target; do
        case $target in http://* | https://* | mailto:*) continue ;; esac
        path=${target%%#*} anchor=''
        [[ $target == *'#'* ]] && anchor=${target#*#}
        dest=$f
        if [[ -n $path ]]; then
            dest=$dir/$path
            check "$f: link $target reaches a file of the repository" test -e "$dest"
        fi
        if [[ -n $anchor && -f $dest ]]; then
            check "$f: link $target reaches a heading" \
                grep -qxF -- "$anchor" <(anchors "$dest")
        fi
    done < <(grep -oE '\]\([^) ]+\)' "$f" | sed -E 's/^\]\(//; s/\)$//' | sort -u)
done

# Pointers out of the repository: a sibling folder, the machines' work tree,
# tracker issue numbers (public upstream references like
# Mbed-TLS/mbedtls#10877 are fine).
outside='\.\./shared|/wor[k]/|[Ii]ssues? #?[0-9]'
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files | grep -v '^fuzz/corpus/' >"$tmp/files"
else
    find . -type f ! -path './build/*' ! -path './.git/*' ! -path './fuzz/corpus/*' |
        sed 's|^\./||' >"$tmp/files"
fi
hits=$(tr '\n' '\0' <"$tmp/files" | xargs -0 grep -nIE -- "$outside" 2>/dev/null)
if [[ -z $hits ]]; then
    ok "no file points outside the repository or names a tracker issue"
else
    nok "no file points outside the repository or names a tracker issue"
    printf '%s\n' "$hits" | sed 's/^/#   /'
fi

echo
echo "$passed passed, $failed failed"
((failed == 0))
