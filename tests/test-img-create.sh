#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Images made by `cowbd-img create` (raw and qed; with and without a
# backing file, raw and qed backing; every preallocation mode; cluster and
# table sizes) pass `qemu-img check`, and `qemu-img info` sees the virtual
# size, cluster size and backing file we asked for.  Bad options are
# refused with one line and leave no file.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

# qemu_info FILE: qemu-img info --output=json into FILE.qinfo.
qemu_info () { qemu-img info --output=json "$1" > "$1.qinfo"; }

# expect_info FILE KEY VALUE: qemu-img info says KEY is VALUE.
expect_info ()
{
    local v
    v=$(json_get "$1.qinfo" "$2")
    [ "$v" = "$3" ] || fail "qemu-img info $1: $2 is '$v', not '$3'"
}

# --- qed and raw without backing, every preallocation mode -------------
qemu-img create -q -f raw zeros.raw 5M
for prealloc in off metadata falloc full; do
    f=plain-$prealloc.qed
    cowbd-img create -q -f qed -o preallocation=$prealloc $f 5M
    qemu_check_clean $f
    qemu_info $f
    expect_info $f format qed
    expect_info $f virtual-size $((5 << 20))
    expect_info $f cluster-size 65536
    # What reads back is zeros, whatever was preallocated.
    qemu-img compare -q -f qed -F raw $f zeros.raw ||
        fail "$f does not read as zeros"
done
# metadata maps every cluster: qemu-img map sees it allocated, as zeros.
qemu-img map --output=json plain-metadata.qed | grep -q '"present": true' ||
    fail "preallocation=metadata allocated nothing"
# full writes the data: the file takes at least the virtual size.
[ "$(stat -c %s plain-full.qed)" -ge $((5 << 20)) ] || fail "full: too small"

for prealloc in off falloc full; do
    f=plain-$prealloc.raw
    cowbd-img create -q -f raw -o preallocation=$prealloc $f 3M
    qemu_info $f
    expect_info $f format raw
    expect_info $f virtual-size $((3 << 20))
done
[ "$(stat -c %b plain-off.raw)" -eq 0 ] || fail "raw off: blocks allocated"
[ "$(($(stat -c '%b * %B' plain-full.raw)))" -ge $((3 << 20)) ] ||
    fail "raw full: not allocated"

# Sizes with suffixes, and rounding up to whole sectors as qemu-img does.
cowbd-img create -q -f qed odd.qed 1000
qemu_info odd.qed
expect_info odd.qed virtual-size 1024
cowbd-img create -q odd2.qed 1T
qemu_info odd2.qed
expect_info odd2.qed format qed
expect_info odd2.qed virtual-size $((1 << 40))

# Cluster and table sizes.  (Not table_size=1: qemu 7.2 refuses to open
# any QED image with one-cluster tables, its own included, because
# qed_check_table_offset takes a table that ends where it starts for an
# overflow.)
cowbd-img create -q -f qed -o cluster_size=4096,table_size=2 small.qed 8M
qemu_check_clean small.qed
qemu_info small.qed
expect_info small.qed cluster-size 4096
qemu-io -c 'write -P 0x5a 4000 10000' small.qed > /dev/null
qemu_check_clean small.qed
cowbd-img create -q -f qed -o cluster_size=1M,table_size=16 big.qed 100G
qemu_check_clean big.qed
qemu_info big.qed
expect_info big.qed cluster-size $((1 << 20))

# --- backing files -------------------------------------------------------
qemu-img create -q -f raw base.raw 4M
qemu-io -f raw -c 'write -P 0x11 0 1M' base.raw > /dev/null
qemu-img create -q -f qed base.qed 6M
qemu-io -f qed -c 'write -P 0x22 64k 1M' base.qed > /dev/null

# Size from the backing file; format given, or probed and stored.
cowbd-img create -q -f qed -b base.raw -F raw over-raw.qed
cowbd-img create -q -f qed -b base.raw over-raw-probed.qed
cowbd-img create -q -f qed -b base.qed -F qed over-qed.qed
cowbd-img create -q -b base.qed over-qed-probed.qed 10M
for f in over-raw.qed over-raw-probed.qed over-qed.qed over-qed-probed.qed; do
    qemu_check_clean $f
    qemu_info $f
    expect_info $f format qed
    case $f in
    over-raw*)
        expect_info $f virtual-size $((4 << 20))
        expect_info $f backing-filename base.raw
        # QED records a raw backing file as "raw, do not probe".
        expect_info $f backing-filename-format raw ;;
    over-qed.qed)
        expect_info $f virtual-size $((6 << 20))
        expect_info $f backing-filename base.qed ;;
    *)
        expect_info $f virtual-size $((10 << 20))
        expect_info $f backing-filename base.qed ;;
    esac
done
# The overlays read their backing file (past its end: zeros).
qemu_reads over-raw.qed 'read -P 0x11 0 1M' 'read -P 0 1M 3M'
qemu_reads over-qed-probed.qed 'read -P 0x22 64k 1M' 'read -P 0 2M 8M'

# A backing file in another directory: the name is stored as given and
# resolved from the overlay's directory.
mkdir sub
cowbd-img create -q -b ../base.qed sub/deep.qed
qemu_check_clean sub/deep.qed
qemu_info sub/deep.qed
expect_info sub/deep.qed backing-filename ../base.qed
expect_info sub/deep.qed virtual-size $((6 << 20))

# Data written by qemu-io into a cowbd-made overlay reads back through
# cowbd-img as qemu reads it.
qemu-io -c 'write -P 0x33 100k 200k' -c 'write -z 2M 64k' over-qed.qed >/dev/null
qemu_check_clean over-qed.qed
cowbd-img convert -O raw over-qed.qed ours.raw
qemu-img convert -O raw over-qed.qed theirs.raw
cmp ours.raw theirs.raw || fail "overlay written by qemu-io reads differently"

# Creating over a large base takes no time and no space.
qemu-img create -q -f qed huge.qed 1T
cowbd-img create -q -b huge.qed clone-of-huge.qed
[ "$(stat -c %s clone-of-huge.qed)" -le $((1 << 20)) ] || fail "clone too big"
qemu_check_clean clone-of-huge.qed

# --- refused -------------------------------------------------------------
# refused FILE ARGS...: `cowbd-img create ARGS...` fails with one line
# and leaves no FILE.
refused ()
{
    local f=$1; shift
    expect_fail cowbd-img create -q "$@"
    one_line_error "$tmp/stderr"
    [ ! -e "$f" ] || fail "create $* left $f behind"
}
refused bad1.qed -f qed -o cluster_size=65537 bad1.qed 1M
refused bad2.qed -f qed -o table_size=3 bad2.qed 1M
refused bad3.qed -f qed -o lazy_refcounts=on bad3.qed 1M
refused bad4.qed -f qed -o compat=1.1 bad4.qed 1M
refused bad5.qed -f qed -b no-such-base.qed bad5.qed
refused bad6.raw -f raw -b base.raw bad6.raw
refused bad7.raw -f raw -o preallocation=metadata bad7.raw 1M
refused bad8.qed -f qed -b base.qed -o preallocation=full bad8.qed
refused bad9.qed -f nosuchformat bad9.qed 1M
refused bad10.qed -f qed bad10.qed 1X
grep -q "is not a size" "$tmp/stderr" || fail "message for a bad size"
rc=0; cowbd-img create -f qed -o nosuchoption=1 bad11.qed 1M 2>/dev/null || rc=$?
[ "$rc" -eq 1 ] && [ ! -e bad11.qed ] || fail "unknown -o option"
rc=0; cowbd-img create -f qed bad12.qed 2>/dev/null || rc=$?
[ "$rc" -eq 1 ] && [ ! -e bad12.qed ] || fail "no size, no backing"
# An image cannot be its own backing file (creating it would destroy it).
cp base.qed self.qed
sum=$(sha256sum < self.qed)
expect_fail cowbd-img create -q -b self.qed self.qed
one_line_error "$tmp/stderr"
expect_fail cowbd-img create -q -u -b ./self.qed self.qed 1M
one_line_error "$tmp/stderr"
[ "$(sha256sum < self.qed)" = "$sum" ] || fail "create destroyed its backing file"
