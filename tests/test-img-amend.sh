#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img amend` against `qemu-img amend` on copies of one qcow2 image:
# lazy_refcounts on and off (then `qemu-img info` agrees field by field
# and, after writes with lazy refcounts on, `qemu-img check` is clean once
# they are off) and size (the images compare equal); compat as the
# image's own.  Refused with exit 1, image unchanged: creation-only
# options, a new backing file (qemu-img refuses it too), QED, lazy
# refcounts on compat=0.10, no -o; and changing compat, which is not
# done yet (qemu-img can).
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

unchanged ours.qcow2 compat=0.10
unchanged ours.qcow2 cluster_size=4k
unchanged ours.qcow2 lazy_refcounts=maybe
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
unchanged v2.qcow2 lazy_refcounts=on
expect_fail qemu-img amend -o lazy_refcounts=on v2.qcow2
qemu-img create -q -f qed x.qed 1M
unchanged x.qed lazy_refcounts=on
expect_fail cowbd-img amend ours.qcow2
