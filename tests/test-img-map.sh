#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img map` agrees with `qemu-img map`: JSON (start, length, data,
# zero, depth, present of every entry, after both merge) and human output,
# on images mixing allocated data, zero clusters, ranges unallocated over
# a backing file, and ranges past the end of a smaller backing file, in
# chains of one to three images of raw and qed; and parts of them
# (--start-offset, --max-length).
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

# map_all FILE [FMT]: JSON and human maps agree with qemu-img's.
map_all ()
{
    map_same "$@"
    local fa=()
    [ $# -lt 2 ] || fa=(-f "$2")
    cowbd-img map "${fa[@]}" "$1" > ours.txt
    qemu-img map "${fa[@]}" "$1" > theirs.txt
    diff -u theirs.txt ours.txt || fail "human map of $1 differs"
}

# A raw base with data and holes, smaller than what sits on it.
qemu-img create -q -f raw base.raw 2M
qemu-io -f raw -c 'write -P 0x11 0 256k' -c 'write -P 0x12 1M 64k' \
    base.raw > /dev/null
map_all base.raw raw

# A qed base: data, zero clusters, a partial cluster, unallocated.
qemu-img create -q -f qed base.qed 3M
qemu-io -f qed -c 'write -P 0x21 0 128k' -c 'write -z 128k 128k' \
    -c 'write -P 0x22 1000k 10k' -c 'write -P 0x23 2M 64k' \
    -c 'write -z 2560k 64k' base.qed > /dev/null
map_all base.qed

# Overlays made by cowbd-img and written by qemu-io.  Each is larger than
# its backing file, so part of it lies past the backing file's end.
cowbd-img create -q -f qed -b base.raw -F raw o1.qed 4M
qemu-io -c 'write -P 0x31 64k 64k' -c 'write -z 192k 128k' \
    -c 'write -P 0x32 3M 4k' -c 'write -z 3584k 64k' o1.qed > /dev/null
map_all o1.qed

cowbd-img create -q -f qed -b base.qed o2.qed 5M
qemu-io -c 'write -P 0x41 128k 64k' -c 'write -z 0 64k' \
    -c 'write -P 0x42 4M 100k' o2.qed > /dev/null
map_all o2.qed

# Three deep: qed over qed over raw, with a bigger top.
cowbd-img create -q -f qed -b o1.qed -F qed o3.qed 6M
qemu-io -c 'write -P 0x51 1M 64k' -c 'write -z 3M 64k' \
    -c 'write -P 0x52 5M 64k' o3.qed > /dev/null
map_all o3.qed

# An overlay nothing was written to, and one made by qemu-img.
cowbd-img create -q -f qed -b o2.qed empty.qed
map_all empty.qed
qemu-img create -q -f qed -b base.qed -F qed q.qed 4M
qemu-io -c 'write -P 0x61 64k 8k' -c 'write -z 192k 64k' q.qed > /dev/null
map_all q.qed

# Small clusters, and a raw file made by cowbd-img (all holes).
cowbd-img create -q -f qed -o cluster_size=4k small.qed 1M
qemu-io -c 'write -P 1 0 4k' -c 'write -P 2 8k 12k' -c 'write -z 64k 64k' \
    small.qed > /dev/null
map_all small.qed
cowbd-img create -q -f raw holes.raw 1M
map_all holes.raw raw

# Preallocated images: every cluster mapped.  With metadata only, the
# clusters lie over a hole of the host file; qemu-img does not look under
# a QED cluster (its QED driver never asks the file layer) and says data,
# and so do we.
cowbd-img create -q -f qed -o preallocation=metadata pre.qed 1M
map_all pre.qed
cowbd-img create -q -f qed -o preallocation=full full.qed 1M
map_all full.qed

# --start-offset and --max-length: inside a run, across runs, unaligned,
# past the end and empty (qemu-img then prints one entry of length 0).
for range in "--start-offset=1M" "--start-offset=1500k --max-length=1M" \
             "--start-offset=100" "--max-length=1536k" "--max-length=0" \
             "--start-offset=20M" "--start-offset=4M" \
             "--start-offset=1M --max-length=100T"; do
    for f in base.qed o1.qed; do
        MAP_OPTS="$range" map_same "$f"
        cowbd-img map $range "$f" > ours.txt
        qemu-img map $range "$f" > theirs.txt
        diff -u theirs.txt ours.txt || fail "human map $range of $f differs"
    done
done
