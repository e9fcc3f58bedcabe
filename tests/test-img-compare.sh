#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img compare` says what `qemu-img compare` says (message and exit
# status) on the same pairs: identical images of different formats and
# chains, data against data, data against holes and zero clusters,
# different sizes with and without -s, and images that cannot be opened
# (exit 2).
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

# same_answer [OPTIONS] A B: both tools print the same and exit the same.
same_answer ()
{
    local qrc=0 rc=0
    qemu-img compare "$@" > theirs.txt 2>/dev/null || qrc=$?
    cowbd-img compare "$@" > ours.txt 2> err.txt || rc=$?
    [ "$rc" -eq "$qrc" ] || {
        cat ours.txt err.txt theirs.txt >&2
        fail "compare $*: exit $rc, qemu-img $qrc"
    }
    diff -u theirs.txt ours.txt || fail "compare $*: output differs"
    if grep -q -e Sanitizer -e 'runtime error' err.txt; then
        fail "sanitizer report: compare $*"
    fi
}

qemu-img create -q -f raw a.raw 4M
qemu-io -f raw -c 'write -P 1 0 1M' -c 'write -P 2 2M 64k' a.raw > /dev/null
cowbd-img convert -O qed a.raw a.qed
cowbd-img convert -O raw a.qed a2.raw
same_answer a.raw a.qed
same_answer a.qed a2.raw
same_answer -f raw -F qed a.raw a.qed

# An overlay reads the same as its flat copy.
cowbd-img create -q -b a.qed over.qed
qemu-io -c 'write -P 3 3M 4k' -c 'write -z 0 64k' over.qed > /dev/null
qemu-img convert -O raw over.qed over.raw
same_answer over.qed over.raw

# A byte changed in the data, in a hole, in a zero cluster.
for where in 1000 1048576 2097153 3145728 65536 4190000; do
    cp a.raw b.raw
    printf x | dd of=b.raw bs=1 seek=$where conv=notrunc status=none
    same_answer a.raw b.raw
    same_answer a.qed b.raw
    same_answer b.raw over.qed
done

# A zero cluster against data, and against a hole.
cowbd-img create -q -f qed z.qed 4M
qemu-io -c 'write -z 0 4M' z.qed > /dev/null
same_answer z.qed a.raw
cowbd-img create -q -f raw zero.raw 4M
same_answer z.qed zero.raw

# Different sizes: the extra part reads zeros, or does not.
qemu-img create -q -f raw long.raw 6M
qemu-io -f raw -c 'write -P 1 0 1M' -c 'write -P 2 2M 64k' long.raw > /dev/null
same_answer a.raw long.raw
same_answer long.raw a.qed
qemu-io -f raw -c 'write -P 9 5M 512' long.raw > /dev/null
same_answer a.raw long.raw
same_answer long.raw a.raw

# Strict mode: sizes, allocation.
same_answer -s a.raw long.raw
same_answer -s a.qed a.qed
same_answer -s z.qed zero.raw

# Quiet: nothing printed, same status.
rc=0; cowbd-img compare -q a.raw b.raw > out.txt || rc=$?
[ "$rc" -eq 1 ] && [ ! -s out.txt ] || fail "-q"

# Errors: 2, one line (a usage error too: 1 would mean "different").
rc=0; cowbd-img compare a.raw no-such.raw 2> err.txt || rc=$?
[ "$rc" -eq 2 ] || fail "missing file: exit $rc"
one_line_error err.txt
rc=0; cowbd-img compare -f qed a.raw a.qed 2> err.txt || rc=$?
[ "$rc" -eq 2 ] || fail "wrong format: exit $rc"
one_line_error err.txt
rc=0; cowbd-img compare a.raw 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "one file: exit $rc"

# Strict mode on allocation: an overlay against its flat copy and its
# base, an empty image against one with a zero cluster or written zeros
# (qemu-img reports the first run whose status differs, which for runs
# reaching the end of one image is where they start), and a raw hole.
qemu-img create -q -f qcow2 base.qcow2 4M
qemu-io -c 'write -P 1 0 2M' base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2
qemu-io -c 'write -P 1 1M 64k' ov.qcow2 > /dev/null
qemu-img convert -O qcow2 ov.qcow2 flat.qcow2
qemu-img create -q -f qcow2 e1.qcow2 4M
qemu-img create -q -f qcow2 e2.qcow2 4M
qemu-io -c 'write -z 1M 64k' e2.qcow2 > /dev/null
qemu-img create -q -f qcow2 e3.qcow2 4M
qemu-io -c 'write -P 0 1M 64k' e3.qcow2 > /dev/null
truncate -s 4M e.raw
for pair in "ov.qcow2 flat.qcow2" "flat.qcow2 ov.qcow2" "e1.qcow2 e2.qcow2" \
            "e1.qcow2 e3.qcow2" "e2.qcow2 e3.qcow2" "e3.qcow2 e2.qcow2" \
            "e1.qcow2 e.raw" "e3.qcow2 e.raw" "ov.qcow2 base.qcow2" \
            "e2.qcow2 e2.qcow2"; do
    same_answer -s $pair
    same_answer $pair
done
