#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Resize time does not grow with the size (not a test: numbers to read).
# A 1 GiB qcow2 overlay (64 KiB clusters) over a 1 GiB base is grown to
# 1 TiB (its L1 table goes from 2 to 2048 entries: a new table at the
# end of the file) and, for comparison, to 2 GiB; QED likewise to 1 TiB
# (a header write).  Each is ROUNDS fresh overlays, median wall time of
# the whole `cowbd-img resize` process, against `qemu-img resize` in the
# same run; and, as the resize's own cost, that minus the median time of
# `TOOL info` on the same overlay (the same start, open and close: on
# this shared 2-core machine a process start alone takes 10-30 ms).  Images on tmpfs (/dev/shm), as bench/README.md explains;
# one more run on disk (DIR=/var/tmp) shows the cost of the syncs.
#
# Usage: bench/img-resize.sh   (COWBD_IMG=path/to/cowbd-img; ROUNDS=21)
set -euo pipefail

. "$(dirname "$0")/bench-lib.sh"
bench_img_tools
rounds=${ROUNDS:-21}

bench_workdir img-resize

now_ns () { date +%s%N; }

qemu-img create -q -f qcow2 base.qcow2 1G

# run TOOL FMT SIZE: median milliseconds of TOOL resize over fresh
# overlays, and of TOOL info on them.
run ()
{
    local tool=$1 fmt=$2 size=$3 t=() u=() i t0 t1 t2
    for i in $(seq "$rounds"); do
        qemu-img create -q -f "$fmt" -b base.qcow2 -F qcow2 ov.$fmt 1G
        t0=$(now_ns)
        "$tool" info ov.$fmt > /dev/null
        t1=$(now_ns)
        "$tool" resize -q ov.$fmt "$size"
        t2=$(now_ns)
        u+=($(( (t1 - t0) / 1000 )))
        t+=($(( (t2 - t1) / 1000 )))
    done
    awk -v t="$(median "${t[@]}")" -v u="$(median "${u[@]}")" \
        'BEGIN { printf "%8.2f %8.2f", t / 1000, (t - u) / 1000 }'
}

printf '%-6s %-5s %-24s %-24s\n' format size "cowbd-img: resize, own" \
    "qemu-img: resize, own"
for case in "qcow2 2G" "qcow2 1T" "qed 1T"; do
    set -- $case
    printf '%-6s %-5s %s ms   %s ms\n' "$1" "$2" \
        "$(run "$cowbd_img" "$1" "$2")" "$(run qemu-img "$1" "$2")"
done
echo "(median of $rounds in $dir; own: resize minus info, in ms)"
