#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The loop polls for a moment after reading requests instead of sleeping
# at once (server/spin.c), but an idle server sleeps: after a burst of
# 4 KiB reads (nbdsh, 64 in flight), with the client still connected and
# idle, cowbd uses less than 0.1 s of CPU time over 2 s.
. "${srcdir:-.}/server-functions.sh"
requires nbdsh --version

qemu-img create -q -f qcow2 "$tmp/idle.qcow2" 1G
qemu-io -f qcow2 -c 'write -q -P 0x5a 1M 64K' "$tmp/idle.qcow2" >/dev/null
start_server "$tmp/idle.qcow2"
hz=$(getconf CLK_TCK)
TICKS_FILE=$tmp/ticks SERVER_PID=$server_pid nbdsh -u "$(uri)" -c '
import os, time
def ticks ():
    with open ("/proc/%s/stat" % os.environ["SERVER_PID"]) as f:
        v = f.read ().rsplit (")", 1)[1].split ()
    return int (v[11]) + int (v[12])
buf = nbd.Buffer (4096)
for rnd in range (20):
    for i in range (64):
        h.aio_pread (buf, (i * 16 + 1024) * 1024 % (1 << 30))
    while h.aio_in_flight () > 0:
        h.poll (-1)
assert h.pread (4096, 1 << 20) == b"\x5a" * 4096
t0 = ticks ()
time.sleep (2)
with open (os.environ["TICKS_FILE"], "w") as f:
    print (ticks () - t0, file=f)
' || fail "nbdsh"
used=$(cat "$tmp/ticks")
echo "idle for 2 s: $used ticks of CPU ($hz a second)"
[ "$used" -lt $(( hz / 10 )) ] ||
    fail "the idle server used $used ticks of CPU in 2 s"
stop_server
