#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Internal snapshots made by qemu-img are listed by `cowbd-img snapshot -l`
# and shown by `cowbd-img info` (human, JSON, --backing-chain) exactly as
# qemu-img shows them: names of any length, several snapshots, an image
# without any (nothing listed), an overlay with its own snapshots, and
# after qemu-img deletes one.  A missing snapshot is refused by -a and -d
# with exit 1, the image unchanged (test-img-snapshot.sh tests the
# changes themselves).  Without -l, -c, -a or -d it prints nothing, as qemu-img.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

# same CMD ARGS...: cowbd-img CMD and qemu-img CMD print the same, exit 0.
same ()
{
    cowbd-img "$@" > ours 2> ours.err || { cat ours.err >&2; fail "cowbd-img $*"; }
    qemu-img "$@" > theirs 2> theirs.err || { cat theirs.err >&2; fail "qemu-img $*"; }
    diff -u theirs ours >&2 || fail "$* differs"
}

qemu-img create -q -f qcow2 base.qcow2 4M
qemu-io -c 'write -P 1 0 1M' base.qcow2 > /dev/null
qemu-img snapshot -c first base.qcow2
qemu-io -c 'write -P 2 0 64k' base.qcow2 > /dev/null
qemu-img snapshot -c "a much longer snapshot tag than sixteen" base.qcow2
qemu-img snapshot -c third base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 over.qcow2
qemu-img snapshot -c mine over.qcow2
qemu-img create -q -f qcow2 none.qcow2 1M

for f in base.qcow2 over.qcow2 none.qcow2; do
    same snapshot -l "$f"
    same info "$f"
    same info --output=json "$f"
done
same info --backing-chain over.qcow2
same info --backing-chain --output=json over.qcow2
cowbd-img snapshot -l base.qcow2 | grep -q "a much longer snapshot tag" ||
    fail "the long tag is not listed"
qemu-img snapshot -d first base.qcow2
same snapshot -l base.qcow2
same info --output=json base.qcow2

sum=$(sha256sum < base.qcow2)
for op in -a -d; do
    expect_fail cowbd-img snapshot $op nosuch base.qcow2
done
expect_fail cowbd-img snapshot -l -c x base.qcow2
[ "$(sha256sum < base.qcow2)" = "$sum" ] || fail "a refused snapshot wrote"
same snapshot base.qcow2         # prints nothing, exit 0, as qemu-img
