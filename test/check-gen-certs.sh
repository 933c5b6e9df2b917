#!/usr/bin/env bash
# check-gen-certs.sh - scripts/gen-certs.sh makes what it says, idempotently.
#
# Runs the script with --out in a temporary directory (never the
# repository's certs/) and checks the results with `openssl verify`:
# the default PKI, a named client with SANs, an intermediate CA and its
# chain file, and CRLs revoking clients (-crl_check / -crl_check_all).
#
# usage: test/check-gen-certs.sh
# Prints "ok - ..." / "not ok - ..." per check and ends with
# "N passed, N failed".  Exit 0 all passed, 1 failure, 77 no openssl.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
GEN=$PWD/scripts/gen-certs.sh

if ! command -v openssl >/dev/null 2>&1; then
    echo "check-gen-certs: openssl not installed: skipped"
    exit 77
fi

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
        sed 's/^/#   /' "$tmp/last.out"
    fi
}
# check_fails DESCRIPTION COMMAND...: ok if COMMAND fails.
check_fails() {
    local what=$1
    shift
    if "$@" >"$tmp/last.out" 2>&1; then
        nok "$what"
        sed 's/^/#   /' "$tmp/last.out"
    else
        ok "$what"
    fi
}
gen() { "$GEN" --out "$tmp/pki" "$@"; }
sums() { (cd "$tmp/pki" && sha256sum -- *.crt *.key 2>/dev/null); }
san_of() { openssl x509 -in "$tmp/pki/$1.crt" -noout -ext subjectAltName | sed -n '2s/^[[:space:]]*//p'; }
mode_of() { stat -c %a "$tmp/pki/$1"; }
P=$tmp/pki

# --- default PKI --------------------------------------------------------------

check "default run succeeds" gen
check "exactly ca, server and client are made" \
    test "$(find "$P" -mindepth 1 -printf '%f\n' | sort | tr '\n' ' ')" = "ca.crt ca.key client.crt client.key server.crt server.key "
check "server.crt verifies for localhost and 127.0.0.1" \
    openssl verify -x509_strict -purpose sslserver -verify_hostname localhost \
    -verify_ip 127.0.0.1 -CAfile "$P/ca.crt" "$P/server.crt"
check "client.crt verifies as a TLS client" \
    openssl verify -x509_strict -purpose sslclient -CAfile "$P/ca.crt" "$P/client.crt"
check "client.crt keeps its SAN URI:spiffe://tls-echod.dev/client" \
    test "$(san_of client)" = "URI:spiffe://tls-echod.dev/client"
check "keys are mode 0600" test "$(mode_of ca.key)$(mode_of server.key)$(mode_of client.key)" = 600600600
before=$(sums)
out=$(gen 2>&1)
check "second run says present and valid" grep -q "present and valid" <<<"$out"
check "second run changes nothing" test "$before" = "$(sums)"

# --- named clients and SANs ---------------------------------------------------------

check "--client alice --san-uri --san-dns, --client bob" \
    gen --client alice --san-uri spiffe://dev.example/ns/web/alice \
    --san-dns alice.svc.example --client bob
check "alice.crt has exactly the SANs asked for" \
    test "$(san_of alice)" = "URI:spiffe://dev.example/ns/web/alice, DNS:alice.svc.example"
check "bob.crt has the default SAN" test "$(san_of bob)" = "URI:spiffe://tls-echod.dev/bob"
check "alice.crt and bob.crt verify as clients" \
    openssl verify -purpose sslclient -CAfile "$P/ca.crt" "$P/alice.crt" "$P/bob.crt"
check "alice's CN is alice" grep -q "CN *= *alice" <(openssl x509 -in "$P/alice.crt" -noout -subject)
before=$(sums)
gen --client alice --san-uri spiffe://dev.example/ns/web/alice \
    --san-dns alice.svc.example --client bob >/dev/null 2>&1
check "the same --client run again changes nothing" test "$before" = "$(sums)"
gen --client alice --san-dns alice2.svc.example >/dev/null 2>&1
check "other SANs for alice reissue her certificate" \
    test "$(san_of alice)" = "DNS:alice2.svc.example"
check_fails "--san-uri without --client is refused" gen --san-uri spiffe://x/y
check_fails "a SAN with a comma is refused" gen --client c --san-dns "a,b"
check_fails "a reserved client name is refused" gen --client server

# --- intermediate CA ---------------------------------------------------------------------

check "--intermediate --client carol" gen --intermediate --client carol
check "int-ca.crt is a CA signed by ca.crt" \
    openssl verify -x509_strict -CAfile "$P/ca.crt" "$P/int-ca.crt"
check "int-ca.crt has CA:TRUE, pathlen:0" \
    grep -q "CA:TRUE, pathlen:0" <(openssl x509 -in "$P/int-ca.crt" -noout -ext basicConstraints)
check "carol.crt chains through int-ca.crt" \
    openssl verify -x509_strict -purpose sslclient -CAfile "$P/ca.crt" \
    -untrusted "$P/int-ca.crt" "$P/carol.crt"
check_fails "carol.crt alone does not verify against ca.crt" \
    openssl verify -CAfile "$P/ca.crt" "$P/carol.crt"
check "carol-chain.crt is carol.crt then int-ca.crt" \
    test "$(cat "$P/carol.crt" "$P/int-ca.crt")" = "$(cat "$P/carol-chain.crt")"
before=$(sums)
gen --intermediate --client carol >/dev/null 2>&1
check "the same --intermediate run again changes nothing" test "$before" = "$(sums)"

# --- revocation --------------------------------------------------------------------------

check "--revoke bob" gen --revoke bob
check "ca.crl is a CRL signed by ca.crt" \
    openssl crl -in "$P/ca.crl" -CAfile "$P/ca.crt" -noout
openssl verify -crl_check -CAfile "$P/ca.crt" -CRLfile "$P/ca.crl" "$P/bob.crt" >"$tmp/v.out" 2>&1
check "openssl verify -crl_check: bob is revoked" grep -q "certificate revoked" "$tmp/v.out"
check "openssl verify -crl_check: alice is not" \
    openssl verify -crl_check -CAfile "$P/ca.crt" -CRLfile "$P/ca.crl" "$P/alice.crt"
check "--revoke bob again is fine" gen --revoke bob
check "bob is listed once" test "$(openssl crl -in "$P/ca.crl" -noout -text | grep -c 'Serial Number')" = 1
check "--revoke carol (issued by the intermediate)" gen --revoke carol
openssl verify -crl_check_all -CAfile "$P/ca.crt" -untrusted "$P/int-ca.crt" \
    -CRLfile "$P/ca.crl" -CRLfile "$P/int-ca.crl" "$P/carol.crt" >"$tmp/v.out" 2>&1
check "openssl verify -crl_check_all: carol is revoked by int-ca.crl" \
    grep -q "certificate revoked" "$tmp/v.out"
check_fails "--revoke of a certificate that does not exist fails" gen --revoke nobody

# --- options ------------------------------------------------------------------------------

check "--days 10 --force: leaves valid 10 days" gen --days 10 --force
end=$(openssl x509 -in "$P/server.crt" -noout -enddate)
end=$(date -d "${end#notAfter=}" +%s)
left=$(( (end - $(date +%s)) / 86400 ))
check "server.crt has 9-10 days left (got $left)" test "$left" -ge 9 -a "$left" -le 10
check "--force regenerated the CA: old revocations are gone" test ! -e "$P/ca.crl"
"$GEN" -h >"$tmp/help.out" 2>&1
check "-h prints the usage with every option" \
    grep -q -- "--intermediate" "$tmp/help.out"
for o in --client --san-uri --san-dns --revoke --days --out; do
    check "-h documents $o" grep -q -- "$o" "$tmp/help.out"
done
check_fails "an unknown option fails" gen --bogus

echo
echo "$passed passed, $failed failed"
((failed == 0))
