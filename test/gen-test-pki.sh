#!/usr/bin/env bash
# gen-test-pki.sh DIR - generate the throwaway PKI for the integration tests.
#
# Run fresh by every `make check`. Everything is ECDSA P-256 unless stated.
# Produces in DIR (keys mode 0600, certificates 0644):
#
#   ca.crt ca.key                   test CA "tls-echod test CA"
#   server.crt server.key           CN localhost; SAN DNS:localhost,
#                                   IP:127.0.0.1, IP:::1; serverAuth
#   client.crt client.key           OU ops, CN test-client; SAN
#                                   URI:spiffe://test.example/client,
#                                   DNS:client.test.example,
#                                   email:test-client@example.com; clientAuth
#   client-rsa.crt client-rsa.key   RSA-2048 client, CN test-client-rsa
#   other-ca.crt other-ca.key       unrelated CA with the SAME subject and the
#                                   same subjectKeyIdentifier as ca.crt (only
#                                   the key differs)
#   client-other.crt client-other.key
#                                   like client.crt but signed by other-ca
#   client-expired.crt client-expired.key
#                                   like client.crt, valid 2020-01-01..2021-01-01
#   client-future.crt client-future.key
#                                   like client.crt, valid 2099-01-01..2100-01-01
#   client-badsig.crt client-badsig.key
#                                   client.crt with one signature byte flipped
#                                   (still parses); key is a copy of client.key
#   mismatch.key                    a key that matches no certificate
#   garbage.crt                     PEM armour around non-base64 text
#
# Identity tests (check_identity, check_identity_unit, fuzz/corpus/san):
#
#   int-ca.crt int-ca.key           intermediate CA "tls-echod test
#                                   intermediate CA", signed by ca (pathlen 0)
#   client-int.crt client-int.key   OU ops, CN test-client-int; SAN
#                                   URI:spiffe://test.example/client-int;
#                                   signed by int-ca
#   client-int-chain.crt            client-int.crt followed by int-ca.crt
#   ca-int-bundle.crt               ca.crt followed by int-ca.crt
#   client-dns-a.crt/.key           CN dns-a; SAN DNS:a.svc.example
#   client-dns-xy.crt/.key          CN dns-xy; SAN DNS:x.y.svc.example,
#                                   email:ops@sub.example.com
#   client-uri-web.crt/.key         CN uri-web; SAN
#                                   URI:spiffe://prod/ns/web/sa/api
#   client-uri-db.crt/.key          CN uri-db; SAN URI:spiffe://prod/ns/db/sa/x
#   client-email.crt/.key           OU dev, CN email-ops; SAN
#                                   email:ops@example.com
#   client-revoked.crt/.key         OU ops, CN test-client-revoked (client_ext
#                                   SANs), signed by ca, revoked in ca.crl
#   ca.crl ca.crl.der               CRL of ca revoking client-revoked (PEM,
#                                   DER), next update in 30 days
#   ca-stale.crl                    the same revocation, lastUpdate 2020-01-01,
#                                   nextUpdate 2020-01-02 (stale)
#   client-int-revoked.crt/.key     OU ops, CN test-client-int-revoked, signed
#                                   by int-ca, revoked in int-ca.crl
#   client-int-revoked-chain.crt    client-int-revoked.crt then int-ca.crt
#   int-ca.crl                      CRL of int-ca revoking client-int-revoked
#   other-ca.crl                    CRL of other-ca (same subject as ca,
#                                   another key), revokes nothing
#
# Client tool tests (check_client: tls-echo --expect-days):
#
#   server-expired.crt/.key         like server.crt (CN localhost, same SANs,
#                                   serverAuth), valid 2020-01-01..2021-01-01
#   server-soon.crt/.key            like server.crt, valid for 5 days from now
#
# The "bad" clients differ from client.crt in exactly one respect (issuer
# key, validity or signature): same subject, SANs and extensions. Because
# other-ca copies ca's SKID, client-other's authorityKeyIdentifier matches
# ca.crt too, so a verifier can only reject it by checking the signature.
#
# Prints "test PKI in DIR" on success, nothing else; exits non-zero with a
# message on failure.

set -Eeuo pipefail

prog=${0##*/}

die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}

trap 'printf "%s: error: command failed at line %s: %s\n" "$prog" "$LINENO" "$BASH_COMMAND" >&2' ERR

[[ $# -eq 1 && -n $1 ]] || die "usage: $prog DIR"
command -v openssl >/dev/null 2>&1 || die "openssl not found in PATH"

mkdir -p -- "$1" || die "cannot create directory $1"
dir=$(cd -- "$1" && pwd)

umask 077
work=$(mktemp -d "$dir/.gen-test-pki.XXXXXX")
cleanup() { rm -rf -- "$work"; }
trap cleanup EXIT

# All openssl commands run inside $work with relative file names.
cd -- "$work"
log=openssl.log

# Run openssl quietly; show its output only if it fails.
ossl() {
    if ! openssl "$@" >"$log" 2>&1; then
        printf '%s: error: openssl %s failed:\n' "$prog" "$1" >&2
        cat -- "$log" >&2
        exit 1
    fi
}

# Random positive 127-bit serial number.
rand_serial() {
    local hex
    hex=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    printf '0x%x%s' $(( 0x${hex:0:1} & 7 )) "${hex:1}"
}

cat >openssl.cnf <<'EOF'
[ req ]
distinguished_name = req_dn
prompt             = no
utf8               = yes
string_mask        = utf8only

[ req_dn ]

[ v3_ca ]
basicConstraints     = critical, CA:TRUE
keyUsage             = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ v3_other_ca ]
basicConstraints     = critical, CA:TRUE
keyUsage             = critical, keyCertSign, cRLSign
subjectKeyIdentifier = ${ENV::TEST_PKI_CA_SKID}

[ server_ext ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ client_ext ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectAltName         = URI:spiffe://test.example/client, DNS:client.test.example, email:test-client@example.com
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ client_rsa_ext ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectAltName         = URI:spiffe://test.example/client-rsa
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

# Minimal `openssl ca` setup, only used for the explicit validity periods
# that `openssl x509` cannot set on OpenSSL 3.0.
[ ca ]
default_ca = test_ca

[ test_ca ]
database        = ./index.txt
new_certs_dir   = ./newcerts
certificate     = ./ca.crt
private_key     = ./ca.key
default_md      = sha256
policy          = policy_anything
unique_subject  = no
copy_extensions = none
email_in_dn     = no
rand_serial     = yes

[ policy_anything ]
countryName            = optional
stateOrProvinceName    = optional
localityName           = optional
organizationName       = optional
organizationalUnitName = optional
commonName             = supplied
emailAddress           = optional
EOF

ca_subj="/O=tls-echod tests/CN=tls-echod test CA"
client_subj="/OU=ops/CN=test-client"

ec_key() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve -out "$1"; }
rsa_key() { ossl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }

# make_ca NAME EXTSECTION
make_ca() {
    ec_key "$1.key"
    ossl req -new -x509 -config openssl.cnf -extensions "$2" -key "$1.key" \
        -subj "$ca_subj" -sha256 -days 365 -set_serial "$(rand_serial)" -out "$1.crt"
}

# csr NAME SUBJECT: NAME.csr for NAME.key
csr() {
    ossl req -new -config openssl.cnf -key "$1.key" -subj "$2" -sha256 -out "$1.csr"
}

# sign NAME ISSUER EXTSECTION: NAME.crt from NAME.csr, valid 30 days from now
sign() {
    ossl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" \
        -set_serial "$(rand_serial)" -sha256 -days 30 \
        -extfile openssl.cnf -extensions "$3" -out "$1.crt"
}

# sign_dated NAME START END: NAME.crt from NAME.csr, signed by ca with
# validity START..END (YYYYMMDDHHMMSSZ).
sign_dated() {
    ossl ca -config openssl.cnf -batch -notext -preserveDN \
        -startdate "$2" -enddate "$3" \
        -extfile openssl.cnf -extensions client_ext \
        -in "$1.csr" -out "$1.crt"
}

mkdir newcerts
: >index.txt

# openssl.cnf refers to this variable; it must be set whenever it is loaded.
export TEST_PKI_CA_SKID=hash
make_ca ca v3_ca
skid=$(openssl x509 -in ca.crt -noout -ext subjectKeyIdentifier | sed -n '2s/[[:space:]]//gp')
[[ $skid =~ ^[0-9A-F:]+$ ]] || die "cannot read the subjectKeyIdentifier of ca.crt"
TEST_PKI_CA_SKID=$skid
make_ca other-ca v3_other_ca

ec_key server.key
csr server "/CN=localhost"
sign server ca server_ext

ec_key client.key
csr client "$client_subj"
sign client ca client_ext

rsa_key client-rsa.key
csr client-rsa "/CN=test-client-rsa"
sign client-rsa ca client_rsa_ext

ec_key client-other.key
csr client-other "$client_subj"
sign client-other other-ca client_ext

ec_key client-expired.key
csr client-expired "$client_subj"
sign_dated client-expired 20200101000000Z 20210101000000Z

ec_key client-future.key
csr client-future "$client_subj"
sign_dated client-future 20990101000000Z 21000101000000Z

# client-badsig: flip the last byte of the DER, which is inside the
# signature value, and re-armour it byte-for-byte.
ossl x509 -in client.crt -outform DER -out client-badsig.der
size=$(stat -c %s client-badsig.der)
off=$((size - 1))
byte=$(od -An -tu1 -j "$off" -N1 client-badsig.der | tr -d ' ')
[[ $byte =~ ^[0-9]+$ ]] || die "cannot read client-badsig.der"
# shellcheck disable=SC2059 # the format is the octal escape of the new byte
printf "\\$(printf '%03o' $((byte ^ 0x01)))" |
    dd of=client-badsig.der bs=1 seek="$off" conv=notrunc status=none
{
    echo "-----BEGIN CERTIFICATE-----"
    base64 -w 64 client-badsig.der
    echo "-----END CERTIFICATE-----"
} >client-badsig.crt
cp client.key client-badsig.key

ec_key mismatch.key

printf -- '-----BEGIN CERTIFICATE-----\nnot base64 !!!\n-----END CERTIFICATE-----\n' >garbage.crt

# Cheap self-checks: the good leaves verify, the tampered one still parses
# but does not verify, and the dated ones got the requested dates.
ossl verify -CAfile ca.crt server.crt client.crt client-rsa.crt
ossl x509 -in client-badsig.crt -noout
if openssl verify -CAfile ca.crt client-badsig.crt >/dev/null 2>&1; then
    die "client-badsig.crt unexpectedly verifies"
fi
[[ $(openssl x509 -in client-expired.crt -noout -enddate) == "notAfter=Jan  1 00:00:00 2021 GMT" ]] ||
    die "client-expired.crt has the wrong validity period"
[[ $(openssl x509 -in client-future.crt -noout -startdate) == "notBefore=Jan  1 00:00:00 2099 GMT" ]] ||
    die "client-future.crt has the wrong validity period"

# --- identity tests (check_identity) ----------------------------------------
# Their own extension and `openssl ca` file, so openssl.cnf above (and every
# file made from it) stays as it was.

# ident_ext SECTION SAN: a clientAuth leaf section with these SANs.
ident_ext() {
    printf '[ %s ]\nbasicConstraints       = critical, CA:FALSE\nkeyUsage               = critical, digitalSignature\nextendedKeyUsage       = clientAuth\nsubjectAltName         = %s\nsubjectKeyIdentifier   = hash\nauthorityKeyIdentifier = keyid:always\n\n' "$1" "$2"
}

{
    cat <<'EOF'
[ v3_int_ca ]
basicConstraints       = critical, CA:TRUE, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

# CRLs of CAs that revoked nothing: `openssl ca -name empty_ca -gencrl`.
[ empty_ca ]
database        = ./empty-index.txt
default_md      = sha256

# int-ca's own database, for its revocations.
[ int_ca ]
database        = ./int-index.txt
default_md      = sha256

EOF
    ident_ext client_int_ext "URI:spiffe://test.example/client-int"
    ident_ext san_dns_a "DNS:a.svc.example"
    ident_ext san_dns_xy "DNS:x.y.svc.example, email:ops@sub.example.com"
    ident_ext san_uri_web "URI:spiffe://prod/ns/web/sa/api"
    ident_ext san_uri_db "URI:spiffe://prod/ns/db/sa/x"
    ident_ext san_email "email:ops@example.com"
} >ident.cnf
: >empty-index.txt
: >int-index.txt

# sign_ident NAME ISSUER SECTION [DAYS]: like sign, with ident.cnf.
sign_ident() {
    ossl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" \
        -set_serial "$(rand_serial)" -sha256 -days "${4:-30}" \
        -extfile ident.cnf -extensions "$3" -out "$1.crt"
}

ec_key int-ca.key
csr int-ca "/O=tls-echod tests/CN=tls-echod test intermediate CA"
sign_ident int-ca ca v3_int_ca 365

ec_key client-int.key
csr client-int "/OU=ops/CN=test-client-int"
sign_ident client-int int-ca client_int_ext
cat client-int.crt int-ca.crt >client-int-chain.crt
ec_key client-int-revoked.key
csr client-int-revoked "/OU=ops/CN=test-client-int-revoked"
sign_ident client-int-revoked int-ca client_int_ext
cat client-int-revoked.crt int-ca.crt >client-int-revoked-chain.crt
cat ca.crt int-ca.crt >ca-int-bundle.crt

# ident_client NAME SUBJECT SECTION: a leaf signed by ca.
ident_client() {
    ec_key "$1.key"
    csr "$1" "$2"
    sign_ident "$1" ca "$3"
}
ident_client client-dns-a "/CN=dns-a" san_dns_a
ident_client client-dns-xy "/CN=dns-xy" san_dns_xy
ident_client client-uri-web "/CN=uri-web" san_uri_web
ident_client client-uri-db "/CN=uri-db" san_uri_db
ident_client client-email "/OU=dev/CN=email-ops" san_email

ec_key client-revoked.key
csr client-revoked "/OU=ops/CN=test-client-revoked"
sign client-revoked ca client_ext

# Revoke it in ca's database, dated 2019-12-31 (a revocation dated "now"
# would not yet count for a verifier running in the same second), then
# publish a current CRL (PEM and DER) and a stale one.
ossl ca -config openssl.cnf -revoke client-revoked.crt
sed -i -E 's/^R\t([0-9]+Z)\t[0-9]+Z/R\t\1\t191231000000Z/' index.txt
grep -q $'^R\t[0-9]*Z\t191231000000Z\t' index.txt ||
    die "cannot date the revocation of client-revoked.crt"
ossl ca -config openssl.cnf -gencrl -crldays 30 -out ca.crl
ossl crl -in ca.crl -outform DER -out ca.crl.der
ossl ca -config openssl.cnf -gencrl -crl_lastupdate 20200101000000Z \
    -crl_nextupdate 20200102000000Z -out ca-stale.crl
ossl ca -config ident.cnf -name int_ca -cert int-ca.crt -keyfile int-ca.key \
    -revoke client-int-revoked.crt
sed -i -E 's/^R\t([0-9]+Z)\t[0-9]+Z/R\t\1\t191231000000Z/' int-index.txt
ossl ca -config ident.cnf -name int_ca -cert int-ca.crt -keyfile int-ca.key \
    -gencrl -crldays 30 -out int-ca.crl
ossl ca -config ident.cnf -name empty_ca -cert other-ca.crt \
    -keyfile other-ca.key -gencrl -crldays 30 -out other-ca.crl

ossl verify -CAfile ca.crt -untrusted int-ca.crt client-int.crt
if openssl verify -crl_check_all -CAfile ca.crt -untrusted int-ca.crt \
    -CRLfile ca.crl -CRLfile int-ca.crl client-int-revoked.crt >/dev/null 2>&1; then
    die "client-int-revoked.crt is not revoked by int-ca.crl"
fi
ossl verify -crl_check_all -CAfile ca.crt -untrusted int-ca.crt \
    -CRLfile ca.crl -CRLfile int-ca.crl client-int.crt
ossl verify -CAfile ca.crt client-dns-a.crt client-dns-xy.crt \
    client-uri-web.crt client-uri-db.crt client-email.crt client-revoked.crt
ossl verify -crl_check -CAfile ca.crt -CRLfile ca.crl client.crt
if openssl verify -crl_check -CAfile ca.crt -CRLfile ca.crl client-revoked.crt \
    >/dev/null 2>&1; then
    die "client-revoked.crt is not revoked by ca.crl"
fi
ossl crl -in ca.crl.der -inform DER -noout
[[ $(openssl crl -in ca-stale.crl -noout -nextupdate) == "nextUpdate=Jan  2 00:00:00 2020 GMT" ]] ||
    die "ca-stale.crl has the wrong nextUpdate"

# --- client tool tests (check_client) ---------------------------------------
ec_key server-expired.key
csr server-expired "/CN=localhost"
ossl ca -config openssl.cnf -batch -notext -preserveDN \
    -startdate 20200101000000Z -enddate 20210101000000Z \
    -extfile openssl.cnf -extensions server_ext \
    -in server-expired.csr -out server-expired.crt
ec_key server-soon.key
csr server-soon "/CN=localhost"
ossl x509 -req -in server-soon.csr -CA ca.crt -CAkey ca.key \
    -set_serial "$(rand_serial)" -sha256 -days 5 \
    -extfile openssl.cnf -extensions server_ext -out server-soon.crt
ossl verify -CAfile ca.crt server-soon.crt
[[ $(openssl x509 -in server-expired.crt -noout -enddate) == "notAfter=Jan  1 00:00:00 2021 GMT" ]] ||
    die "server-expired.crt has the wrong validity period"
if ! openssl x509 -in server-soon.crt -noout -checkend $((4 * 86400)) >/dev/null ||
    openssl x509 -in server-soon.crt -noout -checkend $((5 * 86400 + 60)) >/dev/null; then
    die "server-soon.crt is not valid for 5 days"
fi
client_tool_files=(
    server-expired.crt server-expired.key server-soon.crt server-soon.key
)

ident_files=(
    int-ca.crt int-ca.key client-int.crt client-int.key client-int-chain.crt
    ca-int-bundle.crt client-dns-a.crt client-dns-a.key client-dns-xy.crt
    client-dns-xy.key client-uri-web.crt client-uri-web.key client-uri-db.crt
    client-uri-db.key client-email.crt client-email.key client-revoked.crt
    client-revoked.key ca.crl ca.crl.der ca-stale.crl int-ca.crl other-ca.crl
    client-int-revoked.crt client-int-revoked.key client-int-revoked-chain.crt
)

files=(
    ca.crt ca.key server.crt server.key client.crt client.key
    client-rsa.crt client-rsa.key other-ca.crt other-ca.key
    client-other.crt client-other.key client-expired.crt client-expired.key
    client-future.crt client-future.key client-badsig.crt client-badsig.key
    mismatch.key garbage.crt
)
files+=("${ident_files[@]}" "${client_tool_files[@]}")
for f in "${files[@]}"; do
    case $f in
        *.key) chmod 0600 "$f" ;;
        *) chmod 0644 "$f" ;;
    esac
    mv -f -- "$f" "$dir/$f"
done

echo "test PKI in $dir"
