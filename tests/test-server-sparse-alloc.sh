#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Small allocating writes write only what they must: where the rest of a
# new cluster reads as zeros (no backing data there) it stays a hole in
# the host file, and where it reads through to backing data that data is
# copied.  Either way the overlay reads back as qemu reads it, passes
# qemu-img check (QED: the file ends on a cluster boundary, or qemu
# refuses the last cluster), and its map agrees with qemu-img's.
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"
# 1 MiB of backing data under a 16 MiB overlay; 4K written into each of
# 64 clusters, 16 of them over the backing data.
qemu-img create -q -f raw base.raw 1M
qemu-io -f raw -c 'write -P 0x5a 0 1M' base.raw >/dev/null
cmds=()
for i in $(seq 0 63); do
    off=$(( (i < 16 ? i * 65536 : 1048576 + (i - 16) * 262144) + 8192 ))
    cmds+=(-c "write -P $((i + 1)) $off 4096")
done

for fmt in qed qcow2; do
    cowbd-img create -f $fmt -b base.raw -F raw ov.$fmt 16M >/dev/null
    cp base.raw expect.raw
    truncate -s 16M expect.raw
    start_server "$tmp/ov.$fmt"
    qemu-io -f raw "${cmds[@]}" "$(uri)" >/dev/null
    stop_server
    qemu-io -f raw "${cmds[@]}" expect.raw >/dev/null

    qemu-img check -q ov.$fmt || fail "$fmt: qemu-img check"
    qemu-img compare -q -f $fmt -F raw ov.$fmt expect.raw ||
        fail "$fmt: reads differ from the expected bytes"
    size=$(stat -c %s ov.$fmt)
    [ $((size % 65536)) -eq 0 ] || [ $fmt = qcow2 ] ||
        fail "$fmt: file size $size is not a whole number of clusters"
    # 16 clusters copy 60K of backing data each; the other 48 hold 4K
    # (and, for QED, one more block at the end of each).  Whole clusters
    # would take 4 MiB.
    used=$(( $(stat -c %b ov.$fmt) * 512 ))
    [ $used -lt $((2 * 1024 * 1024)) ] ||
        fail "$fmt: $used bytes used: the new clusters were filled with zeros"
    map_same ov.$fmt $fmt
    rm -f ov.$fmt expect.raw
done
