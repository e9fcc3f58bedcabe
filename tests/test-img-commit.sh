#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img commit` writes an overlay's own data (written by qemu-io:
# data, zero clusters over backing data, partial clusters) into its raw or
# qed backing file.  Afterwards the backing file reads what the overlay
# read (`qemu-img compare` against a flat copy taken before, and against
# what `qemu-img commit` makes of the same images), both pass `qemu-img
# check`, the overlay is empty (or, with -d, unchanged) and still reads
# the same.  Refusals change nothing.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

# setup BASEFMT: base.BASEFMT with data, and over.qed on it, written.
setup ()
{
    rm -f base.* over.qed
    qemu-img create -q -f $1 base.$1 4M
    qemu-io -f $1 -c 'write -P 0x11 0 2M' -c 'write -P 0x12 3M 512k' \
        base.$1 > /dev/null
    cowbd-img create -q -f qed -b base.$1 over.qed
    qemu-io -c 'write -P 0x21 64k 64k' -c 'write -P 0x22 1000k 10k' \
        -c 'write -z 1536k 128k' -c 'write -P 0x23 2560k 4k' \
        -c 'write -z 3M 64k' over.qed > /dev/null
    qemu-img convert -O raw over.qed expect.raw
}

for fmt in qed raw; do
    # What qemu-img commit makes of the same images.
    setup $fmt
    qemu-img commit -q over.qed
    cp base.$fmt qemu-base.$fmt

    setup $fmt
    cowbd-img commit over.qed > out.txt
    grep -qx 'Image committed.' out.txt || fail "$fmt: no 'Image committed.'"
    qemu_same -F raw base.$fmt expect.raw
    qemu_same base.$fmt qemu-base.$fmt
    [ $fmt = raw ] || qemu_check_clean base.$fmt
    qemu_check_clean over.qed
    qemu_same -F raw over.qed expect.raw
    [ "$(own_bytes over.qed)" -eq 0 ] || fail "$fmt: overlay not emptied"

    # -d: the overlay keeps its data.
    setup $fmt
    before=$(own_bytes over.qed)
    cowbd-img commit -q -d over.qed
    qemu_same -F raw base.$fmt expect.raw
    [ "$(own_bytes over.qed)" -eq "$before" ] || fail "$fmt: -d emptied"
    qemu_same -F raw over.qed expect.raw
    qemu_check_clean over.qed
done

# Three deep: the top goes into the middle only.
setup qed
cowbd-img create -q -b over.qed top.qed
qemu-io -c 'write -P 0x31 2M 64k' top.qed > /dev/null
qemu-img convert -O raw top.qed expect-top.raw
sum=$(sha256sum < base.qed)
cowbd-img commit -q top.qed
[ "$(sha256sum < base.qed)" = "$sum" ] || fail "commit reached the base"
qemu_same -F raw over.qed expect-top.raw
qemu_same -F raw top.qed expect-top.raw
qemu_check_clean over.qed

# An overlay larger than its backing file: zeros past the end are fine,
# data there is refused (the backing file cannot grow) and nothing
# changes.
qemu-img create -q -f qed small.qed 1M
qemu-io -c 'write -P 0x41 0 64k' small.qed > /dev/null
cowbd-img create -q -b small.qed big.qed 3M
qemu-io -c 'write -P 0x42 64k 64k' -c 'write -z 2M 64k' big.qed > /dev/null
qemu-img convert -O raw big.qed expect-big.raw
cowbd-img commit -q big.qed
qemu_same -F raw big.qed expect-big.raw
qemu-io -c 'write -P 0x43 2M 4k' big.qed > /dev/null
sum1=$(sha256sum < small.qed); sum2=$(sha256sum < big.qed)
expect_fail cowbd-img commit big.qed
one_line_error "$tmp/stderr"
grep -q 'past the end of the backing file' "$tmp/stderr" || fail "message"
[ "$(sha256sum < small.qed)" = "$sum1" ] || fail "refused commit: base changed"
[ "$(sha256sum < big.qed)" = "$sum2" ] || fail "refused commit: top changed"

# No backing file.
cowbd-img create -q -f qed alone.qed 1M
expect_fail cowbd-img commit alone.qed
one_line_error "$tmp/stderr"
expect_fail cowbd-img commit no-such.qed
one_line_error "$tmp/stderr"

# commit -b BASE: everything above BASE (top and intermediate images)
# goes into BASE, nothing is emptied (-b implies -d); the same as
# qemu-img commit -b on a copy of the chain, image by image.  A BASE not
# in the chain is refused by both, and nothing changes.
chain_b ()
{
    qemu-img create -q -f qcow2 cb-base.qcow2 4M
    qemu-io -c 'write -P 1 0 4M' cb-base.qcow2 > /dev/null
    qemu-img create -q -f qed -b cb-base.qcow2 -F qcow2 cb-mid.qed
    qemu-io -c 'write -P 2 1M 1M' cb-mid.qed > /dev/null
    qemu-img create -q -f qcow2 -b cb-mid.qed -F qed cb-top.qcow2
    qemu-io -c 'write -P 3 1536k 1M' -c 'write -z 3M 64k' cb-top.qcow2 \
        > /dev/null
    rm -rf q; mkdir q; cp cb-* q/
}
for base in cb-base.qcow2 cb-mid.qed; do
    chain_b
    qemu-img convert -O raw cb-top.qcow2 cb-expect.raw
    cowbd-img commit -q -b "$base" cb-top.qcow2 || fail "commit -b $base"
    (cd q && qemu-img commit -q -b "$base" cb-top.qcow2) ||
        fail "qemu-img commit -b $base"
    for f in cb-base.qcow2 cb-mid.qed cb-top.qcow2; do
        qemu_same "$f" "q/$f"
    done
    qemu_same cb-top.qcow2 cb-expect.raw
    qemu_same "$base" cb-expect.raw
    qemu_check_clean cb-top.qcow2
    qemu_check_clean cb-base.qcow2
done
sum=$(cat cb-* | sha256sum)
expect_fail cowbd-img commit -b nothere.qcow2 cb-top.qcow2
grep -q "Did not find 'nothere.qcow2' in the backing chain" "$tmp/stderr" ||
    fail "commit -b: unknown base message"
expect_fail cowbd-img commit -b cb-top.qcow2 cb-top.qcow2
[ "$(cat cb-* | sha256sum)" = "$sum" ] || fail "a refused commit -b wrote"
