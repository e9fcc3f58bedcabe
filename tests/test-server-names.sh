#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Export names of images given without NAME=, as `cowbd clones/*.qcow2`
# gives them: each is named after its file's base name and reachable by
# it, the first one too; "" reaches the first; LIST shows each once.
. "${srcdir:-.}/server-functions.sh"
requires nbdinfo --version
requires jq --version
requires $PYTHON -c 'import nbd'

cd "$tmp"
mkdir clones
qemu-img create -q -f raw base.raw 4M
for n in 1 2 3; do
    qemu-img create -q -f qcow2 -b ../base.raw -F raw clones/vm$n.qcow2
    # Each clone's first sector holds its number.
    qemu-io -f qcow2 -c "write -P $n 0 512" clones/vm$n.qcow2 > /dev/null
done

start_server clones/*.qcow2
nbdinfo --list --json "$(uri)" > list.json
jq -r '.exports[]."export-name"' list.json > names
printf '%s\n' vm1.qcow2 vm2.qcow2 vm3.qcow2 > expected
diff -u expected names || fail "LIST does not show each image once by name"
for n in 1 2 3; do
    nbdsh -u "$(uri vm$n.qcow2)" \
        -c "assert h.pread(512, 0) == bytes([$n]) * 512, 'vm$n'" ||
        fail "vm$n.qcow2 not reachable by its name"
done
nbdsh -u "$(uri)" -c 'assert h.pread(512, 0) == bytes([1]) * 512' ||
    fail "\"\" does not reach the first image"
# INFO on "" and on the first name describe the same export.
[ "$(nbdinfo --json "$(uri)" | jq -c '.exports[0]."export-size"')" = \
  "$(nbdinfo --json "$(uri vm1.qcow2)" | jq -c '.exports[0]."export-size"')" ] ||
    fail "\"\" and vm1.qcow2 differ"
expect_fail nbdinfo "$(uri clones/vm1.qcow2)"
stop_server

# NAME= still names it, and "" reaches it.
start_server first=clones/vm2.qcow2 clones/vm3.qcow2
nbdinfo --list --json "$(uri)" | jq -r '.exports[]."export-name"' > names
printf '%s\n' first vm3.qcow2 > expected
diff -u expected names || fail "NAME= with LIST"
nbdsh -u "$(uri)" -c 'assert h.pread(512, 0) == bytes([2]) * 512' ||
    fail "\"\" does not reach first=..."
stop_server

# Two files with one base name need NAME=: one line saying so.
mkdir other
cp clones/vm1.qcow2 other/
expect_fail cowbd -U - clones/vm1.qcow2 other/vm1.qcow2 --run true
grep -q 'other/vm1.qcow2: export name used twice' "$tmp/stderr" ||
    fail "duplicate base names: $(cat "$tmp/stderr")"
