#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img amend` against `qemu-img amend` on copies of one qcow2 image:
# lazy_refcounts on and off (then `qemu-img info` agrees field by field
# and, after writes with lazy refcounts on, `qemu-img check` is clean once
# they are off) and size (the images compare equal); compat as the
# image's own, and changed both ways (1.1 -> 0.10 -> 1.1, over an
# overlay with a snapshot, with lazy refcounts, with a zstd compression
# type but no compressed cluster): info agrees field by field and the
# first 4 KiB of the files (header, extensions, backing name) are
# byte-identical to qemu-img's.  Refused with exit 1, image unchanged:
# creation-only options, a new backing file (qemu-img refuses it too),
# QED, lazy refcounts on compat=0.10, no -o; downgrades that qemu-img
# refuses too (refcount_bits=8, zstd-compressed clusters) with its
# message, extended L2 (not opened read-write here); an unknown level; zero clusters (qemu-img writes
# them out as data; we refuse: a documented difference).
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

# both OPTIONS: amends ours.qcow2 and theirs.qcow2 alike; their info
# (JSON, but for the file name and the disk usage) and content agree.
both ()
{
    cowbd-img amend -o "$1" ours.qcow2 || fail "cowbd-img amend -o $1"
    qemu-img amend -o "$1" theirs.qcow2 || fail "qemu-img amend -o $1"
    qemu-img info --output=json ours.qcow2 > ours.json
    qemu-img info --output=json theirs.qcow2 > theirs.json
    json_same ours.json theirs.json virtual-size cluster-size format \
        backing-filename backing-filename-format format-specific dirty-flag
    qemu_same ours.qcow2 theirs.qcow2
    qemu_check_clean ours.qcow2
}

# unchanged FILE OPTIONS: cowbd-img amend refuses and FILE stays as it was.
unchanged ()
{
    local sum
    sum=$(sha256sum < "$1")
    expect_fail cowbd-img amend -o "$2" "$1"
    [ "$(sha256sum < "$1")" = "$sum" ] || fail "a refused amend -o $2 wrote"
}

qemu-img create -q -f qcow2 base.qcow2 8M
qemu-io -c 'write -P 7 0 8M' base.qcow2 > /dev/null
qemu-img create -q -f qcow2 img.qcow2 4M
qemu-io -c 'write -P 1 0 1M' img.qcow2 > /dev/null
cp img.qcow2 ours.qcow2; cp img.qcow2 theirs.qcow2

both lazy_refcounts=on
# Writes through our engine with lazy refcounts on (counts deferred),
# then off: the counts on disk must be right.
qemu-io -c 'write -P 2 1M 1M' theirs.qcow2 > /dev/null
cowbd -U - ours.qcow2 --run \
    'nbdsh -u "$uri" -c "h.pwrite(b\"\\x02\" * 1048576, 1048576)"' ||
    fail "cowbd could not write the image"
both lazy_refcounts=off
both lazy_refcounts=off         # already off: nothing to do
unchanged ours.qcow2 backing_file=base.qcow2,backing_fmt=qcow2
expect_fail qemu-img amend -o backing_file=base.qcow2 theirs.qcow2
both size=6M
both compat=1.1                 # the image's own


# same_head: the first 4 KiB of ours.qcow2 and theirs.qcow2 are equal.
same_head ()
{
    cmp -n 4096 ours.qcow2 theirs.qcow2 || fail "the headers differ"
}

# compat_both OPTS: a new overlay (with a snapshot) made with OPTS, as
# ours.qcow2 and theirs.qcow2, downgraded and upgraded by both tools.
compat_both ()
{
    rm -f ours.qcow2 theirs.qcow2
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ${1:+-o "$1"} \
        ours.qcow2 8M
    qemu-io -c 'write -P 3 1M 1M' ours.qcow2 > /dev/null
    qemu-img snapshot -c snap ours.qcow2
    qemu-io -c 'write -P 4 1536k 1M' ours.qcow2 > /dev/null
    cp ours.qcow2 theirs.qcow2
    both compat=0.10
    same_head
    [ "$(qemu-img info --output=json ours.qcow2 |
         /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["format-specific"]["data"]["compat"])')" = 0.10 ] ||
        fail "compat=0.10 ($1): the image is not version 2"
    both compat=1.1
    same_head
}
compat_both ""
compat_both lazy_refcounts=on
compat_both compression_type=zstd
cp ours.qcow2 theirs.qcow2
both compat=v2
both compat=v3

# refused_both FILE OPTIONS: both refuse, ours with qemu-img's message,
# and FILE stays as it was.
refused_both ()
{
    cp "$1" theirs.qcow2
    qemu-img amend -o "$2" theirs.qcow2 2> theirs.err &&
        fail "qemu-img amend -o $2 $1 succeeded"
    unchanged "$1" "$2" 2> ours.err
    sed 's/^qemu-img: //' theirs.err > want.err
    grep -qFf want.err ours.err ||
        { cat theirs.err ours.err >&2; fail "amend -o $2: not qemu's message"; }
}
qemu-img create -q -f qcow2 -o refcount_bits=8 r8.qcow2 1M
refused_both r8.qcow2 compat=0.10
qemu-img create -q -f qcow2 -o extended_l2=on el2.qcow2 1M
unchanged el2.qcow2 compat=0.10     # the engine writes no extended L2
expect_fail qemu-img amend -o compat=0.10 el2.qcow2
truncate -s 1M z.raw
qemu-io -f raw -c 'write -P 9 0 64k' z.raw > /dev/null
qemu-img convert -c -f raw -O qcow2 -o compression_type=zstd z.raw zstd.qcow2
refused_both zstd.qcow2 compat=0.10
refused_both zstd.qcow2 compat=2
qemu-img create -q -f qcow2 zero.qcow2 1M
qemu-io -c 'write -z 0 64k' zero.qcow2 > /dev/null
unchanged zero.qcow2 compat=0.10
unchanged ours.qcow2 cluster_size=4k
unchanged ours.qcow2 lazy_refcounts=maybe
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
unchanged v2.qcow2 lazy_refcounts=on
expect_fail qemu-img amend -o lazy_refcounts=on v2.qcow2
refused_both v2.qcow2 compat=0.10,lazy_refcounts=on
qemu-img create -q -f qed x.qed 1M
unchanged x.qed lazy_refcounts=on
expect_fail cowbd-img amend ours.qcow2
