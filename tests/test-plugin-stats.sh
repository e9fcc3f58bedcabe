#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The plugin's counters: with nbdkit -v -D cowbd.stats=1, each
# connection's close prints its requests, bytes and errors by operation
# and the engine's figures for its image, and unload prints each
# export's totals.  A known workload through nbdsh must be counted
# exactly: N writes, M reads of the base's data, one flush, and one read
# that fails with EIO (an L2 entry pointing past the end of the file).
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdsh --version

N=7 WSIZE=4096 M=5 RSIZE=65536
cd "$tmp"
qemu-img create -q -f qcow2 base.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x11 0 1M' base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 clone.qcow2

# bad.qcow2: cluster 0 holds data, but its L2 entry is moved 1 TiB away.
qemu-img create -q -f qcow2 bad.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x22 0 64k' bad.qcow2 > /dev/null
/usr/bin/python3 - bad.qcow2 <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    hdr = f.read(48)
    l1 = struct.unpack(">Q", hdr[40:48])[0]
    f.seek(l1)
    l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
    f.seek(l2)
    f.write(struct.pack(">Q", (1 << 63) | (1 << 40)))
PY

cat > work.py <<PY
import nbd, sys
h = nbd.NBD()
h.set_export_name("clone.qcow2")
h.connect_unix(sys.argv[1])
for i in range($N):
    h.pwrite(bytes([i + 1]) * $WSIZE, (4 << 20) + i * $WSIZE)
for i in range($M):
    h.pread($RSIZE, i * $RSIZE)
h.flush()
h.shutdown()
b = nbd.NBD()
b.set_export_name("bad.qcow2")
b.connect_unix(sys.argv[1])
try:
    b.pread(4096, 0)
    raise SystemExit("a read of a bad L2 entry succeeded")
except nbd.Error as e:
    assert e.errno == "EIO", e.errno
b.shutdown()
PY
serve -v -D cowbd.stats=1 -- dir="$tmp" \
    --run "/usr/bin/python3 '$tmp/work.py' \"\$unixsocket\"" 2> nbdkit.log ||
    { tail -20 nbdkit.log; fail "the workload failed"; }

conn=$(grep "cowbd.stats: connection to 'clone.qcow2'" nbdkit.log) ||
    { tail -20 nbdkit.log; fail "no counters at the connection's close"; }
echo "$conn"
[[ $conn == *"read $M/$((M * RSIZE))/0 write $N/$((N * WSIZE))/0 flush 1/0/0;"* ]] ||
    fail "clone.qcow2: wrong counters"
# The reads came from the base: read amplification is counted.
[[ $conn == *"backing read $((M * RSIZE)) bytes"* ]] ||
    fail "clone.qcow2: backing bytes not $((M * RSIZE))"
bad=$(grep "cowbd.stats: connection to 'bad.qcow2'" nbdkit.log) ||
    fail "no counters for bad.qcow2"
[[ $bad == *"read 1/0/1;"* ]] || fail "bad.qcow2: the failed read not counted"
grep -q "cowbd.stats: export 'clone.qcow2': 1 connections: read $M/" \
    nbdkit.log || fail "no totals for clone.qcow2 at unload"

# Without the flag, nothing is counted or printed.
serve -v -- "$tmp/clone.qcow2" --run 'nbdsh -u "$uri" -c "h.pread(512, 0)"' \
    2> quiet.log || fail "serving without the flag"
! grep -q "cowbd.stats" quiet.log || fail "counters printed without -D"
