#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Clones on demand of a base whose backing file is a remote golden image
# (cowbd --clone-from, and the plugin's clone-from=): the base's chain
# was chosen by whoever named the base, so clones read the remote through
# it, while an overlay planted in the clone folder that names the remote,
# or names a local image over the remote that is not a base, is still
# refused as before (backing files of overlays in the folder are confined
# to local directories).  Before, every clone was made and then refused.
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/remote-functions.sh"
requires qemu-io --version

cd "$tmp"
head -c 8M /dev/urandom > golden.raw
start_remote
qemu-img create -q -f qcow2 -b "$(golden_uri)" -F raw base.qcow2
qemu-img create -q -f qcow2 -b "$(golden_uri)" -F raw other.qcow2
mkdir clones
# Planted: one names the remote itself, one a local image over it.
qemu-img create -q -f qcow2 -u -b "$(golden_uri)" -F raw clones/uri.qcow2 8M
qemu-img create -q -f qcow2 -b "$tmp/other.qcow2" -F qcow2 clones/other.qcow2

start_server --clone-from=base.qcow2 --clone-dir=clones
nbdcopy "$(uri vm1)" vm1.raw || fail "reading a new clone"
cmp vm1.raw golden.raw || fail "the clone does not read as the golden image"
qemu-io -f raw -c 'write -P 0x5a 1M 64k' "$(uri vm1)" > /dev/null ||
    fail "writing to the clone"
for name in uri other; do
    rc=0
    nbdinfo --size "$(uri $name)" > /dev/null 2>&1 || rc=$?
    [ $rc -ne 0 ] || fail "the planted overlay $name.qcow2 was served"
done
grep -q "clones/uri.qcow2: backing file $(golden_uri) is a remote image" \
    server.log || fail "no line refuses the planted URI"
grep -q "other.qcow2: backing file $(golden_uri) is a remote image" \
    server.log || fail "no line refuses the planted local image over the URI"
stop_server
qemu-img check -q clones/vm1.qcow2 || fail "qemu-img check of the clone"
qemu-img convert -O raw clones/vm1.qcow2 got.raw
cp golden.raw want.raw
qemu-io -f raw -c 'write -P 0x5a 1M 64k' want.raw > /dev/null
cmp got.raw want.raw || fail "the clone's data after the write"

# The plugin: the same registry.
if [ -f "$COWBD_PLUGIN" ]; then
    nbdkit_env timeout -k 10 60 nbdkit -U - "$COWBD_PLUGIN" \
        clone-from=base.qcow2 clone-dir=clones \
        --run 'nbdcopy "nbd+unix:///vm2?socket=$unixsocket" vm2.raw' \
        2> plugin.log || { cat plugin.log; fail "plugin: reading vm2"; }
    cmp vm2.raw golden.raw || fail "plugin: vm2 does not read as the base"
fi
stop_remote
