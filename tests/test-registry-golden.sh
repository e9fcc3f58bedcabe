#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A golden image served beside its clone (cowbd golden=golden.qcow2
# c1=c1.qcow2): the golden export is read-only (a write gets EPERM), the
# clone reads the golden data and writes its own, and neither the golden
# image nor what the clone reads of it changes.  One engine image (one
# descriptor) serves both the golden export and the clone's backing
# file.
. "${srcdir:-.}/server-functions.sh"
requires nbdsh --version

cd "$tmp"
qemu-img create -q -f qcow2 golden.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x11 0 16M' golden.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b golden.qcow2 -F qcow2 c1.qcow2
sum_golden=$(sha256sum < golden.qcow2)

start_server golden=golden.qcow2 c1=c1.qcow2
cat > golden.py <<'EOF2'
import errno, nbd, sys
sock = sys.argv[1]
def connect(name):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sock)
    return h
g, c = connect("golden"), connect("c1")
assert g.is_read_only(), "golden is writable"
g.set_strict_mode(0)            # let the write reach the server
try:
    g.pwrite(b"\xff" * 4096, 0)
    assert False, "a write to golden succeeded"
except nbd.Error as e:
    assert "EPERM" in str(e), "golden write: %s" % e
c.pwrite(b"\xc1" * 65536, 0)
c.flush()
assert c.pread(65536, 0) == b"\xc1" * 65536
assert c.pread(65536, 1 << 20) == b"\x11" * 65536, "clone: golden data"
assert g.pread(65536, 0) == b"\x11" * 65536, "golden changed"
EOF2
/usr/bin/python3 golden.py "$tmp/sock" || fail "golden and clone"
n=$(ls -l /proc/$server_pid/fd | grep -c '/golden.qcow2$' || true)
[ "$n" -le 1 ] || fail "golden.qcow2 open $n times"
nbdinfo --list --json "$(uri)" > list.json
[ "$(jq -r '.exports[] | select(."export-name" == "golden") | .is_read_only' \
    list.json)" = true ] || fail "LIST/INFO: golden is not read-only"
stop_server

[ "$(sha256sum < golden.qcow2)" = "$sum_golden" ] || fail "golden.qcow2 changed"
qemu-io -f qcow2 -c 'read -P 0xc1 0 64k' -c 'read -P 0x11 1M 64k' c1.qcow2 |
    grep -q 'verification failed' && fail "c1.qcow2 content"
qemu-img check -q c1.qcow2 || fail "qemu-img check c1.qcow2"
