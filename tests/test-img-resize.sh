#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img resize` against `qemu-img resize` on copies of one image, for
# raw, qed and qcow2 (v3 and v2): grow (within the L1 table and past it,
# absolute and relative, over a longer backing file), shrink with
# --shrink (qcow2 drops what lies past the end, raw truncates, QED only
# when nothing is allocated there); both results `qemu-img compare`
# equal with the same virtual size, `qemu-img check` clean, and the
# refusals qemu-img makes (shrink without --shrink, a QED size past what
# its L1 table addresses, a size not a multiple of 512) refused with
# exit 1 and the image unchanged.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

vsize () { qemu-img info --output=json "$@" > vs.json; json_get vs.json virtual-size; }

# both FILE [OPTIONS...] SIZE: resizes ours.FILE with cowbd-img and
# theirs.FILE with qemu-img, then compares them.
both ()
{
    local f=$1 size=${!#}; shift
    set -- "${@:1:$#-1}"
    cowbd-img resize -q "$@" "ours.$f" "$size" ||
        fail "cowbd-img resize $* ours.$f $size"
    qemu-img resize -q "$@" "theirs.$f" "$size" ||
        fail "qemu-img resize $* theirs.$f $size"
    [ "$(vsize "ours.$f")" = "$(vsize "theirs.$f")" ] ||
        fail "resize $*: size $(vsize "ours.$f") != $(vsize "theirs.$f")"
    qemu_same -s "ours.$f" "theirs.$f"
    case $f in *.raw) ;; *) qemu_check_clean "ours.$f" ;; esac
}

# start FILE: ours.FILE and theirs.FILE from FILE.
start () { cp "$1" "ours.$1"; cp "$1" "theirs.$1"; }

# unchanged FILE [OPTIONS...] SIZE: cowbd-img resize fails and leaves FILE
# as it was.
unchanged ()
{
    local f=$1 size=${!#}; shift
    set -- "${@:1:$#-1}"
    cp "$f" before
    expect_fail cowbd-img resize "$@" "$f" "$size"
    cmp -s "$f" before || fail "a refused resize $* changed $f"
}

qemu-img create -q -f qcow2 base.qcow2 4M
qemu-io -c 'write -P 0x11 0 4M' base.qcow2 > /dev/null

for fmt in qcow2 qcow2-v2 qed; do
    f=img.$fmt; opts=()
    case $fmt in
        qcow2-v2) opts=(-o compat=0.10,cluster_size=4096) ;;
        qcow2) opts=(-o cluster_size=4096) ;;
    esac
    qemu-img create -q -f "${fmt%-v2}" "${opts[@]}" "$f" 3M
    qemu-io -f "${fmt%-v2}" -c 'write -P 0x21 0 64k' -c 'write -P 0x22 1M 8k' \
        -c 'write -P 0x23 3056k 16k' "$f" > /dev/null
    start "$f"
    both "$f" 4M                # within the L1 table
    both "$f" +2G               # past it (4 KiB clusters: 2 MiB per L2)
    # (qemu-img cannot shrink QED: see below)
    [ "$fmt" = qed ] || both "$f" --shrink -2G
    unchanged "ours.$f" 1M      # no --shrink
    unchanged "ours.$f" 4194817   # not a multiple of 512 (qemu-img agrees)
    expect_fail qemu-img resize -q "theirs.$f" 4194817
    qemu_same -s "ours.$f" "theirs.$f"
done

# QED: the largest size is table entries^2 * cluster_size (64 TiB with
# 64 KiB clusters and 4-cluster tables); qemu-img refuses past it too.
qemu-img create -q -f qed big.qed 1G
start big.qed
both big.qed 64T
unchanged ours.big.qed 65T
expect_fail qemu-img resize -q theirs.big.qed 65T

# Shrinking qcow2: the clusters past the new end are dropped (qemu-img
# does the same; it rereads equal), and grown again they read zeros.
for f in img.qcow2 img.qcow2-v2; do
    both "$f" --shrink 2M
    both "$f" 3M
    qemu-img compare -q -s "ours.$f" "theirs.$f" ||
        fail "$f: dropped clusters came back after shrink and grow"
done

# Shrinking an image with an internal snapshot: the snapshot keeps its
# clusters, and the counts stay right (qemu-img check clean).
qemu-img create -q -f qcow2 -o cluster_size=4096 snap.qcow2 8M
qemu-io -c 'write -P 0x51 0 8M' snap.qcow2 > /dev/null
qemu-img snapshot -c s1 snap.qcow2
start snap.qcow2
both snap.qcow2 --shrink 1M
qemu-img snapshot -a s1 ours.snap.qcow2
qemu-io -c 'read -P 0x51 0 8M' ours.snap.qcow2 > /dev/null ||
    fail "the snapshot lost data in the shrink"
qemu_check_clean ours.snap.qcow2

# Shrinking QED: qemu-img refuses it; we allow it when nothing past the
# new end is allocated, and refuse it otherwise.
qemu-img create -q -f qed s.qed 4M
qemu-io -c 'write -P 0x31 0 1M' s.qed > /dev/null
cowbd-img resize -q --shrink s.qed 1M || fail "shrink of an empty QED tail"
[ "$(vsize s.qed)" = 1048576 ] || fail "QED shrink: size $(vsize s.qed)"
qemu_check_clean s.qed
qemu-io -c 'read -P 0x31 0 1M' s.qed > /dev/null ||
    fail "QED shrink lost data"
unchanged s.qed --shrink 512k

# raw: ftruncate, as qemu-img; preallocation falloc and full allocate the
# new part.
truncate -s 1M img.raw
printf 'data' | dd of=img.raw conv=notrunc status=none
start img.raw
both img.raw -f raw 3M
both img.raw -f raw --shrink 1000448
cowbd-img resize -q -f raw --preallocation=full ours.img.raw 8M
qemu-img resize -q -f raw --preallocation=full theirs.img.raw 8M
cmp ours.img.raw theirs.img.raw || fail "raw preallocation=full differs"
[ "$(stat -c %b ours.img.raw)" -ge 14000 ] ||
    fail "preallocation=full left holes: $(stat -c %b ours.img.raw) blocks"
unchanged ours.img.raw -f raw 1M
unchanged ours.img.raw -f raw --preallocation=bogus 9M

# An overlay grown past its own size over a longer backing file: the new
# part reads zeros, not the backing file's bytes (qemu-img writes zero
# clusters there too, for qcow2 v3; v2 has none, and both refuse).
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2 1M
qemu-io -c 'write -P 0x41 0 64k' ov.qcow2 > /dev/null
start ov.qcow2
both ov.qcow2 8M
qemu-io -c 'read -P 0 1M 7M' ours.ov.qcow2 > /dev/null ||
    fail "the grown overlay reads its backing file's bytes"
map_same ours.ov.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 v2.qcow2 1M
unchanged v2.qcow2 2M
expect_fail qemu-img resize -q v2.qcow2 2M
# QED: qemu-img refuses; we write zero clusters.
qemu-img create -q -f qed -b base.qcow2 -F qcow2 ov.qed 1M
cowbd-img resize -q ov.qed 6M || fail "resize of a QED overlay"
qemu-io -c 'read -P 0 1M 5M' ov.qed > /dev/null ||
    fail "the grown QED overlay reads its backing file's bytes"
qemu_check_clean ov.qed

# A relative size that would not be positive, and usage errors.
unchanged ours.big.qed --shrink -64T
expect_fail cowbd-img resize ours.big.qed
cowbd-img resize --help | grep -q -- --shrink || fail "resize --help"
