#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The bad input table, L2 rows: a QED image whose L1 table points at an L2
# table past the end of the file, misaligned, in the header or on the L1
# table itself.  `cowbd-img info` and `check` must each exit 1 with one
# line naming the file and the fault, and leave the file unchanged.
# The engine validates every L1 entry when it opens the image (qemu-img
# only finds them when a read or its check reaches them).
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
