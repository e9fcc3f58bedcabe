#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# 600 clones of one base in one server process (dir= mode) hold one
# descriptor for the base: counted in /proc/PID/fd while a client is
# connected to every clone, and each clone reads the base's bytes.
. "${srcdir:-.}/server-functions.sh"
requires nbdsh --version

N=600
cd "$tmp"
mkdir images base
qemu-img create -q -f qcow2 base/base.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x5b 0 1M' base/base.qcow2 > /dev/null
for i in $(seq $N); do
    cowbd-img create -q -f qcow2 -b "$tmp/base/base.qcow2" -F qcow2 \
        images/c$i.qcow2 2>/dev/null ||
    qemu-img create -q -f qcow2 -b "$tmp/base/base.qcow2" -F qcow2 \
        images/c$i.qcow2
done
# 600 clients need more than the usual 1024 descriptors in the client.
ulimit -n 4096 2>/dev/null || true

start_server -t 4 --max-connections=2000 --backing-dir="$tmp/base" \
    dir="$tmp/images"
cat > scale.py <<EOF2
import nbd, os, sys
sock, n, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
hs = []
for i in range(1, n + 1):
    h = nbd.NBD()
    h.set_export_name("c%d" % i + ".qcow2")
    h.connect_unix(sock)
    assert h.pread(4096, 0) == b"\x5b" * 4096, i
    hs.append(h)
fds = [os.readlink("/proc/%s/fd/%s" % (pid, f))
       for f in os.listdir("/proc/%s/fd" % pid)]
base = sum(1 for f in fds if f.endswith("/base.qcow2"))
clones = sum(1 for f in fds if "/images/c" in f)
print("base fds:", base, "clone fds:", clones, "all fds:", len(fds))
assert base == 1, "base.qcow2 is open %d times" % base
assert clones == n, "%d clone descriptors for %d clones" % (clones, n)
for h in hs:
    h.shutdown()
EOF2
timeout 300 /usr/bin/python3 scale.py "$tmp/sock" $N $server_pid ||
    fail "600 clones"
stop_server
