#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A thin image's L2 tables are kept compact as soon as a read (or a
# block status) loads them, not only once the metadata cache is full
# (formats/metacache.h).  For a qcow2 and a QED image qemu-io wrote
# (192 GiB, 64 KiB clusters, 4 KiB of data every 512 MiB: 384 qcow2 L2
# tables of 64 KiB or 96 QED tables of 256 KiB, 24 MiB of tables either
# way, under cowbd's default 32 MiB cache), cowbd:
#  - reads 4 KiB in every table through NBD (nbdsh) equal to what qemu-io
#    wrote, and the cluster after it as zeros;
#  - has loaded every table once (the metrics' misses) and holds them in
#    under 1 MiB (cowbd_export_metadata_cache_bytes), and its peak RSS
#    grew by less than 12 MiB while it read them (dense, they take 24);
#  - after a restart, the same for block status over the whole image
#    (nbdinfo --map), whose data extents are the clusters qemu-io wrote;
#  - takes a write into a compact table, reads it back, and after a clean
#    stop qemu-img check finds nothing wrong.
. "${srcdir:-.}/metrics-functions.sh"
requires qemu-io --version
requires nbdsh --version
requires nbdinfo --version

SIZE=$(( 192 << 30 ))
STEP=$(( 512 << 20 ))
N=$(( SIZE / STEP ))
CS=65536

# fig FILE NAME: export T's figure NAME.
fig () { metric "$1" "cowbd_export_metadata_cache_$2{export=\"T\"}"; }

# The offset of write i: its cluster's place in the table varies.
where () { echo $(( $1 * STEP + ($1 * 7 % 8192) * CS )); }

# VmHWM or VmRSS of the server, in KiB.
vm () { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$server_pid/status"; }

# Checks the cache of export T after it loaded every table ($1: pass).
check_cache ()
{
    local what=$1 tables=$2 misses bytes
    scrape "$tmp/m.txt"
    misses=$(fig "$tmp/m.txt" misses_total)
    bytes=$(fig "$tmp/m.txt" bytes)
    echo "$fmt $what: $misses tables loaded, cache $bytes bytes"
    [ "$misses" -ge "$tables" ] ||
        fail "$fmt $what: $misses tables loaded, not $tables"
    [ "$bytes" -gt 0 ] && [ "$bytes" -lt $(( 1 << 20 )) ] ||
        fail "$fmt $what: the cache holds $bytes bytes for $tables tables"
}

check_format ()
{
    local fmt=$1 tables=$2 img=$tmp/thin.$1 i rss0 hwm data at

    qemu-img create -q -f "$fmt" -o cluster_size=$CS "$img" $SIZE
    for (( i = 0; i < N; i++ )); do
        echo "write -q -P $(( i % 250 + 1 )) $(where $i) 4096"
    done | qemu-io -f "$fmt" "$img" >/dev/null

    start_metrics_server "T=$img"
    hold_connection "$(uri T)"
    rss0=$(vm VmRSS)
    N=$N STEP=$STEP CS=$CS nbdsh -u "$(uri T)" -c '
import os
n, step, cs = (int (os.environ[k]) for k in ("N", "STEP", "CS"))
for i in range (n):
    off = i * step + (i * 7 % 8192) * cs
    assert h.pread (4096, off) == bytes ([i % 250 + 1]) * 4096, off
    assert h.pread (4096, off + cs) == bytes (4096), off + cs
' || fail "$fmt: reads differ"
    check_cache reads "$tables"
    hwm=$(vm VmHWM)
    echo "$fmt: RSS $rss0 KiB before the reads, peak $hwm KiB"
    [ $(( hwm - rss0 )) -lt $(( 12 << 10 )) ] ||
        fail "$fmt: RSS grew from $rss0 to $hwm KiB reading $tables tables"
    release_connection
    stop_server

    start_metrics_server "T=$img"
    hold_connection "$(uri T)"
    nbdinfo --map --totals "$(uri T)" >"$tmp/map.txt" ||
        fail "$fmt: nbdinfo --map"
    data=$(awk '$NF == "data" { print $1 }' "$tmp/map.txt")
    [ "$data" = $(( N * CS )) ] ||
        fail "$fmt: block status: ${data:-no} data bytes, not $(( N * CS ))"
    check_cache "block status" "$tables"

    # Over the end of a data cluster and into the next (a new cluster).
    at=$(( $(where 5) + CS - 4096 ))
    qemu-io -f raw -c "write -q -P 0xee $at 8192" "$(uri T)" >/dev/null ||
        fail "$fmt: write"
    qemu-io -f raw -c "read -q -P 0xee $at 8192" \
        -c "read -q -P 6 $(where 5) 4096" \
        -c "read -q -P 0 $(( at + 8192 )) 4096" "$(uri T)" >/dev/null ||
        fail "$fmt: the write reads back wrong"
    release_connection
    stop_server
    qemu-img check -q -f "$fmt" "$img" || fail "$fmt: qemu-img check"
    rm -f "$img"
}

check_format qcow2 $N
check_format qed $(( N / 4 ))
