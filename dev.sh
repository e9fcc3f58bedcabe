#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# One entry point for a fresh Debian 12 machine (as root, or with sudo):
#
#   ./dev.sh demo    install the build dependencies, build, make a base
#                    image and a clone of it, and serve the clone
#   ./dev.sh check   install the build dependencies, build, run the tests
#   ./dev.sh deps    only install the dependencies
#
# Extra arguments of `check` go to configure (e.g. --enable-sanitizers).
# BUILDDIR (default: build) is where configure and make run.
set -euo pipefail
cd "$(dirname "$0")"
top=$PWD

# Build dependencies, and the tools the tests use as oracles.
packages=(
    build-essential autoconf automake libtool pkg-config
    libev-dev libgnutls28-dev gnutls-bin libnbd-dev libnbd-bin python3-libnbd
    nbdkit nbdkit-plugin-dev qemu-utils zlib1g-dev libzstd-dev
    fio nbd-server util-linux procps strace
    jq iproute2 bc systemd bash-completion man-db
    libmicrohttpd-dev libsystemd-dev prometheus libjson-c-dev
)

deps ()
{
    local missing=() p sudo=
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

build ()
{
    local builddir=${BUILDDIR:-build}
    [ -x configure ] || ./autogen.sh
    mkdir -p "$builddir"
    cd "$builddir"
    if [ ! -f Makefile ] || [ "$top/configure" -nt Makefile ] || [ $# -gt 0 ]; then
        "$top/configure" --enable-werror "$@"
    fi
    make -j"$(nproc)"
}

case "${1:-}" in
    deps)
        deps ;;
    demo)
        shift
        deps
        (build)
        exec "$top/dev-demo.sh" "${BUILDDIR:-build}" ;;
    check)
        shift
        deps
        (build "$@")
        cd "${BUILDDIR:-build}"
        make -j"$(nproc)" check ;;
    *)
        sed -n '3,12s/^# \{0,1\}//p' "$0"
        exit 2 ;;
esac
