#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The bad input table, L2 rows: a QED image whose L1 table points at an L2
# table past the end of the file, misaligned, in the header or on the L1
# table itself.  `cowbd-img info` and `check` must each exit 1 with one
# line naming the file and the fault, and leave the file unchanged.
# The engine validates every L1 entry when it opens the image (qemu-img
# only finds them when a read or its check reaches them).  Bad L2
# entries: exit codes as qemu-img's (see the end).
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"
make_bad_l2 "$tmp"

status=0
for f in l2-past-eof l2-misaligned l2-in-header l2-on-l1; do
    sum=$(sha256sum < $f.qed)
    for cmd in info check; do
        rc=0
        cowbd-img $cmd $f.qed > /dev/null 2> err.txt || rc=$?
        if [ "$rc" -ne 1 ] || [ "$(wc -l < err.txt)" -ne 1 ] ||
               ! grep -q "^cowbd-img: $f.qed: .*L2" err.txt; then
            echo "$cmd $f.qed: exit $rc, stderr: $(cat err.txt)"
            status=1
        fi
        if grep -q -e Sanitizer -e 'runtime error' err.txt; then
            fail "sanitizer report: $cmd $f.qed"
        fi
        [ "$(sha256sum < $f.qed)" = "$sum" ] || fail "$cmd changed $f.qed"
    done
done
[ "$status" -eq 0 ] || fail "some L2 faults are not refused at open"

# Bad L2 entries (data clusters past the end of the file, misaligned, on
# the L1 table), QED and qcow2: not seen at open (neither engine reads
# every L2 table then), so `info` exits as qemu-img info does, and
# `check` exits as qemu-img check does (2: corruptions) with the file
# unchanged.
qemu-img create -q -f qcow2 e-good.qcow2 16M
qemu-io -f qcow2 -c 'write -P 1 0 128k' e-good.qcow2 > /dev/null
cp l2-good.qed e-good.qed
/usr/bin/python3 - <<'PY'
import struct
for fmt, be in (("qed", False), ("qcow2", True)):
    good = open("e-good." + fmt, "rb").read()
    q = ">Q" if be else "<Q"
    l1 = struct.unpack(q, good[40:48])[0]
    mask = 0x00fffffffffffe00 if be else ~0
    flag = (1 << 63) if be else 0
    l2 = struct.unpack(q, good[l1:l1 + 8])[0] & mask
    data = struct.unpack(q, good[l2:l2 + 8])[0] & mask
    for name, entry in (("past-eof", 1 << 40), ("misaligned", data + 512),
                        ("on-l1", l1)):
        b = bytearray(good)
        b[l2:l2 + 8] = struct.pack(q, entry | flag)
        open("e-%s.%s" % (name, fmt), "wb").write(b)
PY
for fmt in qed qcow2; do
    for f in e-past-eof e-misaligned e-on-l1; do
        sum=$(sha256sum < $f.$fmt)
        for cmd in info check; do
            want=0
            qemu-img $cmd -f $fmt $f.$fmt > /dev/null 2>&1 || want=$?
            rc=0
            cowbd-img $cmd $f.$fmt > /dev/null 2> err.txt || rc=$?
            [ "$rc" -eq "$want" ] ||
                fail "$cmd $f.$fmt: exit $rc, qemu-img exits $want"
            if grep -q -e Sanitizer -e 'runtime error' err.txt; then
                fail "sanitizer report: $cmd $f.$fmt"
            fi
            [ "$(sha256sum < $f.$fmt)" = "$sum" ] || fail "$cmd changed $f.$fmt"
        done
    done
done
