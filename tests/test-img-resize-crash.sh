#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img resize` killed (SIGKILL) at random moments, 60 rounds over
# qcow2 (grow past the L1 table, shrink), a qcow2 overlay grown over its
# longer backing file (zero clusters first) and QED likewise: afterwards
# cowbd opens the image read-write (repairing what the crash left) and
# serves it with the old size or the new one, `qemu-img check` finds it
# clean, and the data written before reads back.  COWBD_TEST_PAUSE makes
# each resize pause between its steps so that kills land inside it too.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

qemu-img create -q -f qcow2 base.qcow2 64M
qemu-io -c 'write -P 0x11 0 64M' base.qcow2 > /dev/null

# fresh KIND ROUND: img (a fresh image of that kind), args and label (see
# kill_rounds).
fresh ()
{
    label=$1
    case $1 in
        grow)
            qemu-img create -q -f qcow2 -o cluster_size=4096 img 1M
            args=(img 4G) ;;
        shrink)
            qemu-img create -q -f qcow2 -o cluster_size=4096 img 8M
            qemu-io -c 'write -P 0x33 4M 4M' img > /dev/null
            args=(--shrink img 1M) ;;
        overlay)
            qemu-img create -q -f qcow2 -o cluster_size=4096 \
                -b base.qcow2 -F qcow2 img 1M
            args=(img 32M) ;;
        qed)
            qemu-img create -q -f qed -b base.qcow2 -F qcow2 img 1M
            args=(img 32M) ;;
    esac
    qemu-io -c 'write -P 0x22 0 512k' img > /dev/null
}

# sizes KIND: the sizes the image may have afterwards.
sizes ()
{
    case $1 in
        grow) echo "1048576 4294967296" ;;
        shrink) echo "8388608 1048576" ;;
        *) echo "1048576 33554432" ;;
    esac
}

# judge KIND: the side of the size change img is on; the data written
# before reads back, and the part a grown overlay gained reads zeros.
judge ()
{
    local old new size
    read -r old new <<< "$(sizes "$1")"
    size=$(cat size)
    case $size in
        "$old") side=old ;;
        "$new") side=new ;;
        *) fail "round $round ($1): size $size is neither $old nor $new" ;;
    esac
    qemu-io -c 'read -P 0x22 0 512k' img > /dev/null ||
        fail "round $round ($1): the data written before is lost"
    if [ "$1" = overlay ] || [ "$1" = qed ]; then
        [ "$side" = old ] ||
            qemu-io -c "read -P 0 1M 31M" img > /dev/null ||
            fail "round $round ($1): the new part reads the backing file"
    fi
}

kinds=(grow shrink overlay qed)
kill_rounds 60 cowbd-img resize -q
