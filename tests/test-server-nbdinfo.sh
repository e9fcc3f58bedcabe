#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdinfo sees every export with its size, flags and description, and
# read-only exports as read-only.
. "${srcdir:-.}/server-functions.sh"
requires nbdinfo --version
requires jq --version

for fmt in $FORMATS; do
    make_image $fmt a.$fmt
    qemu-img create -q -f $fmt "$tmp/b.$fmt" 100M
done

cd "$tmp"
start_server vm1=a.raw vm2=a.qed big=b.qed

# --list: every export, with its description.
nbdinfo --list --json "$(uri)" > list.json
jq -r '.exports[]."export-name"' list.json | sort > names
printf '%s\n' big vm1 vm2 > expected
cmp names expected || fail "exports listed: $(cat names)"
jq -r '.exports[] | select(."export-name" == "vm2") | .description' list.json \
    > desc
grep -q '^qed, 16 MiB, backing base-a.qed.raw$' desc ||
    fail "vm2 description: $(cat desc)"
jq -r '.exports[] | select(."export-name" == "vm1") | .description' list.json \
    | grep -q '^raw, 16 MiB$' || fail "vm1 description"
jq -r '.exports[] | select(."export-name" == "big") | .description' list.json \
    | grep -q '^qed, 100 MiB$' || fail "big description"

# Per export: size and flags.
check_export ()
{
    local name=$1 size=$2 ro=$3
    nbdinfo --json "$(uri $name)" > info.json
    [ "$(jq -r '.exports[0]."export-size"' info.json)" = "$size" ] ||
        fail "$name: size $(jq '.exports[0]."export-size"' info.json)"
    [ "$(jq -r '.exports[0].is_read_only' info.json)" = "$ro" ] ||
        fail "$name: is_read_only"
    for flag in can_flush can_multi_conn can_cache can_df; do
        [ "$(jq -r ".exports[0].$flag" info.json)" = true ] ||
            fail "$name: $flag not set"
    done
    local w=true
    [ "$ro" = true ] && w=false
    for flag in can_fua can_trim can_zero can_fast_zero; do
        [ "$(jq -r ".exports[0].$flag" info.json)" = $w ] ||
            fail "$name: $flag should be $w"
    done
    [ "$(jq -r '.exports[0].block_size_maximum' info.json)" = 33554432 ] ||
        fail "$name: maximum block size"
    [ "$(jq -r '.exports[0].block_size_minimum' info.json)" = 1 ] ||
        fail "$name: minimum block size"
    jq -r '.exports[0].contexts[]' info.json | sort | tr '\n' ' ' |
        grep -q '^base:allocation qemu:allocation-depth $' ||
        fail "$name: contexts"
}
check_export vm1 16777216 false
check_export vm2 16777216 false
check_export big 104857600 false
# The default export is the first one.
check_export "" 16777216 false
[ "$(nbdinfo --json "$(uri)" | jq -r '.exports[0].description')" = "raw, 16 MiB" ] ||
    fail "default export is not vm1"
# An unknown export is refused.
expect_fail nbdinfo "$(uri nosuch)"
# The preferred block size of a qed image is its cluster size.
[ "$(nbdinfo --json "$(uri vm2)" | jq -r '.exports[0].block_size_preferred')" = 65536 ] ||
    fail "vm2: preferred block size"
stop_server

# -r: everything read-only, and the description says so.
cp a.qed a-before.qed
start_server -r vm1=a.raw vm2=a.qed
check_export vm1 16777216 true
check_export vm2 16777216 true
nbdinfo --list --json "$(uri)" | jq -r '.exports[].description' |
    grep -c 'read-only$' | grep -qx 2 || fail "-r descriptions"
# A write is refused with EPERM (libnbd's own check disabled).
nbdsh -u "$(uri vm2)" -c '
h.set_strict_mode(0)
try:
    h.pwrite(b"x" * 512, 0)
    raise SystemExit("write to a read-only export succeeded")
except nbd.Error as e:
    assert e.errno == "EPERM", e.errno
try:
    h.zero(512, 0)
    raise SystemExit("zero on a read-only export succeeded")
except nbd.Error as e:
    assert e.errno == "EPERM", e.errno
assert h.pread(512, 512 * 1024) == b"\x44" * 512
'
stop_server
# The image was not touched.
cmp a.qed a-before.qed || fail "-r changed the image"
