#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img convert`'s options against qemu-img convert's, on the same
# inputs (made by qemu-img and qemu-io):
#  - -B BACKING -F FMT: both outputs read what the source reads (qemu-img
#    compare), are clean (qemu-img check) and name BACKING; ours
#    allocates exactly the clusters where the source differs from
#    BACKING (computed here from qemu-img's raw conversions), which is
#    never more than qemu-img's own -B output allocates;
#  - -S 0, 4k, 64k (and 1.5k): same content, clean, and the same
#    allocation as qemu-img's output (raw: qemu-img map equal; qcow2: the
#    same clusters allocated; -S 0: everything);
#  - -n with and without --target-is-zero, into a target made by
#    qemu-img: the same content as qemu-img's;
#  - -W and -m 1, 4, 16: the same image as qemu-img's;
#  - refusals qemu-img makes too exit 1 with one line and create nothing.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

# allocated FILE: the byte ranges qemu-img map finds allocated in FILE
# itself (present at depth 0: data or zero clusters), merged, as
# "start-end" lines.
allocated ()
{
    qemu-img map --output=json "$@" | /usr/bin/python3 -c '
import json, sys
runs = []
for e in json.load(sys.stdin):
    if not e["present"] or e.get("depth", 0) != 0:
        continue
    if runs and runs[-1][1] == e["start"]:
        runs[-1][1] += e["length"]
    else:
        runs.append([e["start"], e["start"] + e["length"]])
for a, b in runs:
    print("%d-%d" % (a, b))'
}

# same_allocation A B: qemu-img map finds data in the same places.
same_allocation ()
{
    allocated "$1" > "$1.alloc"
    allocated "$2" > "$2.alloc"
    diff "$1.alloc" "$2.alloc" >&2 || fail "$1 and $2 allocate differently"
}

# --- sources ------------------------------------------------------------------
qemu-img create -q -f qcow2 base.qcow2 8M
qemu-io -c 'write -P 1 0 4M' -c 'write -P 2 6M 1M' base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 10M
# New data, zeros over the base's data, the base's own bytes rewritten,
# data where the base has none, zeros where it has none, past its end.
qemu-io -c 'write -P 3 1M 64k' -c 'write -z 2M 128k' -c 'write -P 1 3M 64k' \
    -c 'write -P 9 7M 4k' -c 'write -z 5M 64k' -c 'write -P 4 9M 100k' \
    top.qcow2 > /dev/null
# A raw source: data, zero runs of 8k, 2k and 64k inside it, a hole, a
# partial cluster of data.
qemu-img create -q -f raw mixed.raw 8M
qemu-io -f raw -c 'write -P 1 0 1M' -c 'write -P 0 64k 8k' \
    -c 'write -P 0 200k 2k' -c 'write -P 0 300k 64k' \
    -c 'write -P 5 5M 100k' mixed.raw > /dev/null

# --- -B -----------------------------------------------------------------------
# diff_clusters SRC BASE: the 64 KiB clusters where SRC and BASE read
# differently (and where ours must hold data or a zero cluster), merged into "start-end" lines (qemu-img does the reading).
diff_clusters ()
{
    qemu-img convert -O raw "$1" diff.src.raw
    qemu-img convert -O raw "$2" diff.base.raw
    /usr/bin/python3 - diff.src.raw diff.base.raw <<'PY'
import sys
a, b = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
b = b[:len(a)] + bytes(max(0, len(a) - len(b)))
runs, cs = [], 65536
for off in range(0, len(a), cs):
    if a[off:off + cs] != b[off:off + cs]:
        if runs and runs[-1][1] == off:
            runs[-1][1] += cs
        else:
            runs.append([off, off + cs])
for s, e in runs:
    print("%d-%d" % (s, e))
PY
}

for src in top.qcow2 mixed.raw; do
    cowbd-img convert -B base.qcow2 -F qcow2 -O qcow2 $src $src.B.ours
    qemu-img convert -B base.qcow2 -F qcow2 -O qcow2 $src $src.B.qemu
    for out in $src.B.ours $src.B.qemu; do
        qemu_check_clean $out
        qemu_same $src $out
        [ "$(json_get <(qemu-img info --output=json $out) backing-filename)" \
            = base.qcow2 ] || fail "$out: backing file"
    done
    diff_clusters $src base.qcow2 > $src.expected
    allocated $src.B.ours > $src.B.ours.alloc
    diff $src.expected $src.B.ours.alloc >&2 ||
        fail "$src -B: allocated clusters are not those that differ"
    # Never more than qemu-img: every cluster ours holds, qemu-img's does.
    allocated $src.B.qemu > $src.B.qemu.alloc
    /usr/bin/python3 - $src.B.ours.alloc $src.B.qemu.alloc <<'PY' ||
import sys
def runs(f):
    return [tuple(map(int, l.split("-"))) for l in open(f) if l.strip()]
theirs = runs(sys.argv[2])
for a, b in runs(sys.argv[1]):
    assert any(x <= a and b <= y for x, y in theirs), (a, b, theirs)
PY
        fail "$src -B: ours allocates where qemu-img's does not"
done
# qemu-img's -B copies the 3M cluster it rewrote with the base's bytes;
# ours does not (that is the documented difference).
grep -q '^3145728-' top.qcow2.B.qemu.alloc || fail "qemu-img changed?"
! grep -q '^3145728-' top.qcow2.B.ours.alloc || fail "-B wrote equal data"

# -o backing_file,backing_fmt is -B and -F.
cowbd-img convert -o backing_file=base.qcow2,backing_fmt=qcow2 -O qcow2 \
    top.qcow2 top.o.qcow2
qemu_same top.qcow2 top.o.qcow2
allocated top.o.qcow2 | diff top.qcow2.expected - >&2 ||
    fail "-o backing_file is not -B"
# -B into qed.
cowbd-img convert -B base.qcow2 -F qcow2 -O qed top.qcow2 top.B.qed
qemu_check_clean top.B.qed
qemu_same top.qcow2 top.B.qed

# --- -S -----------------------------------------------------------------------
for S in 0 4k 64k 1.5k; do
    for fmt in raw qcow2; do
        cowbd-img convert -S $S -O $fmt mixed.raw S$S.ours.$fmt
        qemu-img convert -S $S -O $fmt mixed.raw S$S.qemu.$fmt
        [ $fmt = raw ] || qemu_check_clean S$S.ours.$fmt
        qemu_same mixed.raw S$S.ours.$fmt
        qemu_same S$S.qemu.$fmt S$S.ours.$fmt
        same_allocation S$S.ours.$fmt S$S.qemu.$fmt
    done
    # A raw target: qemu-img map (which reads the holes of the file)
    # shows the same layout, zeros included.
    qemu-img map --output=json S$S.ours.raw > S$S.ours.map
    qemu-img map --output=json S$S.qemu.raw > S$S.qemu.map
    cmp S$S.ours.map S$S.qemu.map || fail "-S $S: raw layouts differ"
done
# -S 0 allocates everything; the default leaves the 64k zero run at 300k
# in a hole of the raw target when -S allows it (4k) and not with 64k
# (qemu-img's alignment: the run is not 64k-aligned).
[ "$(cat S0.ours.qcow2.alloc)" = "0-8388608" ] || fail "-S 0: not full"

# --- -n and --target-is-zero ------------------------------------------------
# (target_of TOOL ARGS...: a fresh qcow2 made by qemu-img, garbage or not)
for tool in cowbd-img qemu-img; do
    qemu-img create -q -f qcow2 n.$tool.qcow2 10M
    qemu-io -c 'write -P 0xee 0 10M' n.$tool.qcow2 > /dev/null
    $tool convert -n -O qcow2 top.qcow2 n.$tool.qcow2
    qemu_same top.qcow2 n.$tool.qcow2
    qemu_check_clean n.$tool.qcow2
    qemu-img create -q -f qcow2 z.$tool.qcow2 10M
    $tool convert -n --target-is-zero -O qcow2 top.qcow2 z.$tool.qcow2
    qemu_same top.qcow2 z.$tool.qcow2
    qemu_check_clean z.$tool.qcow2
    # Into garbage, --target-is-zero leaves what the source's zeros do
    # not overwrite: both tools leave the same bytes.
    qemu-img create -q -f raw g.$tool.raw 8M
    qemu-io -f raw -c 'write -P 0xee 0 8M' g.$tool.raw > /dev/null
    $tool convert -n --target-is-zero -O raw mixed.raw g.$tool.raw
done
same_allocation z.cowbd-img.qcow2 z.qemu-img.qcow2
cmp g.cowbd-img.raw g.qemu-img.raw || fail "--target-is-zero: differs"
! qemu-img compare -q mixed.raw g.cowbd-img.raw ||
    fail "--target-is-zero wrote zeros"

# --- -W and -m ----------------------------------------------------------------
qemu-img convert -O qcow2 top.qcow2 flat.qemu.qcow2
for m in 1 4 16; do
    for w in "" -W; do
        cowbd-img convert -m $m $w -O qcow2 top.qcow2 m$m$w.qcow2
        qemu_check_clean m$m$w.qcow2
        qemu_same flat.qemu.qcow2 m$m$w.qcow2
        same_allocation m$m$w.qcow2 flat.qemu.qcow2
        cowbd-img convert -m $m $w -O raw top.qcow2 m$m$w.raw
        qemu-img convert -m $m $w -O raw top.qcow2 m$m$w.qemu.raw
        cmp m$m$w.raw m$m$w.qemu.raw || fail "-m $m $w: raw differs"
    done
done
# -t and -T take qemu-img's cache modes.
cowbd-img convert -t none -T writeback -O qcow2 top.qcow2 cache.qcow2
qemu_same top.qcow2 cache.qcow2

# --- refusals -----------------------------------------------------------------
# refused ARGS...: qemu-img refuses them too; cowbd-img exits 1 with one
# line and leaves no out.img.
refused ()
{
    local rc=0
    qemu-img convert "$@" top.qcow2 q-out.img > /dev/null 2>&1 || rc=$?
    rm -f q-out.img
    [ "$rc" -ne 0 ] || fail "qemu-img accepts $*"
    rc=0
    cowbd-img convert "$@" top.qcow2 out.img 2> err.txt || rc=$?
    [ "$rc" -eq 1 ] || fail "cowbd-img convert $*: exit $rc, not 1"
    one_line_error err.txt
    [ ! -e out.img ] || fail "cowbd-img convert $*: left out.img"
}
refused --target-is-zero -O qcow2
refused -B base.qcow2 -F qcow2 -O raw
refused -B base.qcow2 -O qcow2
refused -F qcow2 -O qcow2
refused -B mixed.raw -F qcow2 -O qcow2
refused -B no-such.qcow2 -F qcow2 -O qcow2
refused -S 100 -O raw
refused -S 32M -O raw
refused -S -4k -O raw
refused -S 1.5 -O raw
refused -m 0 -O raw
refused -m 17 -O raw
refused -t foo -O raw
refused -T foo -O raw
# --target-is-zero cannot vouch for an overlay (qemu-img says so too).
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2 10M
sum=$(sha256sum < ov.qcow2)
expect_fail cowbd-img convert -n --target-is-zero -O qcow2 top.qcow2 ov.qcow2
one_line_error "$tmp/stderr"
[ "$(sha256sum < ov.qcow2)" = "$sum" ] || fail "a refused -n changed DST"
