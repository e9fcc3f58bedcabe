#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Sizes with a fraction ("1.5M", "0.5G", "1.5T"), as qemu-img takes them:
#  - create (raw, qcow2, qed), resize (absolute and +/-) and measure --size
#    give the sizes qemu-img gives for the same strings (qemu-img info and
#    measure are the oracle); convert -S takes one too;
#  - strings qemu-img refuses (no suffix, an exponent, a sign, junk,
#    too large) are refused with one line, and nothing is created or
#    resized.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

vsize () { json_get <(qemu-img info --output=json "$1") virtual-size; }

# --- create --------------------------------------------------------------------
for fmt in raw qcow2 qed; do
    for s in 1.5M 0.5G 1.5T 1.5k 0.1K 0.9999K 1.0001M 2.25G 0x100000 1. 1.K \
             00012K 0.000001G; do
        [ $fmt = raw ] || case $s in 1.5T) continue ;; esac
        qemu-img create -q -f $fmt q.$fmt "$s"
        cowbd-img create -q -f $fmt c.$fmt "$s"
        [ "$(vsize c.$fmt)" = "$(vsize q.$fmt)" ] ||
            fail "create -f $fmt '$s': $(vsize c.$fmt), qemu-img $(vsize q.$fmt)"
        [ $fmt = raw ] || qemu_check_clean c.$fmt
        rm -f q.$fmt c.$fmt
    done
done
# A 1.5 TiB qcow2 and qed (thin: nothing is written).
for fmt in qcow2 qed; do
    qemu-img create -q -f $fmt q.$fmt 1.5T
    cowbd-img create -q -f $fmt c.$fmt 1.5T
    [ "$(vsize c.$fmt)" = "$(vsize q.$fmt)" ] || fail "create $fmt 1.5T"
    qemu_check_clean c.$fmt
done

# --- resize --------------------------------------------------------------------
for fmt in raw qcow2; do
    qemu-img create -q -f $fmt q.$fmt 1M
    cowbd-img create -q -f $fmt c.$fmt 1M
    for s in +1.5M 2.5M +0.25G; do
        qemu-img resize -q -f $fmt q.$fmt "$s"
        cowbd-img resize -q -f $fmt c.$fmt "$s"
        [ "$(vsize c.$fmt)" = "$(vsize q.$fmt)" ] || fail "resize $fmt $s"
    done
    qemu-img resize -q -f $fmt --shrink q.$fmt -- -0.5M
    cowbd-img resize -q -f $fmt --shrink c.$fmt -0.5M
    [ "$(vsize c.$fmt)" = "$(vsize q.$fmt)" ] || fail "resize $fmt -0.5M"
done

# --- measure -----------------------------------------------------------------
for s in 1.5G 0.75T 10.5M; do
    qemu-img measure --output=json -O qcow2 --size "$s" > m.qemu
    cowbd-img measure --output=json -O qcow2 --size "$s" > m.ours
    json_same m.ours m.qemu required fully-allocated
done

# --- convert -S -------------------------------------------------------------------
qemu-img create -q -f raw src.raw 1M
qemu-io -f raw -c 'write -P 1 0 64k' -c 'write -P 0 64k 2k' \
    -c 'write -P 2 68k 4k' src.raw > /dev/null
cowbd-img convert -S 1.5k -O raw src.raw s.ours.raw
qemu-img convert -S 1.5k -O raw src.raw s.qemu.raw
cmp s.ours.raw s.qemu.raw || fail "convert -S 1.5k"

# --- refused -------------------------------------------------------------------
for s in 1.5 1.5b .5M 1e3 1.5e3K 1..5K 0x1.5K 1.5KiB 1.5X "1K " 8.5E 16E \
         99999999999999999999; do
    rc=0
    qemu-img create -q -f raw q.raw "$s" > /dev/null 2>&1 || rc=$?
    rm -f q.raw
    [ "$rc" -ne 0 ] || fail "qemu-img create accepts '$s'"
    rc=0
    cowbd-img create -q -f qcow2 bad.qcow2 "$s" 2> err.txt || rc=$?
    [ "$rc" -eq 1 ] || fail "create '$s': exit $rc"
    one_line_error err.txt
    [ ! -e bad.qcow2 ] || fail "create '$s' left a file"
done
# A negative size ("-1.5M" reads as an option to both, so -- first).
expect_fail cowbd-img create -q -f raw bad.raw -- -1.5M
[ ! -e bad.raw ] || fail "create -1.5M left a file"
# resize refuses the same strings and changes nothing.
cowbd-img create -q -f qcow2 keep.qcow2 1M
sum=$(sha256sum < keep.qcow2)
for s in +1.5 1.5e3K +1.5X; do
    expect_fail cowbd-img resize -q keep.qcow2 "$s"
    one_line_error "$tmp/stderr"
done
[ "$(sha256sum < keep.qcow2)" = "$sum" ] || fail "a refused resize changed it"
