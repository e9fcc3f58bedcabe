# SPDX-License-Identifier: BSD-3-Clause
# Stalled writes against the global in-flight cap.  Usage:
#   test-server-max-inflight.py SOCKET SERVER_PID CONNS PART_MIB
# Opens CONNS connections, each sending a 32 MiB WRITE and only PART_MIB
# of its payload, then prints the growth of the server's resident memory
# in MiB ("grew N").  While they stall, a small read through libnbd
# (nbdsh) must be served; after they go away, a full 32 MiB write must be
# served too (the budget came back).
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbdraw import connect, greet, send_opt, read_reply  # noqa: E402

sock, pid, nconns, part = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]) << 20
OPT_GO, REP_ACK = 7, 1
REQMAGIC, CMD_WRITE = 0x25609513, 1
COUNT = 32 << 20
URI = "nbd+unix:///?socket=" + sock


def rss_mib():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no VmRSS")


def go(s):
    send_opt(s, OPT_GO, struct.pack(">IH", 0, 0))
    while True:
        _, rep, _ = read_reply(s)
        if rep == REP_ACK:
            return
        assert rep == 3, "GO failed with %x" % rep    # REP_INFO


def nbdsh(code):
    subprocess.run(["nbdsh", "-u", URI, "-c", code], check=True, timeout=60)


before = rss_mib()
socks, left = [], []
for i in range(nconns):
    s = connect(sock, 30)
    greet(s)
    go(s)
    s.sendall(struct.pack(">IHHQQI", REQMAGIC, 0, CMD_WRITE, i, 0, COUNT))
    s.setblocking(False)
    socks.append(s)
    left.append(part)

# Send what the server takes; a paused connection takes nothing.
chunk = b"\x5a" * (256 << 10)
idle_since = time.monotonic()
while any(left) and time.monotonic() - idle_since < 2:
    for i, s in enumerate(socks):
        if left[i] == 0:
            continue
        try:
            n = s.send(chunk[:min(len(chunk), left[i])])
        except BlockingIOError:
            continue
        left[i] -= n
        idle_since = time.monotonic()
time.sleep(0.5)
print("grew %d" % (rss_mib() - before))
print("connections with all %d MiB taken: %d" %
      (part >> 20, sum(1 for n in left if n == 0)))
sys.stdout.flush()

# Others are still served.
nbdsh("assert len(h.pread(4096, 1 << 20)) == 4096")
for s in socks:
    s.close()
# The stalled writes' budget comes back: a full-size write goes through.
nbdsh("h.pwrite(b'\\x33' * (32 << 20), 0); "
      "assert h.pread(4096, 0) == b'\\x33' * 4096")
print("served")
