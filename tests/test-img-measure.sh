#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img measure` gives qemu-img measure's figures, human and JSON,
# byte for byte: from --size and from images (qcow2 v3 and v2, an
# overlay, raw with holes, QED), for targets raw and qcow2 with
# cluster_size, refcount_bits, compat, preallocation and backing_file.
# QED, which qemu-img cannot measure, is checked against what
# cowbd-img convert and create then write: a QED copy of the image fits
# in "required", a fully preallocated one in "fully-allocated".
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

# same ARGS...: both outputs (human and JSON) identical, both exit 0.
same ()
{
    local out
    for out in human json; do
        cowbd-img measure --output=$out "$@" > ours 2>&1 ||
            { cat ours >&2; fail "cowbd-img measure $*"; }
        qemu-img measure --output=$out "$@" > theirs 2>&1 ||
            { cat theirs >&2; fail "qemu-img measure $*"; }
        diff -u theirs ours >&2 || fail "measure --output=$out $* differs"
    done
}

qemu-img create -q -f qcow2 a.qcow2 100M
qemu-io -c 'write 0 10M' -c 'write 50M 1M' -c 'write -z 60M 1M' \
    a.qcow2 > /dev/null
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 10M
qemu-io -c 'write 64k 3k' v2.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 over.qcow2
qemu-io -c 'write 80M 100k' over.qcow2 > /dev/null
truncate -s 64M holes.raw
qemu-io -f raw -c 'write 4k 4k' -c 'write 1M 3M' -c 'write 7M 100k' \
    holes.raw > /dev/null
qemu-img create -q -f qed q.qed 100M
qemu-io -c 'write 0 10M' -c 'write 99M 64k' q.qed > /dev/null

for size in 1G 1000001 100T 0; do
    same --size $size
    same --size $size -O qcow2
done
same --size 1G -O qcow2 -o cluster_size=4k,refcount_bits=1
same --size 1G -O qcow2 -o cluster_size=2M,compat=0.10
same --size 1G -O qcow2 -o preallocation=full
same --size 1G -O qcow2 -o preallocation=metadata
for o in cluster_size=64k cluster_size=512 cluster_size=1M compat=0.10 \
         preallocation=falloc backing_file=a.qcow2,backing_fmt=qcow2; do
    for f in a.qcow2 v2.qcow2 over.qcow2 q.qed; do
        same -O qcow2 -o "$o" "$f"
    done
    same -O qcow2 -o "$o" -f raw holes.raw
done
same -O raw over.qcow2
same -O raw -f raw holes.raw
same a.qcow2

# QED: ours only.  A copy fits in "required", a preallocated image in
# "fully-allocated".
cowbd-img measure -O qed --output=json q.qed > m.json
cowbd-img convert -O qed q.qed copy.qed
[ "$(stat -c %s copy.qed)" -le "$(json_get m.json required)" ] ||
    fail "QED copy ($(stat -c %s copy.qed)) > required"
cowbd-img measure -O qed --output=json --size 100M > m.json
cowbd-img create -q -f qed -o preallocation=full full.qed 100M
[ "$(stat -c %s full.qed)" -le "$(json_get m.json fully-allocated)" ] ||
    fail "preallocated QED ($(stat -c %s full.qed)) > fully-allocated"
[ "$(json_get m.json required)" -lt 1048576 ] ||
    fail "an empty QED image requires $(json_get m.json required)"

# Usage errors, as qemu-img's (exit 1).
expect_fail cowbd-img measure
expect_fail cowbd-img measure --size 1G a.qcow2
expect_fail cowbd-img measure --size 1G -O vmdk
expect_fail cowbd-img measure --size 1G -O qcow2 -o cluster_size=3000
