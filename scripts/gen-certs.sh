#!/usr/bin/env bash
# gen-certs.sh - create the tls-echod development PKI (used by `make run`).
#
# Usage: scripts/gen-certs.sh [--dir|--out DIR] [--rsa] [--days N] [--force]
#            [--intermediate] [--client NAME [--san-uri URI]... [--san-dns NAME]...]...
#            [--revoke NAME]...
#
# Produces in DIR (default: certs/ at the repository root):
#   ca.crt ca.key           dev CA ("tls-echod dev CA", valid 3650 days)
#   server.crt server.key   server cert for localhost / 127.0.0.1 / ::1
#   client.crt client.key   client cert "tls-echod dev client"
#   NAME.crt NAME.key       one extra client cert per --client NAME (SAN
#                           URI:spiffe://tls-echod.dev/NAME, or the
#                           --san-uri / --san-dns given after it)
#   int-ca.crt int-ca.key   with --intermediate: an intermediate CA signed by
#                           ca; the --client certs are then issued by it
#   NAME-chain.crt          with --intermediate: NAME.crt then int-ca.crt
#                           (what the client presents)
#   ca.crl, int-ca.crl      with --revoke NAME: CRL of the CA that issued
#                           NAME.crt, revoking it (revocations accumulate in
#                           ca.index / int-ca.index until the CA changes)
#
# Keys are ECDSA P-256 (PKCS#8 PEM, mode 0600) unless --rsa (RSA-2048).
# If everything is already present, valid for at least another day and
# chains to the CA, nothing is done. Without --rsa an existing valid CA is
# kept whatever its key type and missing leaves get the CA's key type; with
# --rsa a non-RSA CA is replaced. --force regenerates everything.
#
# DEVELOPMENT ONLY. Never use these certificates or keys in production.

set -euo pipefail

prog=${0##*/}
script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd -- "$script_dir/.." && pwd)

dir="$repo_root/certs"
alg=        # "rsa" with --rsa; otherwise follow an existing CA, else "ec"
days=825
ca_days=3650
force=0
intermediate=0
clients=()
revokes=()
declare -A client_san=()
# SAN values go into an openssl config line: no spaces, commas or quotes.
san_re='^[A-Za-z0-9._~:/?#@!$&()*+=%-]+$'

usage() {
    cat <<EOF
Usage: $prog [--dir|--out DIR] [--rsa] [--days N] [--force] [--intermediate]
          [--client NAME [--san-uri URI]... [--san-dns NAME]...]... [--revoke NAME]...

Create the tls-echod development PKI (dev CA, server and client certs).
Idempotent: what exists and is valid is kept.

  --dir, --out DIR
                  output directory (default: $repo_root/certs)
  --rsa           RSA-2048 keys instead of ECDSA P-256 (without it, an
                  existing valid CA keeps its key type)
  --days N        validity of the leaf certificates in days (default 825;
                  the CA is valid for $ca_days days)
  --force         regenerate everything, even if valid files exist
  --client NAME   also issue a client certificate NAME.crt/NAME.key with
                  CN NAME and SAN URI:spiffe://tls-echod.dev/NAME (repeatable)
  --san-uri URI   a URI SAN (e.g. a SPIFFE ID) for the --client before it,
                  instead of the default one (repeatable)
  --san-dns NAME  a DNS SAN for the --client before it (repeatable)
  --intermediate  also make an intermediate CA int-ca.crt/.key (signed by
                  ca.crt) and issue the --client certificates from it, with
                  NAME-chain.crt (leaf then intermediate) for the client
  --revoke NAME   revoke NAME.crt (a --client made earlier or now) and write
                  the CRL of its issuer: ca.crl, or int-ca.crl (repeatable)
  -h, --help      show this help

For development only: never use these certificates in production.
EOF
}

die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}

need_arg() {
    [[ $# -ge 2 && -n $2 ]] || die "option $1 requires an argument (see --help)"
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --dir|--out) need_arg "$@"; dir=$2; shift 2 ;;
        --dir=*|--out=*) dir=${1#*=}; shift ;;
        --rsa) alg=rsa; shift ;;
        --days) need_arg "$@"; days=$2; shift 2 ;;
        --days=*) days=${1#*=}; shift ;;
        --force) force=1; shift ;;
        --client) need_arg "$@"; clients+=("$2"); shift 2 ;;
        --client=*) clients+=("${1#*=}"); shift ;;
        --san-uri|--san-dns)
            need_arg "$@"
            [[ ${#clients[@]} -gt 0 ]] || die "$1 must follow --client NAME"
            kind=URI
            [[ $1 == --san-dns ]] && kind=DNS
            # No commas or spaces: the value goes into an openssl config line.
            [[ $2 =~ $san_re ]] ||
                die "$1: '$2' has characters not allowed here (no spaces or commas)"
            last=${clients[${#clients[@]}-1]}
            client_san[$last]+="${client_san[$last]:+, }$kind:$2"
            shift 2 ;;
        --intermediate) intermediate=1; shift ;;
        --revoke) need_arg "$@"; revokes+=("$2"); shift 2 ;;
        --revoke=*) revokes+=("${1#*=}"); shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ -n $dir ]] || die "--dir must not be empty"
[[ $days =~ ^[1-9][0-9]{0,4}$ ]] || die "--days must be a positive integer (got '$days')"

# Extra client names become file names and certificate CNs: keep them simple.
declare -A seen=()
for name in ${clients[@]+"${clients[@]}"}; do
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] ||
        die "invalid client name '$name' (allowed: letters, digits, '.', '_', '-'; max 64 chars)"
    case $name in
        ca|server|client|int-ca|*-chain) die "client name '$name' is reserved" ;;
    esac
    [[ -z ${seen[$name]+x} ]] || die "client name '$name' given twice"
    seen[$name]=1
done

for name in ${revokes[@]+"${revokes[@]}"}; do
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] ||
        die "invalid name to revoke '$name'"
    case $name in
        ca|server|int-ca) die "--revoke $name: only client certificates can be revoked here" ;;
    esac
done

command -v openssl >/dev/null 2>&1 || die "openssl not found in PATH"

mkdir -p -- "$dir" || die "cannot create directory $dir"
dir=$(cd -- "$dir" && pwd)

# Everything below (keys in particular) is created owner-only.
umask 077

work=$(mktemp -d "$dir/.gen-certs.XXXXXX")
cleanup() { rm -rf -- "$work"; }
trap cleanup EXIT

log="$work/openssl.log"

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
    hex=$(openssl rand -hex 16)
    printf '0x%x%s' $(( 0x${hex:0:1} & 7 )) "${hex:1}"
}

cat >"$work/openssl.cnf" <<'EOF'
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

[ server_ec ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ server_rsa ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature, keyEncipherment
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ client ]
basicConstraints       = critical, CA:FALSE
keyUsage               = critical, digitalSignature
extendedKeyUsage       = clientAuth
subjectAltName         = ${ENV::TLS_ECHOD_CLIENT_SAN}
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

[ v3_int_ca ]
basicConstraints       = critical, CA:TRUE, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always

# Revocation databases for `openssl ca -revoke` / `-gencrl`.
[ ca ]
default_ca = dev_ca

[ dev_ca ]
database         = ${ENV::TLS_ECHOD_CA_DB}
default_md       = sha256
default_crl_days = 30
unique_subject   = no
EOF
export TLS_ECHOD_CLIENT_SAN=URI:spiffe://tls-echod.dev/client
export TLS_ECHOD_CA_DB=/dev/null

genkey() { # genkey OUT
    if [[ $alg == rsa ]]; then
        ossl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"
    else
        ossl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
            -pkeyopt ec_param_enc:named_curve -out "$1"
    fi
}

key_alg_name() {
    if [[ $alg == rsa ]]; then echo "RSA-2048"; else echo "ECDSA P-256"; fi
}

# --- validity checks of existing files ----------------------------------

# Seconds a certificate must still be valid for to be kept (one day); the
# final self-check after generation only requires it to be valid now.
min_valid=86400

# cert_key_ok CRT KEY: both exist, cert valid now and for another $min_valid
# seconds, key matches cert and is of the key type $alg (any if empty).
cert_key_ok() {
    local crt=$1 key=$2 text pub_crt pub_key
    [[ -s $crt && -s $key ]] || return 1
    openssl x509 -in "$crt" -noout -checkend "$min_valid" >/dev/null 2>&1 || return 1
    text=$(openssl x509 -in "$crt" -noout -text 2>/dev/null) || return 1
    case $alg in
        rsa) grep -q 'Public Key Algorithm: rsaEncryption' <<<"$text" || return 1 ;;
        ec) grep -q 'Public Key Algorithm: id-ecPublicKey' <<<"$text" || return 1 ;;
    esac
    pub_crt=$(openssl x509 -in "$crt" -noout -pubkey 2>/dev/null) || return 1
    pub_key=$(openssl pkey -in "$key" -pubout 2>/dev/null) || return 1
    [[ -n $pub_crt && $pub_crt == "$pub_key" ]]
}

ca_ok() {
    cert_key_ok "$dir/ca.crt" "$dir/ca.key" || return 1
    # Self-signed and usable as a trust anchor.
    openssl verify -x509_strict -CAfile "$dir/ca.crt" "$dir/ca.crt" >/dev/null 2>&1
}

# issuer_is BASENAME ISSUER: BASENAME.crt names ISSUER.crt's subject as issuer.
issuer_is() {
    local a b
    a=$(openssl x509 -in "$dir/$1.crt" -noout -issuer -nameopt RFC2253 2>/dev/null) || return 1
    b=$(openssl x509 -in "$dir/$2.crt" -noout -subject -nameopt RFC2253 2>/dev/null) || return 1
    [[ -n $a && ${a#issuer=} == "${b#subject=}" ]]
}

# leaf_ok BASENAME PURPOSE [ISSUER [SAN]]: valid, issued by ISSUER (ca or
# int-ca, default ca) and, if given, with exactly these SANs ("URI:x, DNS:y").
leaf_ok() {
    local base=$1 purpose=$2 issuer=${3:-ca} san=${4:-} extra=() have
    cert_key_ok "$dir/$base.crt" "$dir/$base.key" || return 1
    [[ $purpose == sslserver ]] && extra=(-verify_hostname localhost -verify_ip 127.0.0.1)
    [[ $issuer == int-ca ]] && extra+=(-untrusted "$dir/int-ca.crt")
    openssl verify -x509_strict -purpose "$purpose" ${extra[@]+"${extra[@]}"} \
        -CAfile "$dir/ca.crt" "$dir/$base.crt" >/dev/null 2>&1 || return 1
    issuer_is "$base" "$issuer" || return 1
    if [[ -n $san ]]; then
        have=$(openssl x509 -in "$dir/$base.crt" -noout -ext subjectAltName 2>/dev/null |
            sed -n '2s/^[[:space:]]*//p')
        [[ $have == "$san" ]] || return 1
    fi
}

int_ok() {
    cert_key_ok "$dir/int-ca.crt" "$dir/int-ca.key" || return 1
    openssl verify -x509_strict -CAfile "$dir/ca.crt" "$dir/int-ca.crt" >/dev/null 2>&1 &&
        issuer_is int-ca ca
}

# --- generation -----------------------------------------------------------

made=()

install_pair() { # install_pair BASENAME: move work/BASENAME.{key,crt} into dir
    chmod 0600 "$work/$1.key"
    chmod 0644 "$work/$1.crt"
    mv -f -- "$work/$1.key" "$dir/$1.key"
    mv -f -- "$work/$1.crt" "$dir/$1.crt"
    made+=("$1")
}

# forget_revocations ISSUER: its database and CRL belong to a CA that is gone.
forget_revocations() {
    rm -f -- "$dir/$1.index" "$dir/$1.index.attr" "$dir/$1.index.old" \
        "$dir/$1.index.attr.old" "$dir/$1.crl"
}

make_ca() {
    genkey "$work/ca.key"
    ossl req -new -x509 -config "$work/openssl.cnf" -extensions v3_ca \
        -key "$work/ca.key" -subj "/CN=tls-echod dev CA" \
        -sha256 -days "$ca_days" -set_serial "$(rand_serial)" \
        -out "$work/ca.crt"
    install_pair ca
    forget_revocations ca
    forget_revocations int-ca
}

# make_leaf BASENAME SUBJECT EXTSECTION [ISSUER [DAYS]]
make_leaf() {
    local base=$1 subj=$2 ext=$3 issuer=${4:-ca} ldays=${5:-$days}
    genkey "$work/$base.key"
    ossl req -new -config "$work/openssl.cnf" -key "$work/$base.key" \
        -subj "$subj" -sha256 -out "$work/$base.csr"
    ossl x509 -req -in "$work/$base.csr" \
        -CA "$dir/$issuer.crt" -CAkey "$dir/$issuer.key" -set_serial "$(rand_serial)" \
        -sha256 -days "$ldays" \
        -extfile "$work/openssl.cnf" -extensions "$ext" \
        -out "$work/$base.crt"
    rm -f -- "$work/$base.csr"
    install_pair "$base"
}

if [[ $force -eq 1 ]] || ! ca_ok; then
    if [[ $force -eq 0 && -e $dir/ca.crt ]]; then
        echo "$prog: existing dev CA in $dir is invalid, expiring, does not match ca.key${alg:+ or is not $(key_alg_name)}; regenerating everything"
    fi
    [[ -n $alg ]] || alg=ec
    make_ca
elif [[ -z $alg ]]; then
    # Keep the existing CA and issue any missing leaves with its key type.
    if openssl x509 -in "$dir/ca.crt" -noout -text | grep -q 'Public Key Algorithm: rsaEncryption'; then
        alg=rsa
    else
        alg=ec
    fi
fi

server_ext=server_ec
[[ $alg == rsa ]] && server_ext=server_rsa

client_issuer=ca
if [[ $intermediate -eq 1 ]]; then
    client_issuer=int-ca
    if [[ $force -eq 1 ]] || ! int_ok; then
        forget_revocations int-ca
        make_leaf int-ca "/CN=tls-echod dev intermediate CA" v3_int_ca ca "$ca_days"
    fi
fi

if [[ $force -eq 1 ]] || ! leaf_ok server sslserver; then
    make_leaf server "/CN=localhost" "$server_ext"
fi

if [[ $force -eq 1 ]] || ! leaf_ok client sslclient; then
    make_leaf client "/CN=tls-echod dev client" client
fi

# client_san_of NAME: the SANs NAME's certificate must have.
client_san_of() {
    printf '%s' "${client_san[$1]:-URI:spiffe://tls-echod.dev/$1}"
}

for name in ${clients[@]+"${clients[@]}"}; do
    san=$(client_san_of "$name")
    if [[ $force -eq 1 ]] || ! leaf_ok "$name" sslclient "$client_issuer" "$san"; then
        TLS_ECHOD_CLIENT_SAN=$san make_leaf "$name" "/CN=$name" client "$client_issuer"
    fi
    if [[ $client_issuer == int-ca ]]; then
        cat -- "$dir/$name.crt" "$dir/int-ca.crt" >"$work/$name-chain.crt"
        chmod 0644 "$work/$name-chain.crt"
        mv -f -- "$work/$name-chain.crt" "$dir/$name-chain.crt"
    fi
done

# --- revocations ------------------------------------------------------------

revoked=()
for name in ${revokes[@]+"${revokes[@]}"}; do
    [[ -s $dir/$name.crt ]] || die "--revoke $name: no $dir/$name.crt (make it with --client $name)"
    if [[ -s $dir/int-ca.crt ]] && issuer_is "$name" int-ca && int_ok; then
        issuer=int-ca
    elif issuer_is "$name" ca; then
        issuer=ca
    else
        die "--revoke $name: $name.crt was not issued by the current dev CA (or its intermediate)"
    fi
    db="$dir/$issuer.index"
    [[ -e $db ]] || : >"$db"
    serial=$(openssl x509 -in "$dir/$name.crt" -noout -serial)
    serial=${serial#serial=}
    # Revoking twice is an error for openssl ca: only do it once.
    if ! awk -F'\t' -v s="$serial" '$1 == "R" && toupper($4) == toupper(s) { f = 1 } END { exit !f }' "$db"; then
        TLS_ECHOD_CA_DB=$db ossl ca -config "$work/openssl.cnf" \
            -cert "$dir/$issuer.crt" -keyfile "$dir/$issuer.key" \
            -revoke "$dir/$name.crt"
    fi
    TLS_ECHOD_CA_DB=$db ossl ca -config "$work/openssl.cnf" \
        -cert "$dir/$issuer.crt" -keyfile "$dir/$issuer.key" \
        -gencrl -out "$work/$issuer.crl"
    chmod 0644 "$work/$issuer.crl"
    mv -f -- "$work/$issuer.crl" "$dir/$issuer.crl"
    revoked+=("$name.crt in $issuer.crl")
done

# Sanity check of the final state (with --days 1 a fresh leaf is valid for
# less than the one-day margin used above, so only require validity now).
min_valid=0
ca_ok || die "generated CA in $dir does not validate"
leaf_ok server sslserver || die "server certificate in $dir does not validate"
leaf_ok client sslclient || die "client certificate in $dir does not validate"
for name in ${clients[@]+"${clients[@]}"}; do
    leaf_ok "$name" sslclient "$client_issuer" "$(client_san_of "$name")" ||
        die "client certificate $name in $dir does not validate"
done

for r in ${revoked[@]+"${revoked[@]}"}; do
    echo "$prog: revoked $r"
done

if [[ ${#made[@]} -eq 0 ]]; then
    echo "dev certificates in $dir are present and valid"
    exit 0
fi

echo "$prog: generated $(key_alg_name) dev certificates in $dir:"
for base in "${made[@]}"; do
    subj=$(openssl x509 -in "$dir/$base.crt" -noout -subject -nameopt RFC2253)
    end=$(openssl x509 -in "$dir/$base.crt" -noout -enddate)
    printf '  %-24s %s, expires %s\n' "$base.crt $base.key" "${subj#subject=}" "${end#notAfter=}"
done

# Certificates left over from an earlier CA (e.g. other --client names after
# the CA was regenerated) no longer chain to it: point them out.
untrusted=()
[[ -s $dir/int-ca.crt ]] && int_ok && untrusted=(-untrusted "$dir/int-ca.crt")
for crt in "$dir"/*.crt; do
    [[ -e $crt ]] || continue
    if ! openssl verify ${untrusted[@]+"${untrusted[@]}"} -CAfile "$dir/ca.crt" "$crt" >/dev/null 2>&1; then
        echo "$prog: warning: $crt does not chain to the current dev CA (re-issue it with --client)" >&2
    fi
done
echo "For development only: never use these certificates in production."
