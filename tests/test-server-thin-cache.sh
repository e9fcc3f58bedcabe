#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Thin images through a metadata cache far smaller than their L2 tables,
# so that clean, mostly-zero tables are kept compact (formats/metacache.h).
# For a qcow2 and a QED image qemu-io wrote (4 KiB clusters, 128 L2
# tables of 4 KiB (qcow2) or 8 KiB (QED: qemu refuses table_size=1), one
# cluster in 64 with data, a few zero clusters),
# cowbd with a cache of 16 dense tables (--cache-size=64K or 128K):
#  - reads the image equal to qemu-img's own conversion, twice; the
#    second pass reads no table from the file again (the metrics' misses
#    stay put, nothing is evicted): every table was answered from memory,
#    most of them compact;
#  - takes writes (aligned, unaligned, zeroes) into those compact tables:
#    read back through cowbd, and after a clean stop, equal to the same
#    writes made by qemu-io on a copy (qemu-img compare), and qemu-img
#    check finds nothing wrong.
. "${srcdir:-.}/metrics-functions.sh"
requires nbdcopy --version
requires qemu-io --version
requires nbdsh --version

TABLES=128

# misses FILE / evictions FILE / hits FILE: export T's figures.
fig () { metric "$1" "cowbd_export_metadata_cache_$2_total{export=\"T\"}"; }

# Commands for qemu-io over SIZE bytes: one 4 KiB block of data every 64
# clusters (its place in the cluster varies), and a zero cluster every 256.
thin_commands ()
{
    local i
    for (( i = 0; i < SIZE / 262144; i++ )); do
        echo "write -q -P $(( i % 250 + 1 )) $(( i * 262144 + (i % 3) * 1024 )) 4096"
        (( i % 4 )) || echo "write -q -z $(( i * 262144 + 131072 )) 4096"
    done
}

# Writes spread over most tables, each compact by now: unaligned data,
# whole clusters, zeroes over data.
more_commands ()
{
    local i step=$(( SIZE / 100 ))
    for (( i = 0; i < 100; i++ )); do
        echo "write -q -P $(( 0x80 + i )) $(( i * step + 777 )) 5000"
        (( i % 5 )) || echo "write -q -z $(( i * step + 262144 )) 4096"
    done
    echo "write -q -P 0xee 131072 65536"
}

check_format ()
{
    local fmt=$1 img=$tmp/thin.$1 m1 m2 e2

    case "$fmt" in
        qcow2) SIZE=$(( 256 << 20 )) CACHE=64K
               qemu-img create -q -f qcow2 -o cluster_size=4096 "$img" $SIZE ;;
        qed) SIZE=$(( 512 << 20 )) CACHE=128K
             qemu-img create -q -f qed -o cluster_size=4096,table_size=2 \
                 "$img" $SIZE ;;
    esac
    thin_commands | qemu-io -f "$fmt" "$img" >/dev/null
    qemu-img convert -O raw "$img" "$tmp/ref.raw"

    start_metrics_server --cache-size=$CACHE "T=$img"
    hold_connection "$(uri T)"
    nbdcopy "$(uri T)" - | cmp "$tmp/ref.raw" - || fail "$fmt: pass 1 differs"
    scrape "$tmp/m1.txt"
    m1=$(fig "$tmp/m1.txt" misses)
    [ "$m1" -ge "$TABLES" ] && [ "$m1" -le $(( TABLES + 1 )) ] ||
        fail "$fmt: pass 1 read $m1 tables, not $TABLES"
    nbdcopy "$(uri T)" - | cmp "$tmp/ref.raw" - || fail "$fmt: pass 2 differs"
    scrape "$tmp/m2.txt"
    m2=$(fig "$tmp/m2.txt" misses)
    e2=$(fig "$tmp/m2.txt" evictions)
    [ "$m2" -eq "$m1" ] ||
        fail "$fmt: pass 2 read $(( m2 - m1 )) tables again"
    [ "$e2" -eq 0 ] || fail "$fmt: $e2 tables evicted"
    [ "$(fig "$tmp/m2.txt" hits)" -gt "$(fig "$tmp/m1.txt" hits)" ] ||
        fail "$fmt: pass 2 counted no hits"

    # The same writes through cowbd and, on a copy, by qemu-io.
    cp "$img" "$tmp/want.$fmt"
    more_commands | qemu-io -f "$fmt" "$tmp/want.$fmt" >/dev/null
    more_commands | qemu-io -f raw "$(uri T)" >/dev/null
    qemu-img convert -O raw "$tmp/want.$fmt" "$tmp/ref.raw"
    nbdcopy "$(uri T)" - | cmp "$tmp/ref.raw" - ||
        fail "$fmt: writes read back wrong"
    release_connection
    stop_server
    qemu-img check -q -f "$fmt" "$img" || fail "$fmt: qemu-img check"
    qemu-img compare -q -f "$fmt" -F "$fmt" "$img" "$tmp/want.$fmt" ||
        fail "$fmt: differs from qemu-io's writes"
    rm -f "$tmp"/*.raw
}

check_format qcow2
check_format qed
