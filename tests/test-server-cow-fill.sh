#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The copy-on-write fill of new clusters (the rest of a 64 KiB cluster
# copied from the backing chain around a partial write, file to file in
# the kernel where it can be).  Partial writes at the start, middle and
# end of clusters, and across a cluster boundary, go through cowbd into a
# fresh overlay whose backing chain holds every kind of run: data of a
# qcow2 or QED middle image, its zero clusters over base data, its
# unallocated clusters over a sparse raw base (data, holes, data and
# holes in one cluster), a compressed cluster (qcow2), and the range past
# the base's end.  qemu-io makes the same writes into a twin overlay;
# qemu-img compare must find both the same, and qemu-img check clean.
. "${srcdir:-.}/server-functions.sh"
requires qemu-io --version

K=65536

# The sparse raw base: data and holes, some inside one cluster.
qemu-img create -q -f raw "$tmp/base.raw" 3M
qemu-io -f raw -c 'write -P 0x11 0 40k' -c 'write -P 0x12 100k 8k' \
    -c 'write -P 0x13 200k 1M' -c 'write -P 0x14 1500k 20k' \
    -c 'write -P 0x15 2M 1M' "$tmp/base.raw" >/dev/null

# The writes, one position per cluster (start, middle, end, both ends
# of a boundary), over clusters 0..47: the first 3 MiB of every kind of
# run, and past the base's end (the overlays are 4 MiB).
writes ()
{
    local k off
    for (( k=0; k<48; k++ )); do
        off=$(( k * K ))
        case $(( k % 4 )) in
            0) echo "write -P $(( 0x40 + k )) $off 4k" ;;
            1) echo "write -P $(( 0x40 + k )) $(( off + 28672 )) 4k" ;;
            2) echo "write -P $(( 0x40 + k )) $(( off + K - 4096 )) 4k" ;;
            3) echo "write -P $(( 0x40 + k )) $(( off + K - 2048 )) 4k" ;;
        esac
    done
    echo "write -P 0x99 $(( 60 * K + 512 )) 1536"
}
args=()
while read -r w; do args+=(-c "$w"); done < <(writes)

# The middle image (qcow2, QED): its own data, zero clusters over base
# data, a partial cluster filled from the base, unallocated clusters.
make_mid ()
{
    local mid=$1 mio
    rm -f "$tmp/mid.$mid"
    qemu-img create -q -f $mid -o cluster_size=$K -b base.raw -F raw \
        "$tmp/mid.$mid" 3M
    mio=(-c 'write -P 0x21 64k 64k' -c 'write -z 256k 64k'
         -c 'write -P 0x22 1028k 4k' -c 'write -P 0x23 2304k 128k'
         -c 'write -z 2560k 64k')
    [ $mid = qcow2 ] && mio+=(-c 'write -c -P 0x24 1536k 64k')
    qemu-io -f $mid "${mio[@]}" "$tmp/mid.$mid" >/dev/null
}

# check_fill FMT BACKING BFMT: the writes into a fresh FMT overlay of
# BACKING through cowbd and into its twin through qemu-io.
check_fill ()
{
    local fmt=$1 b=$2 bfmt=$3 what="$1 over $3" img n
    for img in top ref; do
        rm -f "$tmp/$img.$fmt"
        qemu-img create -q -f $fmt -o cluster_size=$K -b $b -F $bfmt \
            "$tmp/$img.$fmt" 4M
    done
    qemu-io -f $fmt "${args[@]}" "$tmp/ref.$fmt" >"$tmp/qemu-io.out"
    start_server "$tmp/top.$fmt"
    qemu-io -f raw "${args[@]}" "nbd+unix:///?socket=$tmp/sock" \
        >"$tmp/qemu-io.out"
    if grep -q -i -e fail -e error "$tmp/qemu-io.out"; then
        cat "$tmp/qemu-io.out"
        fail "$what: writes through cowbd"
    fi
    qemu-img compare -f raw -F $fmt "nbd+unix:///?socket=$tmp/sock" \
        "$tmp/ref.$fmt" ||
        fail "$what: cowbd reads differ from qemu's overlay"
    stop_server
    qemu-img compare -f $fmt -F $fmt "$tmp/top.$fmt" "$tmp/ref.$fmt" ||
        fail "$what: cowbd's overlay differs from qemu's"
    qemu-img check -q -f $fmt "$tmp/top.$fmt" || fail "$what: qemu-img check"
    # Every cluster written is the overlay's own: 0..48 (47's write ends
    # in 48) and 60.
    n=$(qemu-img map -f $fmt --output=json "$tmp/top.$fmt" |
        jq '[.[] | select(.depth == 0 and .data) | .length] | add')
    [ "$n" = $(( 50 * K )) ] ||
        fail "$what: $n bytes allocated in the overlay, expected $(( 50 * K ))"
}

# A QED overlay records no backing format but raw (cowbd will not
# follow a probed format with a backing file of its own).
check_fill qed base.raw raw
check_fill qcow2 base.raw raw
for mid in qcow2 qed; do
    make_mid $mid
    check_fill qcow2 mid.$mid $mid
done
