#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdcopy both ways with four connections (multi-conn): out of an export
# into a raw file that stays sparse, and into an export of a fresh
# overlay, which then holds the same bytes and passes qemu-img check.
. "${srcdir:-.}/server-functions.sh"
requires nbdcopy --version

cd "$tmp"
for fmt in $FORMATS; do
    make_image $fmt img.$fmt

    # Out: a sparse raw copy, holes skipped through block status.
    start_server -r "$tmp/img.$fmt"
    nbdcopy --connections=4 "$(uri)" out.raw
    stop_server
    qemu-img compare -q -f $fmt -F raw img.$fmt out.raw ||
        fail "$fmt: nbdcopy out differs"
    # make_image writes at most 4 MiB of data into 16 MiB.
    blocks=$(stat -c %b out.raw)
    [ $((blocks * 512)) -le $((6 * 1024 * 1024)) ] ||
        fail "$fmt: output is not sparse ($blocks blocks)"

    # In: into a fresh overlay (a fresh raw file for raw).
    if [ $fmt = raw ]; then
        qemu-img create -q -f raw fresh.raw 16M
    else
        qemu-img create -q -f raw base-fresh.raw 16M
        qemu-io -f raw -c 'write -P 0x99 0 16M' base-fresh.raw >/dev/null
        qemu-img create -q -f $fmt -b base-fresh.raw -F raw fresh.$fmt
    fi
    start_server "$tmp/fresh.$fmt"
    nbdcopy --connections=4 --flush out.raw "$(uri)"
    stop_server
    qemu-img compare -q -f raw -F $fmt out.raw fresh.$fmt ||
        fail "$fmt: nbdcopy in differs"
    [ $fmt = raw ] || qemu-img check -q -f $fmt fresh.$fmt
    rm -f out.raw fresh.$fmt base-fresh.raw
done
