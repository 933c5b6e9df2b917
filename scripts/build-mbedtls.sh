#!/usr/bin/env bash
# Build mbedTLS 3.6 LTS as static libraries into a private prefix.
#
# usage: scripts/build-mbedtls.sh [--update] PREFIX_DIR
#
# Debian 12 ships mbedTLS 2.28 (end of life), which tls-echod must never use.
# The source comes from Debian 13 (trixie), a maintained 3.6 LTS package,
# fetched with `apt-get source` through a private apt setup under
# $(dirname PREFIX_DIR)/$(basename PREFIX_DIR).work/apt, so the machine's
# apt configuration and lists are left untouched.  Authenticity: apt checks
# trixie's InRelease against the Debian archive keyring, the Sources index
# against InRelease, and the downloaded files against Sources.
#
# The upstream tree (with Debian's patches) is built with its plain Makefile,
# without Debian's build dependencies, using scripts/mbedtls-user-config.h
# as MBEDTLS_USER_CONFIG_FILE.  Result in PREFIX_DIR:
#   include/{mbedtls,psa,everest}/   public headers
#   include/tls_echod_mbedtls_config.h   copy of the user config
#   lib/libmbedtls.a lib/libmbedx509.a lib/libmbedcrypto.a
#   VERSION   e.g. "3.6.6 (Debian 13 source package mbedtls 3.6.6-0.1~deb13u1)"
#   LICENSE   upstream licence text
#   .stamp    written last
#
# Without --update it is a no-op when PREFIX_DIR/.stamp is newer than the
# user config and this script; a rebuild reuses the source downloaded before
# (no network).  --update refreshes the private apt lists, fetches the
# current trixie source and rebuilds when its version or the config differs.
set -euo pipefail

readonly PROG=${0##*/}
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly SCRIPT_PATH="$SCRIPT_DIR/$PROG"
readonly USER_CONFIG="$SCRIPT_DIR/mbedtls-user-config.h"
# Name the user config gets inside the prefix and in -DMBEDTLS_USER_CONFIG_FILE
# (mk/mbedtls.mk uses the same name).
readonly CONFIG_NAME=tls_echod_mbedtls_config.h
readonly SUITE=trixie
# Bookworm's debian-archive-keyring carries the trixie keys from 2023.3+deb12u2.
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -e $KEYRING ]] || KEYRING=/usr/share/keyrings/debian-archive-keyring.pgp
readonly KEYRING
readonly HARDEN_CFLAGS="-O2 -fPIE -fstack-protector-strong -D_FORTIFY_SOURCE=3 -fstack-clash-protection -fcf-protection"

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$PROG" "$*" >&2; }
usage() { printf 'usage: %s [--update] PREFIX_DIR\n' "$PROG" >&2; exit 2; }

update=0
prefix=
while (($#)); do
    case $1 in
        --update) update=1 ;;
        -h|--help) usage ;;
        -*) note "unknown option: $1"; usage ;;
        *) [[ -z $prefix ]] || usage; prefix=$1 ;;
    esac
    shift
done
[[ -n $prefix ]] || usage
prefix=${prefix%/}
[[ -n $prefix ]] || die "refusing to use / as the prefix"
[[ -f $USER_CONFIG ]] || die "missing $USER_CONFIG"

# up_to_date: the prefix holds a finished build no older than its inputs.
up_to_date() {
    [[ -f $prefix/.stamp && -f $prefix/VERSION ]] &&
        [[ ! $USER_CONFIG -nt $prefix/.stamp && ! $SCRIPT_PATH -nt $prefix/.stamp ]]
}

if ((!update)) && up_to_date; then
    printf 'mbedTLS %s already built in %s\n' "$(cut -d' ' -f1 "$prefix/VERSION")" "$prefix"
    exit 0
fi

start=$SECONDS

# --- tools -------------------------------------------------------------------
missing=()
for tool in apt-get dpkg-source make ar nm bzip2 xz "${CC:-cc}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
((${#missing[@]} == 0)) ||
    die "missing tools: ${missing[*]} (run scripts/install-deps.sh)"
[[ -r $KEYRING ]] || die "missing $KEYRING (apt-get install debian-archive-keyring)"

mkdir -p -- "$(dirname -- "$prefix")"
prefix=$(cd -- "$(dirname -- "$prefix")" && pwd)/$(basename -- "$prefix")
readonly prefix
readonly work="$prefix.work"
readonly aptdir="$work/apt"

# --- private apt setup -------------------------------------------------------
# mirror_uri SUFFIX: the machine's first http(s) mirror URI ending in SUFFIX.
mirror_uri() {
    local suffix=$1 uri
    local -a uris
    if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
        while read -r -a uris; do
            for uri in "${uris[@]}"; do
                uri=${uri%/}
                if [[ $uri == http*://*"$suffix" ]]; then
                    printf '%s\n' "$uri"
                    return 0
                fi
            done
        done < <(sed -n 's/^[[:space:]]*URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources)
    fi
    if [[ -r /etc/apt/sources.list ]]; then
        # "deb [options] URI suite components": the first http(s) word.
        uri=$(sed -n 's/^[[:space:]]*deb\(-src\)\{0,1\}[[:space:]]//p' /etc/apt/sources.list |
            tr -s ' \t' '\n' | sed 's:/*$::' | grep -m1 -E "^https?://.*${suffix}\$" || true)
        if [[ -n $uri ]]; then
            printf '%s\n' "$uri"
            return 0
        fi
    fi
    return 1
}

main_uri=$(mirror_uri /debian) || {
    main_uri=http://deb.debian.org/debian
    note "no Debian mirror found in the apt sources; using $main_uri"
}
security_uri=$(mirror_uri /debian-security) || security_uri=

mkdir -p "$aptdir/sources.list.d" "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
{
    printf 'Types: deb-src\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: %s\n' \
        "$main_uri" "$SUITE" "$SUITE" "$KEYRING"
    if [[ -n $security_uri ]]; then
        printf '\nTypes: deb-src\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: %s\n' \
            "$security_uri" "$SUITE" "$KEYRING"
    fi
} >"$aptdir/sources.list.d/$SUITE-src.sources"

apt_opts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$aptdir/sources.list.d"
    -o "Dir::State::Lists=$aptdir/lists"
    -o "Dir::Cache=$aptdir/cache"
    -o "Acquire::Languages=none"
)
# As root apt downloads as the unprivileged _apt user, which cannot write into
# a build tree owned by root; download as root there instead of warning.
((EUID != 0)) || apt_opts+=(-o "APT::Sandbox::User=root")

# --- source ------------------------------------------------------------------
readonly dl="$work/source"
dsc=
if ((!update)); then
    dsc=$(find "$dl" -maxdepth 1 -name 'mbedtls_*.dsc' 2>/dev/null | head -n1 || true)
fi
if [[ -z $dsc ]]; then
    if ((update)) || ! compgen -G "$aptdir/lists/*_Sources*" >/dev/null; then
        note "updating private apt lists for $SUITE sources from $main_uri${security_uri:+ and $security_uri}"
        apt-get "${apt_opts[@]}" -q update >"$work/apt-update.log" 2>&1 || {
            cat "$work/apt-update.log" >&2
            if grep -qE 'NO_PUBKEY|not signed|EXPKEYSIG' "$work/apt-update.log"; then
                note "hint: $KEYRING lacks the $SUITE keys; upgrade debian-archive-keyring (>= 2023.3+deb12u2)"
            fi
            die "apt-get update (private $SUITE deb-src lists) failed"
        }
        if grep -q '^[WE]:' "$work/apt-update.log"; then
            grep '^[WE]:' "$work/apt-update.log" >&2
            die "apt-get update (private $SUITE deb-src lists) reported problems"
        fi
    fi
    rm -rf "$dl.new"
    mkdir -p "$dl.new"
    (cd "$dl.new" && apt-get "${apt_opts[@]}" -q source --download-only mbedtls) \
        >"$work/apt-source.log" 2>&1 || {
        cat "$work/apt-source.log" >&2
        die "apt-get source mbedtls ($SUITE) failed"
    }
    rm -rf "$dl"
    mv "$dl.new" "$dl"
    dsc=$(find "$dl" -maxdepth 1 -name 'mbedtls_*.dsc' | head -n1)
    [[ -n $dsc ]] || die "apt-get source left no mbedtls .dsc in $dl"
fi
deb_version=$(sed -n 's/^Version:[[:space:]]*//p' "$dsc" | head -n1)
[[ -n $deb_version ]] || die "no Version in $dsc"
case $deb_version in
    3.6.*) ;;
    *) die "Debian $SUITE offers mbedtls $deb_version, not 3.6 LTS; refusing" ;;
esac

if ((update)) && up_to_date &&
    grep -qF "(Debian 13 source package mbedtls $deb_version)" "$prefix/VERSION"; then
    printf 'mbedTLS %s in %s is up to date (Debian package %s)\n' \
        "$(cut -d' ' -f1 "$prefix/VERSION")" "$prefix" "$deb_version"
    exit 0
fi

# --- unpack ------------------------------------------------------------------
readonly tree="$work/tree"
rm -rf "$tree"
# dpkg-source cannot check the .dsc's own signature without the Debian
# developers' keyring; apt has already verified every file against the signed
# trixie index, so its warning about that goes to the log.
dpkg-source --no-copy -x "$dsc" "$tree" >"$work/dpkg-source.log" 2>&1 || {
    cat "$work/dpkg-source.log" >&2
    die "dpkg-source -x $dsc failed"
}
version=$(sed -n 's/^#define[[:space:]]\{1,\}MBEDTLS_VERSION_STRING[[:space:]]\{1,\}"\([^"]*\)".*/\1/p' \
    "$tree/include/mbedtls/build_info.h")
case $version in
    3.6.*) ;;
    *) die "source tree is mbedTLS '${version:-unknown}', not 3.6.x; refusing" ;;
esac
note "building mbedTLS $version (Debian $SUITE source package mbedtls $deb_version)"

# --- build -------------------------------------------------------------------
# The user config sits in the tree's include/ under the name it has in the
# prefix, so the library and its users include it by the same quoted name.
cp "$USER_CONFIG" "$tree/include/$CONFIG_NAME"
config_define="-DMBEDTLS_USER_CONFIG_FILE=\"$CONFIG_NAME\""
# make hands CFLAGS to the shell, so that copy carries shell quotes.
config_define_sh="'$config_define'"
# A clean environment for the sub-make: what an outer make exports (MAKEFLAGS,
# CFLAGS=-fsanitize=..., DEBUG=1, SHARED=1, ...) must not leak into the library.
env -i PATH="$PATH" TMPDIR="${TMPDIR:-/tmp}" \
    make -C "$tree/library" -j2 CC="${CC:-cc}" \
    CFLAGS="$HARDEN_CFLAGS $config_define_sh" \
    static >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log" >&2
    die "mbedTLS build failed (full log: $work/build.log)"
}

# --- stage and check ---------------------------------------------------------
readonly stage="$prefix.tmp"
rm -rf "$stage"
mkdir -p "$stage/include" "$stage/lib"
cp -R "$tree/include/mbedtls" "$tree/include/psa" "$stage/include/"
# mbedtls/ecdh.h includes "everest/everest.h" when Everest is enabled.
cp -R "$tree/3rdparty/everest/include/everest" "$stage/include/"
cp "$USER_CONFIG" "$stage/include/$CONFIG_NAME"
cp "$tree/library/libmbedtls.a" "$tree/library/libmbedx509.a" \
    "$tree/library/libmbedcrypto.a" "$stage/lib/"
cp "$tree/LICENSE" "$stage/LICENSE"

# What a user of the prefix sees must be what the library was built with.
probe=$(printf '#include <mbedtls/build_info.h>\n' |
    "${CC:-cc}" -E -dM -I"$stage/include" "$config_define" -x c - 2>&1) ||
    die "preprocessing the installed headers failed: $probe"
want=(TLS_ECHOD_MBEDTLS_USER_CONFIG MBEDTLS_SSL_PROTO_TLS1_2 MBEDTLS_SSL_PROTO_TLS1_3
    MBEDTLS_SSL_SESSION_TICKETS)
unwanted=(MBEDTLS_USE_PSA_CRYPTO MBEDTLS_PSA_P256M_DRIVER_ENABLED)
if grep -q '^#define MBEDTLS_ECDH_VARIANT_EVEREST_ENABLED' "$USER_CONFIG"; then
    want+=(MBEDTLS_ECDH_VARIANT_EVEREST_ENABLED)
    # (not piped into grep -q: with pipefail, nm's SIGPIPE would fail the check)
    symbols=$(nm -g --defined-only "$stage/lib/libmbedcrypto.a" 2>/dev/null) || symbols=
    grep -qw 'T mbedtls_everest_setup' <<<"$symbols" ||
        die "Everest is enabled but libmbedcrypto.a has no Everest objects"
fi
for macro in "${want[@]}"; do
    grep -q "^#define $macro\\b" <<<"$probe" || die "$macro is not defined in the built config"
done
for macro in "${unwanted[@]}"; do
    ! grep -q "^#define $macro\\b" <<<"$probe" || die "$macro is defined in the built config"
done

printf '%s (Debian 13 source package mbedtls %s)\n' "$version" "$deb_version" >"$stage/VERSION"
: >"$stage/.stamp"

# --- swap into place ---------------------------------------------------------
rm -rf "$prefix.old"
if [[ -e $prefix ]]; then
    mv "$prefix" "$prefix.old"
fi
mv "$stage" "$prefix"
rm -rf "$prefix.old" "$tree"

printf 'mbedTLS %s built in %s in %ds\n' "$version" "$prefix" "$((SECONDS - start))"
