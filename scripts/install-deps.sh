#!/usr/bin/env bash
# Install the Debian packages tls-echod needs to build and test.
#
# usage: scripts/install-deps.sh [EXTRA_PACKAGE...]
#
# Idempotent and quick when nothing is missing: one dpkg-query, no apt.
# Otherwise runs `apt-get update` and installs only the missing packages
# (as root, or through sudo).  Extra package names given as arguments are
# installed the same way (scripts/install-deps.sh redis-server).
#
# Names exist on Debian 12 and 13 alike (no versioned names: clang's are the
# release's default clang).  mbedTLS: the release's libmbedtls-dev when apt
# offers 3.6 (Debian 13), which mk/mbedtls.mk then finds by pkg-config;
# otherwise (Debian 12: 2.28) nothing, and the build makes the bundled copy.
set -euo pipefail

readonly PROG=${0##*/}

packages=(
    build-essential pkg-config
    libconfig-dev libsystemd-dev check # libraries and the unit-test framework
    libseccomp-dev                     # the workers' system call filter (src/sandbox.c)
    openssl libssl-dev                 # test certificates, interop tests
    dpkg-dev bzip2 xz-utils debian-archive-keyring # scripts/build-mbedtls.sh (apt-get source)
    ca-certificates
    valgrind
    systemd # systemd-notify, systemd-analyze
    procps
    iproute2 # ss: check_metrics sees which processes hold the metrics socket
    python3
    redis-server redis-tools # relay tests: a real backend and client
    groff-base groff         # man page lint
    clang libclang-rt-dev    # fuzz drivers: clang and its libFuzzer/ASan runtime
    llvm                     # llvm-symbolizer: sanitizer reports name their functions,
                             # which fuzz/lsan.supp's suppressions match
    cppcheck shellcheck      # make lint (a stage of make check)
    # The metrics tests: promtool checks the exposition, a real server
    # scrapes the daemon (check_metrics, check-prometheus.sh).  About 95 MB
    # installed, in line with clang and valgrind above; on a host booted
    # with systemd the package also enables prometheus.service on :9090
    # (systemctl disable --now prometheus if unwanted), as redis-server
    # does for its own.
    prometheus
)

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

for arg in "$@"; do
    case $arg in
        -h|--help) printf 'usage: %s [EXTRA_PACKAGE...]\n' "$PROG"; exit 0 ;;
        -*) die "unknown option: $arg" ;;
        *) packages+=("$arg") ;;
    esac
done

# Packages dpkg knows as installed; unknown names make dpkg-query complain on
# stderr and exit 1, which only means they are missing.
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${packages[@]}" 2>/dev/null || true)

missing=()
for pkg in "${packages[@]}"; do
    name=${pkg%%:*} # tolerate an architecture qualifier (foo:amd64)
    if ! grep -qx "$name install ok installed" <<<"$installed"; then
        [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
    fi
done

# mbedtls_wanted: true if apt offers libmbedtls-dev 3.6 (from the lists it
# has) and it is not installed at 3.6 already.
mbedtls_wanted() {
    local installed_v candidate
    installed_v=$(dpkg-query -W -f='${Version}' libmbedtls-dev 2>/dev/null || true)
    [[ ${installed_v#*:} != 3.6.* ]] || return 1
    candidate=$(apt-cache policy libmbedtls-dev 2>/dev/null |
        sed -n 's/^[[:space:]]*Candidate:[[:space:]]*//p')
    [[ ${candidate#*:} == 3.6.* ]]
}
if mbedtls_wanted; then
    missing+=(libmbedtls-dev)
fi

if ((${#missing[@]} == 0)); then
    echo "$PROG: all build dependencies present"
    exit 0
fi

sudo=()
if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 ||
        die "need root or sudo to install: ${missing[*]}"
    sudo=(sudo)
fi

# apt's chatter goes to a log that is shown only when something fails.
log=$(mktemp "${TMPDIR:-/tmp}/install-deps.XXXXXX")
trap 'rm -f "$log"' EXIT
apt_get() {
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=600 -q "$@" >>"$log" 2>&1 || {
        cat "$log" >&2
        die "apt-get $1 failed (wanted: ${missing[*]})"
    }
}
apt_get update
# Only now does a fresh machine know what its release offers.
if [[ " ${missing[*]} " != *" libmbedtls-dev "* ]] && mbedtls_wanted; then
    missing+=(libmbedtls-dev)
fi
apt_get install -y --no-install-recommends "${missing[@]}"

echo "$PROG: installed ${missing[*]}"
