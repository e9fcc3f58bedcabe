#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A qcow2 image carrying the corrupt bit (as qemu sets it when it finds
# metadata damaged) is served read-only by the plugin, which says why
# without -v; cowbd refuses a client the export (it serves nothing
# read-only behind the user's back) and says why at its default level;
# neither changes the file.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdsh --version
requires qemu-io --version

cd "$tmp"
qemu-img create -q -f qcow2 c.qcow2 1M
qemu-io -f qcow2 -c 'write -P 0x42 0 64k' c.qcow2 > /dev/null
# incompatible_features (big-endian, byte 72): bit 1 is "corrupt".
/usr/bin/python3 - c.qcow2 <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(72)
    inc = struct.unpack(">Q", f.read(8))[0]
    f.seek(72)
    f.write(struct.pack(">Q", inc | 2))
PY
qemu-img info c.qcow2 | grep -q 'corrupt: true' || fail "corrupt bit not set"
before=$(sum c.qcow2)

serve -- file="$tmp/c.qcow2" --run 'nbdsh -u "$uri" -c "
assert h.is_read_only()
assert h.pread(512, 0) == b\"\\x42\" * 512"' 2> nbdkit.err ||
    { cat nbdkit.err; fail "plugin: not served read-only"; }
grep -q "c.qcow2: the image is marked corrupt.*serving it read-only" nbdkit.err ||
    { cat nbdkit.err; fail "plugin: the reason was not logged"; }
[ "$(sum c.qcow2)" = "$before" ] || fail "plugin: the file changed"

if cowbd --version > /dev/null 2>&1; then
    mkdir d
    mv c.qcow2 d/
    cowbd -U "$tmp/sock" dir="$tmp/d" 2> cowbd.err &
    pid=$!
    cleanup_fn "kill $pid 2>/dev/null"
    for i in $(seq 100); do [ -S sock ] && break; sleep 0.1; done
    ! nbdsh -u "nbd+unix:///c.qcow2?socket=$tmp/sock" -c 'h.pread(512, 0)' \
        2> /dev/null || fail "cowbd: served the corrupt image writable"
    kill -TERM $pid
    wait $pid || fail "cowbd exited with $?"
    grep -q "c.qcow2: the image is marked corrupt" cowbd.err ||
        { cat cowbd.err; fail "cowbd: the reason was not logged"; }
    [ "$(sum d/c.qcow2)" = "$before" ] || fail "cowbd: the file changed"
fi
