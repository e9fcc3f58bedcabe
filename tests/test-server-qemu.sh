#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# QEMU as the client: qemu-io writes and reads patterns over nbd+unix on
# a named export, and qemu-img convert from the server gives the same
# bytes as the image read locally.
. "${srcdir:-.}/server-functions.sh"
requires qemu-io --version

# The local reference: cowbd-img when it exists, else qemu-img.
local_raw ()
{
    if cowbd-img --version >/dev/null 2>&1; then
        cowbd-img convert -O raw "$1" "$2"
    else
        qemu-img convert -O raw "$1" "$2"
    fi
}

for fmt in $FORMATS; do
    make_image $fmt img.$fmt
    start_server vm1="$tmp/img.$fmt"
    u="nbd+unix:///vm1?socket=$tmp/sock"
    qemu-io -f raw -c 'write -P 0xa5 100k 300k' -c 'write -P 0x5a 8M 64k' \
        -c 'write -z 15M 4k' "$u" > "$tmp/qemu-io.out"
    qemu-io -f raw -c 'read -P 0xa5 100k 300k' -c 'read -P 0x5a 8M 64k' \
        -c 'read -P 0 15M 4k' -c 'read -P 0x33 15732736 4k' \
        -c 'read -P 0x11 0 100k' "$u" > "$tmp/qemu-io.out"
    if grep -q -i -e fail -e error -e mismatch "$tmp/qemu-io.out"; then
        cat "$tmp/qemu-io.out"
        fail "$fmt: qemu-io pattern check"
    fi
    qemu-img convert -f raw -O raw "$u" "$tmp/remote.raw"
    stop_server
    local_raw "$tmp/img.$fmt" "$tmp/local.raw"
    cmp "$tmp/remote.raw" "$tmp/local.raw" ||
        fail "$fmt: qemu-img convert from the server differs from the image"
    [ $fmt = raw ] || qemu-img check -q -f $fmt "$tmp/img.$fmt"
    rm -f "$tmp/remote.raw" "$tmp/local.raw"
done
