#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cowbd-img on qcow2, against qemu-img on the same files:
#
#  - create: qcow2 is the default format, with lazy refcounts on; every
#    option lands in the header; preallocation modes pass qemu-img check;
#  - check and map: the JSON is the same as qemu-img's on images qemu made
#    (compressed, snapshots, zero clusters, a chain) and on ours; exit 3
#    with leaks, 2 with corruptions, and -r leaks / -r all repair them as
#    qemu-img check then confirms (a dirty image with lagging refcounts
#    included);
#  - convert to and from qcow2, compare, commit into a qcow2 backing file,
#    rebase (safe and -u) of a qcow2 overlay: the bytes qemu-img reads are
#    the ones expected, and every image passes qemu-img check.
. "${srcdir:-.}/functions.sh"
requires cowbd-img --version
requires qemu-img --version
requires qemu-io --version
requires /usr/bin/python3 --version

cd "$tmp"

# info_has FILE STRING: qemu-img info --output=json of FILE contains STRING
# (spaces removed).
info_has ()
{
    qemu-img info --output=json "$1" | tr -d ' \n' | grep -q -F "$2" ||
        fail "qemu-img info $1 does not say $2"
}

clean () { qemu-img check -q "$1" || fail "qemu-img check $1"; }

# same_json CMD FILE: cowbd-img CMD --output=json FILE = qemu-img's.
same_json ()
{
    cowbd-img $1 --output=json "$2" > ours.json || true
    qemu-img $1 --output=json "$2" > theirs.json || true
    diff -u theirs.json ours.json ||
        fail "cowbd-img $1 $2 differs from qemu-img"
}

# check_rc FILE [ARGS...]: cowbd-img check's exit status.
check_rc () { local f=$1 rc=0; shift; cowbd-img check -q "$@" "$f" || rc=$?; echo $rc; }

# patch FILE PYTHON: runs PYTHON with f (the file, r+b), u64/w64 at hand.
patch ()
{
    /usr/bin/python3 - "$1" <<EOF
import struct, sys
f = open(sys.argv[1], 'r+b')
def u64(o):
    f.seek(o); return struct.unpack('>Q', f.read(8))[0]
def w64(o, v):
    f.seek(o); f.write(struct.pack('>Q', v))
def w16(o, v):
    f.seek(o); f.write(struct.pack('>H', v))
cs = 1 << struct.unpack('>I', (f.seek(20), f.read(4))[1])[0]
def l2e(c):
    return (u64(u64(40) + 8 * (c // (cs // 8))) & 0x00fffffffffffe00) + 8 * (c % (cs // 8))
def rc16(h):
    return u64(u64(48) + 8 * (h // (cs // 2))) + 2 * (h % (cs // 2))
$2
EOF
}

# --- create ------------------------------------------------------------
cowbd-img create -q default.img 1G
info_has default.img '"format":"qcow2"'
info_has default.img '"lazy-refcounts":true'
info_has default.img '"compat":"1.1"'
clean default.img
cowbd-img create -q -f qcow2 \
    -o cluster_size=4K,lazy_refcounts=off,refcount_bits=8 opts.qcow2 64M
info_has opts.qcow2 '"cluster-size":4096'
info_has opts.qcow2 '"lazy-refcounts":false'
info_has opts.qcow2 '"refcount-bits":8'
cowbd-img create -q -f qcow2 -o compat=0.10 v2.qcow2 64M
info_has v2.qcow2 '"compat":"0.10"'
for p in metadata falloc full; do
    cowbd-img create -q -f qcow2 -o preallocation=$p pre-$p.qcow2 32M
    clean pre-$p.qcow2
    same_json check pre-$p.qcow2
    same_json map pre-$p.qcow2
done

# --- check and map against qemu-img on qemu's images and ours -----------
qemu-img create -q -f raw base.raw 16M
qemu-io -f raw -c 'write -P 0x11 0 16M' base.raw >/dev/null
qemu-img convert -c -O qcow2 base.raw comp.qcow2
qemu-img create -q -f qcow2 -b comp.qcow2 -F qcow2 chain.qcow2
qemu-io -c 'write -P 0x22 1M 3M' -c 'write -z 8M 1M' \
    -c 'write -z -u 10M 64K' chain.qcow2 >/dev/null
qemu-img snapshot -c s1 chain.qcow2
qemu-io -c 'write -P 0x33 2M 128K' chain.qcow2 >/dev/null
cowbd-img create -q -f qcow2 -b base.raw -F raw ours.qcow2
qemu-io -c 'write -P 0x44 100K 3M' -c 'write -z 6M 2M' ours.qcow2 >/dev/null
for f in comp.qcow2 chain.qcow2 ours.qcow2; do
    same_json check $f
    same_json map $f
done

# Leaks: exit 3, -r leaks repairs.
cp ours.qcow2 leak.qcow2
patch leak.qcow2 'w64(l2e(20), 0)'
[ "$(check_rc leak.qcow2)" = 3 ] || fail "a leak: check should exit 3"
same_json check leak.qcow2
[ "$(check_rc leak.qcow2 -r leaks)" = 0 ] || fail "check -r leaks"
clean leak.qcow2

# Corruption (COPIED missing): exit 2, -r all repairs.
cp ours.qcow2 bad.qcow2
patch bad.qcow2 'w64(l2e(3), u64(l2e(3)) & ~(1 << 63))'
[ "$(check_rc bad.qcow2)" = 2 ] || fail "a corruption: check should exit 2"
[ "$(check_rc bad.qcow2 -r leaks)" = 2 ] || fail "-r leaks fixed a corruption"
[ "$(check_rc bad.qcow2 -r all)" = 0 ] || fail "check -r all"
clean bad.qcow2

# A dirty image whose refcounts lag behind (lazy refcounts after a
# crash): the check reports, -r all rebuilds, and the data is kept.
cp ours.qcow2 dirty.qcow2
patch dirty.qcow2 '
w16(rc16((u64(l2e(5)) & 0x00fffffffffffe00) // cs), 0)
w64(72, u64(72) | 1)'
rc=$(check_rc dirty.qcow2)
[ "$rc" = 2 ] || fail "a dirty image with a lagging refcount: check exit $rc"
[ "$(check_rc dirty.qcow2 -r all)" = 0 ] || fail "check -r all on a dirty image"
clean dirty.qcow2
info_has dirty.qcow2 '"dirty-flag":false'
qemu-img compare -q dirty.qcow2 ours.qcow2 || fail "the repair changed the data"

# --- convert, compare, commit, rebase -------------------------------------
cowbd-img convert -O qcow2 chain.qcow2 flat.qcow2
clean flat.qcow2
qemu-img compare -q chain.qcow2 flat.qcow2 || fail "convert to qcow2 differs"
info_has flat.qcow2 '"format":"qcow2"'
cowbd-img convert -O raw comp.qcow2 comp.raw
cmp comp.raw base.raw || fail "convert of a compressed image differs"
cowbd-img compare -q chain.qcow2 flat.qcow2 || fail "compare: same images differ"
if cowbd-img compare -q ours.qcow2 base.raw; then
    fail "compare: different images are the same"
fi

# commit: the overlay's data into a qcow2 backing file.
cowbd-img create -q -f qcow2 -b base.raw -F raw mid.qcow2
qemu-io -c 'write -P 0x55 4M 1M' mid.qcow2 >/dev/null
cowbd-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
qemu-io -c 'write -P 0x66 5M 1M' -c 'write -P 0x77 100K 10K' \
    top.qcow2 >/dev/null
qemu-img convert -O raw top.qcow2 expected.raw
cowbd-img commit -q top.qcow2
clean mid.qcow2
clean top.qcow2
qemu-img compare -q -F raw mid.qcow2 expected.raw ||
    fail "commit: the base is wrong"
qemu-img compare -q -F raw top.qcow2 expected.raw ||
    fail "commit: the top reads wrong"

# rebase, safe: the content stays; -u: only the header changes.
qemu-img create -q -f raw other.raw 16M
qemu-io -f raw -c 'write -P 0x99 0 16M' other.raw >/dev/null
qemu-img convert -O raw ours.qcow2 before.raw
cp ours.qcow2 rb.qcow2
cowbd-img rebase -q -b other.raw -F raw rb.qcow2
clean rb.qcow2
info_has rb.qcow2 '"backing-filename":"other.raw"'
qemu-img compare -q -F raw rb.qcow2 before.raw ||
    fail "safe rebase changed the data"
cp ours.qcow2 rbu.qcow2
cowbd-img rebase -q -u -b other.raw -F raw rbu.qcow2
clean rbu.qcow2
info_has rbu.qcow2 '"backing-filename":"other.raw"'
qemu-io -r -c 'read -P 0x99 15M 64K' rbu.qcow2 > rbu.out
if grep -q -i -e fail -e mismatch rbu.out; then
    fail "unsafe rebase: the new backing file does not show through"
fi
