#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img snapshot -c/-a/-d` against qemu-img snapshot: the same steps
# on two copies of an image, one through each tool, give images that
# qemu-img compare finds equal (the active layer and every snapshot's
# content, extracted with qemu-img convert -l), qemu-img check finds
# clean, and whose snapshot lists (qemu-img info --output=json) agree
# field by field except the dates.  Over plain, lazy-refcount, compressed,
# compat=0.10 and overlay images, with several snapshots, a size change,
# duplicate names; interop both ways; after an apply the data served by
# cowbd is the snapshot's; refusals exit 1 with qemu-img's message and
# leave the file byte-identical.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"
requires cowbd --version
requires nbdcopy --version
requires timeout --version

cd "$tmp"

# lists FILE OUT: the snapshot list of FILE without the dates.
lists ()
{
    qemu-img info --output=json "$1" > "$2.json" || fail "qemu-img info $1"
    /usr/bin/python3 - "$2.json" > "$2" <<'PY'
import json, sys
for s in json.load(open(sys.argv[1])).get("snapshots", []):
    s.pop("date-sec"); s.pop("date-nsec")
    print(json.dumps(s, sort_keys=True))
PY
}

# content FILE SNAP OUT: the guest data of snapshot SNAP of FILE, raw.
content ()
{
    qemu-img convert -l "snapshot.name=$2" -O raw "$1" "$3" ||
        fail "qemu-img convert -l snapshot.name=$2 $1"
}

# same A B: A (steps through cowbd-img) and B (through qemu-img) agree.
same ()
{
    local a=$1 b=$2 name
    qemu_check_clean "$a"
    qemu_check_clean "$b"
    qemu_same "$a" "$b"
    lists "$a" la
    lists "$b" lb
    diff -u lb la >&2 || fail "snapshot lists of $a and $b differ"
    [ "$(json_get la.json virtual-size)" = "$(json_get lb.json virtual-size)" ] ||
        fail "virtual sizes of $a and $b differ"
    for name in $(/usr/bin/python3 -c '
import json, sys
for s in json.load(open(sys.argv[1])).get("snapshots", []): print(s["name"])
' lb.json | sort -u); do
        content "$a" "$name" ca.raw
        content "$b" "$name" cb.raw
        cmp -s ca.raw cb.raw || fail "snapshot $name of $a and $b differs"
    done
}

# both A B CMD...: runs a step on A through cowbd-img (snapshot ...) or
# qemu-io, and on B through qemu-img or qemu-io; then compares.
both ()
{
    local a=$1 b=$2; shift 2
    case $1 in
        snapshot)
            cowbd-img "$@" "$a" || fail "cowbd-img $* $a"
            qemu-img "$@" "$b" || fail "qemu-img $* $b" ;;
        *)
            qemu-io -c "$*" "$a" > /dev/null || fail "qemu-io $* $a"
            qemu-io -c "$*" "$b" > /dev/null || fail "qemu-io $* $b" ;;
    esac
    same "$a" "$b"
}

# steps A B: a sequence with several snapshots on copies A and B.
steps ()
{
    local a=$1 b=$2
    both "$a" "$b" snapshot -c one
    both "$a" "$b" write -P 0x22 0 192k
    both "$a" "$b" snapshot -c two
    both "$a" "$b" write -P 0x33 64k 1M
    both "$a" "$b" discard 2M 64k
    both "$a" "$b" snapshot -c three
    both "$a" "$b" snapshot -a one
    qemu-io -c 'read -P 0x11 0 1M' "$a" > /dev/null ||
        fail "$a: after -a one the data is not snapshot one's"
    both "$a" "$b" write -P 0x44 512k 64k
    both "$a" "$b" snapshot -d two
    both "$a" "$b" snapshot -a 3
    both "$a" "$b" snapshot -d one
    both "$a" "$b" snapshot -d three
}

# start NAME CREATE-ARGS...: NAME.a and NAME.b, two copies of a new image
# holding 0x11 in its first 4 MiB.
start ()
{
    local n=$1; shift
    qemu-img create -q -f qcow2 "$@" "$n.a" 8M || fail "create $n"
    qemu-io -c 'write -P 0x11 0 4M' "$n.a" > /dev/null
    cp "$n.a" "$n.b"
}

echo "plain, cluster_size 4k (several L2 tables)"
start plain -o cluster_size=4096
steps plain.a plain.b

echo "lazy refcounts"
start lazy -o lazy_refcounts=on
steps lazy.a lazy.b

echo "compat=0.10"
start v2 -o compat=0.10
steps v2.a v2.b

echo "compressed clusters (qemu-img convert -c)"
truncate -s 8M comp.raw
qemu-io -f raw -c 'write -P 0x11 0 4M' -c 'write -P 0x55 5M 1M' comp.raw \
    > /dev/null
qemu-img convert -c -f raw -O qcow2 comp.raw comp.a
cp comp.a comp.b
qemu-img map --output=json comp.a | grep -q '"data": true' ||
    fail "the compressed image holds no data"
steps comp.a comp.b

echo "an overlay"
qemu-img create -q -f qcow2 base.qcow2 8M
qemu-io -c 'write -P 0x66 0 8M' base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 over.a 8M
qemu-io -c 'write -P 0x11 0 1M' over.a > /dev/null
cp over.a over.b
both over.a over.b snapshot -c s
both over.a over.b write -P 0x77 4M 1M
both over.a over.b snapshot -a s
qemu-io -c 'read -P 0x66 4M 1M' over.a > /dev/null ||
    fail "over.a: after -a the backing file does not show again"

echo "a size change: apply restores the snapshot's size"
start size
both size.a size.b snapshot -c small
qemu-img resize -q size.a 16M
qemu-img resize -q size.b 16M
both size.a size.b write -P 0x88 12M 1M
both size.a size.b snapshot -c big
both size.a size.b snapshot -a small
[ "$(qemu-img info --output=json size.a | json_get /dev/stdin virtual-size)" = 8388608 ] ||
    fail "size.a: -a small did not restore the size"
both size.a size.b snapshot -a big

echo "duplicate names and a long name"
start dup
both dup.a dup.b snapshot -c same
both dup.a dup.b write -P 0x99 0 64k
both dup.a dup.b snapshot -c same
long=$(printf 'n%.0s' $(seq 1 300))
both dup.a dup.b snapshot -c "$long"
both dup.a dup.b snapshot -d same
both dup.a dup.b snapshot -a same
both dup.a dup.b snapshot -d "${long:0:255}"

echo "interop: created by cowbd-img, applied and deleted by qemu-img"
start x1
cowbd-img snapshot -c mine x1.a || fail "cowbd-img snapshot -c"
qemu-io -c 'write -P 0xaa 0 2M' x1.a > /dev/null
qemu-img snapshot -a mine x1.a || fail "qemu-img snapshot -a (cowbd-img's)"
qemu_check_clean x1.a
qemu-io -c 'read -P 0x11 0 4M' x1.a > /dev/null ||
    fail "qemu-img applied cowbd-img's snapshot: the data is not its"
qemu-img snapshot -d mine x1.a || fail "qemu-img snapshot -d (cowbd-img's)"
qemu_check_clean x1.a

echo "interop: created by qemu-img, applied and deleted by cowbd-img"
start x2
qemu-img snapshot -c theirs x2.a
qemu-io -c 'write -P 0xbb 0 2M' x2.a > /dev/null
cowbd-img snapshot -a theirs x2.a || fail "cowbd-img snapshot -a (qemu's)"
qemu_check_clean x2.a
qemu-io -c 'read -P 0x11 0 4M' x2.a > /dev/null ||
    fail "cowbd-img applied qemu-img's snapshot: the data is not its"

echo "served by cowbd after an apply: the snapshot's data"
qemu-io -c 'write -P 0xcc 1M 1M' x2.a > /dev/null
qemu-img snapshot -c later x2.a
cowbd-img snapshot -a theirs x2.a || fail "cowbd-img snapshot -a theirs"
content x2.a theirs want.raw
timeout 60 cowbd -U - x2.a --run 'nbdcopy "$uri" served.raw' ||
    fail "cowbd cannot serve x2.a"
cmp want.raw served.raw || fail "cowbd serves other data than the snapshot's"
qemu-io -c 'read -P 0x11 0 4M' x2.a > /dev/null &&
    qemu-io -c 'read -P 0 4M 4M' x2.a > /dev/null ||
    fail "x2.a: not the snapshot's data"
cowbd-img snapshot -d later x2.a || fail "cowbd-img snapshot -d (qemu's)"
qemu_check_clean x2.a
lists x2.a l2
grep -q '"name": "theirs"' l2 && ! grep -q later l2 ||
    fail "x2.a: wrong snapshot list after -d"

echo "refusals"
start bad
cowbd-img snapshot -c keep bad.a
sum=$(sha256sum < bad.a)
cowbd-img snapshot -a nosuch bad.a 2> err && fail "-a nosuch succeeded"
grep -qx "cowbd-img: Could not apply snapshot 'nosuch': Failed to load snapshot: No such file or directory" err ||
    { cat err >&2; fail "-a nosuch: not qemu-img's message"; }
cowbd-img snapshot -d nosuch bad.a 2> err && fail "-d nosuch succeeded"
grep -qx "cowbd-img: Could not delete snapshot 'nosuch': snapshot not found" err ||
    { cat err >&2; fail "-d nosuch: not qemu-img's message"; }
cowbd-img snapshot -d 1 bad.a 2> /dev/null && fail "-d takes an id"
expect_fail cowbd-img snapshot -c x -a keep bad.a
[ "$(sha256sum < bad.a)" = "$sum" ] || fail "a refused snapshot wrote"
qemu-img create -q -f raw r.raw 1M
sum=$(sha256sum < r.raw)
expect_fail cowbd-img snapshot -f raw -c x r.raw
[ "$(sha256sum < r.raw)" = "$sum" ] || fail "snapshot -c of a raw file wrote"
