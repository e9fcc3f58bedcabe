#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Writes that would land on metadata.  Crafted images whose tables point
# a data cluster at the image's own metadata: a qcow2 L2 entry at the L1
# table, at a refcount block and at the refcount table; a qcow2 L1 entry
# at the L1 table itself (the L1 used as an L2 table); a QED L2 entry at
# the L1 table and at another L2 table.  One 64 KiB write through cowbd
# each (for two of them a trim instead, which would free the cluster and
# punch a hole in the metadata): refused with EIO and one warning in the
# log; later writes are
# refused too (the image is marked corrupt: qcow2's corrupt bit, which
# qemu-img info shows); not a byte of the file changes but the header's
# feature bits; qemu-img check finds what it found before, no more.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/fault-functions.sh"

cd "$tmp"
uri="nbd+unix:///?socket=$tmp/sock"

# craft NAME FMT: NAME.FMT, 4 MiB, clusters at guest 0 and 1M written by
# qemu-io, then one table entry bent as NAME says.
craft ()
{
    local name=$1 fmt=$2
    qemu-img create -q -f $fmt $name.$fmt 4M
    qemu-io -f $fmt -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1M 64k' \
        $name.$fmt > /dev/null
    $PYTHON - $name $fmt <<'PY'
import struct, sys
name, fmt = sys.argv[1:]
kind = name[:-5] if name.endswith("-trim") else name
f = open(name + "." + fmt, "r+b")
h = f.read(128)
def rd(off, fmt_):
    f.seek(off); return struct.unpack(fmt_, f.read(struct.calcsize(fmt_)))[0]
def wr(off, fmt_, v):
    f.seek(off); f.write(struct.pack(fmt_, v))
if fmt == "qcow2":
    COPIED, MASK = 1 << 63, 0x00fffffffffffe00
    l1 = struct.unpack_from(">Q", h, 40)[0]
    rt = struct.unpack_from(">Q", h, 48)[0]
    rb = rd(rt, ">Q") & MASK
    l2 = rd(l1, ">Q") & MASK
    target = {"l2-at-l1": l1, "l2-at-refblock": rb, "l2-at-reftable": rt}
    if kind == "l1-at-l1":
        wr(l1, ">Q", l1 | COPIED)       # L1[0] names the L1 as its L2,
    else:                               # whose entry 0 is then L1[0]
        wr(l2, ">Q", target[kind] | COPIED)
else:
    l1 = struct.unpack_from("<Q", h, 40)[0]
    l2 = rd(l1, "<Q")
    l2b = rd(l1 + 8, "<Q") or l2
    target = {"qed-l2-at-l1": l1, "qed-l2-at-l2": l2b}
    wr(l2, "<Q", target[kind])
PY
}

# same_but_header ORIG NEW FMT: the files differ only in the header's
# feature bits (qcow2: incompatible features, bytes 72-79; QED: features,
# bytes 16-23).
same_but_header ()
{
    $PYTHON - "$@" <<'PY'
import sys
a, b, fmt = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read(), sys.argv[3]
lo, hi = (72, 80) if fmt == "qcow2" else (16, 24)
n = min(len(a), len(b))
diff = [i for i in range(n) if a[i] != b[i] and not lo <= i < hi]
if diff or any(a[n:]) or any(b[n:]):
    sys.exit("changed at %s" % [hex(i) for i in diff[:8]])
PY
}

check_counts ()
{
    qemu-img check --output=json -f $2 "$1" 2>/dev/null |
        $PYTHON -c 'import json,sys; j=json.load(sys.stdin); print(j.get("corruptions",0), j.get("leaks",0), j.get("check-errors",0))'
}

for case in l2-at-l1 l1-at-l1 l2-at-refblock l2-at-reftable l2-at-l1-trim \
            qed-l2-at-l1 qed-l2-at-l2 qed-l2-at-l2-trim; do
    fmt=qcow2
    [ "${case#qed-}" != "$case" ] && fmt=qed
    craft $case $fmt
    cp $case.$fmt orig.$fmt
    before=$(check_counts orig.$fmt $fmt)
    fault_cowbd -- -f $fmt "$tmp/$case.$fmt"
    op='write -P 0xcc 0 64k'
    [ "${case%-trim}" != "$case" ] && op='discard 0 64k'
    if qemu-io -f raw -c "$op" "$uri" > w1.out 2>&1 ||
       grep -q -e 'wrote' -e 'discarded' w1.out; then
        cat w1.out >&2
        fail "$case: the write on metadata was not refused"
    fi
    grep -q 'Input/output error' w1.out || fail "$case: not EIO: $(cat w1.out)"
    # Refused from now on, also where the write would be harmless.
    if qemu-io -f raw -c 'write -P 0xdd 2M 64k' "$uri" > w2.out 2>&1 ||
       grep -q 'wrote' w2.out; then
        fail "$case: a write after the refusal went through"
    fi
    # Reads go on.
    qemu-io -f raw -c 'read 1M 64k' "$uri" > r.out ||
        fail "$case: reads stopped"
    fault_stop
    [ "$(grep -c 'preventing a write on metadata' server.log)" -eq 1 ] ||
        { cat server.log >&2; fail "$case: not one warning in the log"; }
    same_but_header orig.$fmt $case.$fmt $fmt ||
        fail "$case: the file changed"
    [ "$(check_counts $case.$fmt $fmt)" = "$before" ] ||
        fail "$case: qemu-img check finds more than before"
    if [ $fmt = qcow2 ]; then
        qemu-img info --output=json $case.$fmt | grep -q '"corrupt": true' ||
            fail "$case: not marked corrupt"
    fi
    echo "$case: refused, $(grep -o 'lies in the [a-zA-Z0-9 ]*' server.log)"
done
