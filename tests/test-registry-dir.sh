#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cowbd dir=DIR: every image of DIR is an export by its file name; an
# image copied into DIR while the server runs is listed and served
# without a restart, and a removed one disappears from LIST and can no
# longer be opened.  Names that are not file names of DIR are refused.
. "${srcdir:-.}/server-functions.sh"
requires nbdinfo --version
requires nbdsh --version

cd "$tmp"
mkdir images
qemu-img create -q -f qcow2 images/base.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x11 0 16M' images/base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 images/a.qcow2
qemu-img create -q -f raw images/r.raw 1M
mkdir images/subdir

names () { nbdinfo --list --json "$(uri)" | jq -r '.exports[]."export-name"' | tr '\n' ' '; }

start_server dir="$tmp/images"
[ "$(names)" = "a.qcow2 base.qcow2 r.raw " ] || fail "list: $(names)"
nbdsh -u "$(uri a.qcow2)" -c '
assert h.pread(4096, 0) == b"\x11" * 4096
h.pwrite(b"\xaa" * 4096, 0)
h.flush()' || fail "a.qcow2 not served"

# Added while running: a copy made elsewhere, then moved in.
qemu-img create -q -f qcow2 -b "$tmp/images/base.qcow2" -F qcow2 new.qcow2
qemu-io -f qcow2 -c 'write -P 0x77 1M 64k' new.qcow2 > /dev/null
cp new.qcow2 images/b.qcow2
[ "$(names)" = "a.qcow2 b.qcow2 base.qcow2 r.raw " ] ||
    fail "after adding b.qcow2: $(names)"
nbdsh -u "$(uri b.qcow2)" -c '
assert h.pread(65536, 1 << 20) == b"\x77" * 65536
assert h.pread(4096, 0) == b"\x11" * 4096' || fail "b.qcow2 not served"
# Asked for by name before any LIST saw it.
cp new.qcow2 images/c.qcow2
nbdsh -u "$(uri c.qcow2)" -c 'assert h.pread(65536, 1 << 20) == b"\x77" * 65536' ||
    fail "c.qcow2 not served by name"

# Removed: gone from LIST, refused by name.
rm images/r.raw
[ "$(names)" = "a.qcow2 b.qcow2 base.qcow2 c.qcow2 " ] ||
    fail "after removing r.raw: $(names)"
if nbdinfo "$(uri r.raw)" > /dev/null 2>&1; then fail "r.raw still served"; fi

# The base of the clones is read-only; bad names are refused.
[ "$(nbdinfo --json "$(uri base.qcow2)" | jq -r '.exports[0].is_read_only')" = true ] ||
    fail "base.qcow2 is writable"
for bad in ../images/a.qcow2 subdir . .. missing.qcow2 /etc/passwd; do
    if nbdinfo "$(uri "$bad")" > /dev/null 2>&1; then
        fail "export '$bad' was served"
    fi
done
stop_server
qemu-io -f qcow2 -c 'read -P 0xaa 0 4k' images/a.qcow2 |
    grep -q 'verification failed' && fail "a.qcow2 lost its write"
for f in a b c; do qemu-img check -q images/$f.qcow2 || fail "check $f"; done
