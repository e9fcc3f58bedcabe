#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Format-specific -o options, which each format's driver declares and
# reads itself: qcow2's compat, lazy_refcounts, refcount_bits and
# compression_type given to `cowbd-img create` (and convert) make the
# image `qemu-img create` makes with the same options (qemu-img info
# agrees on its cluster size and format-specific data); QED's table_size
# lands in the header and qemu-img reads the image; an option of another
# format is refused in one line naming it, and no file is left; amend
# refuses the options only a create can set, naming them, and leaves the
# image as it was.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

# spec FILE: the cluster size and format-specific data qemu-img info
# gives for FILE.
spec ()
{
    qemu-img info --output=json "$1" | /usr/bin/python3 -c '
import json, sys
i = json.load(sys.stdin)
print(i.get("cluster-size"), json.dumps(i.get("format-specific"),
                                        sort_keys=True))'
}

# same_as_qemu OPTS: cowbd-img create -o OPTS and qemu-img create -o OPTS
# make qcow2 images that qemu-img describes alike, and ours is clean.
same_as_qemu ()
{
    rm -f ours.qcow2 theirs.qcow2
    cowbd-img create -q -f qcow2 -o "$1" ours.qcow2 16M ||
        fail "create -o $1"
    qemu-img create -q -f qcow2 -o "$1" theirs.qcow2 16M
    [ "$(spec ours.qcow2)" = "$(spec theirs.qcow2)" ] || {
        spec ours.qcow2 >&2; spec theirs.qcow2 >&2
        fail "create -o $1: not what qemu-img makes"
    }
    qemu-img check -q ours.qcow2 || fail "create -o $1: qemu-img check"
}
same_as_qemu lazy_refcounts=off
same_as_qemu lazy_refcounts=on,refcount_bits=8
same_as_qemu compat=0.10
same_as_qemu compat=0.10,cluster_size=4k,refcount_bits=16
same_as_qemu compat=1.1,lazy_refcounts=off,refcount_bits=64,cluster_size=512
same_as_qemu lazy_refcounts=off,compression_type=zstd
# Given twice, the last one counts (as for qemu-img).
same_as_qemu lazy_refcounts=on,lazy_refcounts=off

# The same through convert.
qemu-img create -q -f raw src.raw 4M
qemu-io -f raw -c 'write -P 7 64k 128k' src.raw > /dev/null
cowbd-img convert -f raw -O qcow2 -o compat=0.10,cluster_size=4k src.raw \
          conv.qcow2
qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=4k theirs.qcow2 4M
[ "$(spec conv.qcow2)" = "$(spec theirs.qcow2)" ] ||
    fail "convert -o compat=0.10: not what qemu-img makes"
qemu-img compare -q src.raw conv.qcow2 || fail "convert: data differs"

# QED's table_size: in the header (bytes 8-11, in clusters), and qemu-img
# reads the image.
header_table_size ()
{
    od -An -tu4 -j8 -N4 "$1" | tr -d ' '
}
cowbd-img create -q -f qed -o table_size=8,cluster_size=4k t.qed 1M
[ "$(header_table_size t.qed)" = 8 ] || fail "create -o table_size=8"
qemu-img check -q t.qed || fail "table_size=8: qemu-img check"
cowbd-img convert -f raw -O qed -o table_size=2,cluster_size=4k src.raw \
          conv.qed
[ "$(header_table_size conv.qed)" = 2 ] || fail "convert -o table_size=2"
qemu-img compare -q src.raw conv.qed || fail "convert -O qed: data differs"

# refused FORMAT OPTION: another format's option, refused by create and
# convert in one line naming it, with no file left behind.
refused ()
{
    local name=${2%%=*}

    expect_fail cowbd-img create -q -f "$1" -o "$2" "no.$1" 1M
    one_line_error "$tmp/stderr"
    grep -q "$name" "$tmp/stderr" ||
        fail "create -f $1 -o $2: the message does not name $name"
    [ ! -e "no.$1" ] || fail "create -f $1 -o $2 left a file"
    expect_fail cowbd-img convert -q -f raw -O "$1" -o "$2" src.raw "no.$1"
    grep -q "$name" "$tmp/stderr" ||
        fail "convert -O $1 -o $2: the message does not name $name"
    [ ! -e "no.$1" ] || fail "convert -O $1 -o $2 left a file"
}
refused qed lazy_refcounts=on
refused qed compat=1.1
refused qed refcount_bits=8
refused qed compression_type=zlib
refused qcow2 table_size=4
refused raw table_size=4
refused raw compat=0.10
refused raw cluster_size=4k

# amend: options only a create sets are refused before anything changes.
cowbd-img create -q -f qcow2 a.qcow2 1M
sum=$(sha256sum < a.qcow2)
for o in table_size=2 refcount_bits=8 compression_type=zstd cluster_size=4k
do
    expect_fail cowbd-img amend -o "$o" a.qcow2
    one_line_error "$tmp/stderr"
    grep -q "${o%%=*} can only be set when the image is created" \
         "$tmp/stderr" || fail "amend -o $o: not the creation-only message"
    [ "$(sha256sum < a.qcow2)" = "$sum" ] || fail "amend -o $o changed it"
done
cowbd-img amend -o lazy_refcounts=off a.qcow2
[ "$(qemu-img info --output=json a.qcow2 | /usr/bin/python3 -c '
import json, sys
print(json.load(sys.stdin)["format-specific"]["data"]["lazy-refcounts"])')" \
  = False ] || fail "amend -o lazy_refcounts=off"
qemu-img check -q a.qcow2 || fail "amend: qemu-img check"
