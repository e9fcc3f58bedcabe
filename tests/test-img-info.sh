#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img info` says what `qemu-img info` says, in the same layout:
# JSON members (with and without --backing-chain) and human lines, on raw,
# qed and qcow2 images (with qcow2's format-specific information, version
# 2 and 3) with raw and qed backing files, in and out of subdirectories.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"
keys="virtual-size filename cluster-size format actual-size backing-filename
      full-backing-filename dirty-flag"

qemu-img create -q -f raw base.raw 3M
qemu-io -f raw -c 'write -P 1 0 64k' base.raw > /dev/null
qemu-img create -q -f qed base.qed 5M
qemu-io -f qed -c 'write -P 2 0 128k' base.qed > /dev/null
cowbd-img create -q -f qed -b base.raw -F raw over-raw.qed 8M
cowbd-img create -q -f qed -b base.qed over-qed.qed
mkdir sub
cowbd-img create -q -f qed -b ../over-qed.qed sub/top.qed
qemu-io -c 'write -P 3 64k 64k' sub/top.qed > /dev/null
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 4M
qemu-img create -q -f qcow2 -o lazy_refcounts=on,refcount_bits=8 v3.qcow2 4M
cowbd-img create -q -f qcow2 -b base.qed -F qed over-qed.qcow2

# The top-level member names of a JSON object, but the backing format
# (qemu-img shows it only when the image stores it; we also show a probed
# one).
members ()
{
    grep -o '^    "[a-z-]*"' "$1" | grep -vxF '    "backing-filename-format"'
}

for f in base.raw base.qed over-raw.qed over-qed.qed sub/top.qed \
         v2.qcow2 v3.qcow2 over-qed.qcow2; do
    cowbd-img info --output=json "$f" > ours.json
    qemu-img info --output=json "$f" > theirs.json
    json_same ours.json theirs.json $keys format-specific
    # The members come in qemu-img's order.
    diff <(members ours.json) <(members theirs.json) ||
        fail "$f: JSON members in another order"
    # Human output: the same lines (we also name a probed backing format).
    cowbd-img info "$f" | grep -v '^backing file format:' > ours.txt
    qemu-img info "$f" | grep -v '^backing file format:' > theirs.txt
    diff -u theirs.txt ours.txt || fail "$f: human output differs"
done

# A stored backing format is shown exactly as qemu-img shows it.
cowbd-img info over-raw.qed > ours.txt
qemu-img info over-raw.qed > theirs.txt
diff -u theirs.txt ours.txt || fail "over-raw.qed: human output differs"

# --backing-chain: a list in JSON, blank-line separated in human output.
cowbd-img info --backing-chain --output=json sub/top.qed > ours.json
qemu-img info --backing-chain --output=json sub/top.qed > theirs.json
/usr/bin/python3 - ours.json theirs.json $keys <<'PY' || fail "backing chain JSON"
import json, sys
ours, theirs = (json.load(open(f)) for f in sys.argv[1:3])
keys = sys.argv[3:]
assert isinstance(ours, list) and len(ours) == len(theirs) == 3, ours
for a, b in zip(ours, theirs):
    for k in keys:
        assert a.get(k) == b.get(k), (k, a.get(k), b.get(k))
PY
cowbd-img info --backing-chain sub/top.qed | grep -v '^backing file format:' > ours.txt
qemu-img info --backing-chain sub/top.qed | grep -v '^backing file format:' > theirs.txt
diff -u theirs.txt ours.txt || fail "--backing-chain human output differs"

# The format can be forced; a qed file read as raw is just bytes.
cowbd-img info -f raw --output=json base.qed > ours.json
[ "$(json_get ours.json format)" = raw ] || fail "-f raw"
expect_fail cowbd-img info -f qed base.raw
one_line_error "$tmp/stderr"
grep -q 'base.raw' "$tmp/stderr" || fail "error does not name the file"

# Usage errors.
rc=0; cowbd-img info --output=xml base.raw 2>/dev/null || rc=$?
[ "$rc" -eq 1 ] || fail "--output=xml: exit $rc"
expect_fail cowbd-img info no-such-file.qed
one_line_error "$tmp/stderr"
