#!/usr/bin/env bash
# check-man.sh - the manual pages are lint-clean and match the code.
#
#   - man/tls-echod.8 and man/tls-echod.conf.5 format without a word from
#     `groff -mandoc -ww -z` (and from `mandoc -T lint -W warning` when
#     mandoc is installed);
#   - every setting name in src/config.c's *_keys arrays is an ".It Ic NAME"
#     item of tls-echod.conf.5 (global ones under GLOBAL SETTINGS, the others
#     under LISTENERS), and every such item is a real setting;
#   - every CLOSE_REASON token the code logs (src/*.c: refuse(r, "..."),
#     finish/begin_closing/backend_failed/log_close/conn_set_close_all
#     reasons, token = "...") is an ".It Cm TOKEN" item of the REFUSAL
#     REASONS section of tls-echod.8, and every such item is a real token;
#   - every MESSAGE_ID of src/log.h and every option of src/main.c's
#     getopt string appears in tls-echod.8;
#   - man/tls-echo.1 (the client) is lint-clean too, and every long option
#     of src/client/tls-echo.c is an item of its OPTIONS section.
#
# usage: test/check-man.sh        (from anywhere; works on the repository)
# Prints "ok - ..." / "not ok - ..." per check and ends with
# "N passed, N failed".  Exit 0 all passed, 1 failure, 77 skipped (no groff).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1

MAN8=man/tls-echod.8
MAN5=man/tls-echod.conf.5
CONFIG_C=src/config.c
LOG_H=src/log.h
MAIN_C=src/main.c
MAN1=man/tls-echo.1
CLIENT_C=src/client/tls-echo.c

if ! command -v groff >/dev/null 2>&1; then
    echo "check-man: groff not installed (apt-get install groff): skipped"
    exit 77
fi

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

# Print the body of section $2 (".Sh $2") of page $1, up to the next ".Sh".
section() {
    awk -v want="$2" '
        /^\.Sh / { on = (substr($0, 5) == want); next }
        on { print }
    ' "$1"
}

# Print the names in the C array $2 ("static const char *const $2[] = {").
c_keys() {
    sed -n "/[[:space:]]$2\[\] = {/,/};/p" "$1" |
        grep -oE '"[A-Za-z0-9_]+"' | tr -d '"'
}

# Print the X of every ".It $2 X" line (X a word) of text on stdin.
items() {
    sed -nE "s/^\.It $1 ([A-Za-z0-9_.-]+).*/\1/p"
}

# Join each C file into statements (one per line) so that calls spanning
# lines are whole, then print the CLOSE_REASON tokens they pass: a literal
# in the reason argument of refuse(r, ...), finish(c, now, ...),
# begin_closing/backend_failed(set, c, now, ...), log_close(c, now, ...),
# conn_set_close_all(set, ...) or "token = ...", and every hyphenated
# literal in such a call (reasons chosen with "cond ? \"a-b\" : \"c-d\"").
close_tokens() {
    local f calls
    calls='refuse\(r|[^a-z_]finish\(|begin_closing\(|backend_failed\(|log_close\(|conn_set_close_all\(|token = "'
    for f in src/*.c; do
        tr '\n\t' '  ' <"$f" | tr ';' '\n'
    done | grep -E "$calls" >"$tmp/stmts"
    grep -oE '(refuse\(r|token =|conn_set_close_all\([^,()]*|[^a-z_]finish\([^,()]*,[^,()]*|(begin_closing|backend_failed)\([^,()]*,[^,()]*,[^,()]*|log_close\([^,()]*,[^,()]*),? *"[a-z]+(-[a-z]+)*"' \
        "$tmp/stmts" | grep -oE '"[a-z-]+"$'
    grep -oE '"[a-z]+(-[a-z]+)+"' "$tmp/stmts"
}

# --- lint -------------------------------------------------------------------

for page in "$MAN8" "$MAN5" "$MAN1"; do
    if [[ ! -f $page ]]; then
        nok "$page exists"
        continue
    fi
    out=$(groff -mandoc -ww -z "$page" 2>&1)
    if [[ -z $out ]]; then
        ok "groff -mandoc -ww -z $page: no warnings"
    else
        nok "groff -mandoc -ww -z $page: no warnings"
        printf '%s\n' "$out" | sed 's/^/#   /'
    fi
    if command -v mandoc >/dev/null 2>&1; then
        # -W warning: STYLE notes (e.g. "referenced manual not found" for
        # pages not installed yet) are not failures.  Lines about the
        # system's mandoc.db are about the host, not the page.
        out=$(mandoc -T lint -W warning "$page" 2>&1 | grep -v 'mandoc\.db')
        if [[ -z $out ]]; then
            ok "mandoc -T lint $page: no warnings"
        else
            nok "mandoc -T lint $page: no warnings"
            printf '%s\n' "$out" | sed 's/^/#   /'
        fi
    fi
done
[[ -f $MAN8 && -f $MAN5 ]] || {
    echo "$passed passed, $failed failed"
    exit 1
}

# --- settings: src/config.c <-> tls-echod.conf.5 ----------------------------

global_doc=$(section "$MAN5" "GLOBAL SETTINGS" | items Ic | sort -u)
listener_doc=$(section "$MAN5" "LISTENERS" | items Ic | sort -u)
all_keys=""
for arr in global_keys listener_keys tls_keys allow_keys backend_keys \
    backend_tls_keys; do
    keys=$(c_keys "$CONFIG_C" "$arr")
    if [[ -z $keys ]]; then
        nok "$CONFIG_C: array $arr found and not empty"
        continue
    fi
    all_keys+="$keys"$'\n'
    if [[ $arr == global_keys ]]; then
        doc=$global_doc where="GLOBAL SETTINGS"
    else
        doc=$listener_doc where="LISTENERS"
    fi
    for k in $keys; do
        check "$arr: \"$k\" documented in $MAN5 $where" \
            grep -qxF -- "$k" <<<"$doc"
    done
done
for k in $global_doc $listener_doc; do
    check "$MAN5: documented setting \"$k\" exists in $CONFIG_C" \
        grep -qxF -- "$k" <<<"$all_keys"
done

# --- CLOSE_REASON tokens: src/ <-> tls-echod.8 ------------------------------

tokens=$(close_tokens | tr -d '"' | sort -u)
reasons_doc=$(section "$MAN8" "REFUSAL REASONS" | items Cm | sort -u)
if [[ $(wc -w <<<"$tokens") -lt 10 ]]; then
    nok "src/: CLOSE_REASON tokens found (only $(wc -w <<<"$tokens"))"
fi
for t in $tokens; do
    check "CLOSE_REASON \"$t\" documented in $MAN8 REFUSAL REASONS" \
        grep -qxF -- "$t" <<<"$reasons_doc"
done
for t in $reasons_doc; do
    check "$MAN8: documented CLOSE_REASON \"$t\" is logged by src/" \
        grep -qxF -- "$t" <<<"$tokens"
done

# --- MESSAGE_IDs and options -------------------------------------------------

ids=$(grep -oE '"[0-9a-f]{32}"' "$LOG_H" | tr -d '"')
[[ -n $ids ]] || nok "$LOG_H: MESSAGE_IDs found"
for id in $ids; do
    check "MESSAGE_ID $id in $MAN8" grep -qF -- "$id" "$MAN8"
done

optstring=$(grep -oE 'getopt\(argc, argv, "[^"]+"' "$MAIN_C" |
    sed -E 's/.*"([^"]+)"/\1/' | tr -d ':')
[[ -n $optstring ]] || nok "$MAIN_C: getopt option string found"
options_doc=$(section "$MAN8" "OPTIONS" | items Fl)
for ((i = 0; i < ${#optstring}; i++)); do
    o=${optstring:i:1}
    check "option -$o documented in $MAN8 OPTIONS" \
        grep -qxF -- "$o" <<<"$options_doc"
    check "option -$o in $MAN8 SYNOPSIS" \
        grep -qE -- "Fl $o( |$)" <(section "$MAN8" "SYNOPSIS")
done

# --- the client: src/client/tls-echo.c <-> tls-echo.1 ------------------------

longopts=$(sed -n '/longopts\[\] = {/,/};/p' "$CLIENT_C" |
    grep -oE '\{ "[a-z0-9.-]+"' | sed -E 's/\{ "//; s/"$//')
[[ $(wc -w <<<"$longopts") -ge 10 ]] ||
    nok "$CLIENT_C: long options found (only $(wc -w <<<"$longopts"))"
client_doc=$(section "$MAN1" "OPTIONS")
for o in $longopts; do
    check "tls-echo option --$o documented in $MAN1 OPTIONS" \
        grep -qF -- "Fl \\-$o" <<<"$client_doc"
done

echo
echo "$passed passed, $failed failed"
((failed == 0))
