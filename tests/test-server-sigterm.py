# SPDX-License-Identifier: BSD-3-Clause
# Writes under load, then SIGTERM to the server while writes are in
# flight, then a second SIGTERM and a SIGINT while the shutdown waits for
# a client that does not read its reply.  Usage: test-server-sigterm.py URI SERVER_PID STATE_FILE
# Writes slot i (64 KiB at i * 64 KiB) with byte (i % 250) + 1.  Slots
# 0..63 are written and flushed before the signal; the state file lists
# them, then every later slot whose write was acknowledged.
import os
import signal
import sys
import time
import nbd

uri, pid, state = sys.argv[1], int(sys.argv[2]), sys.argv[3]
SLOT = 65536
h = nbd.NBD()
h.connect_uri(uri)
# A client that asks for the whole image (16 MiB) and does not read the
# reply: the shutdown waits for it (up to its grace period).
stall = nbd.NBD()
stall.connect_uri(uri)
stall.aio_pread(nbd.Buffer(min(stall.get_size(), 32 << 20)), 0)


def alive():
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


nslots = h.get_size() // SLOT

def data(i):
    return bytearray([(i % 250) + 1]) * SLOT

flushed = []
for i in range(64):
    h.pwrite(data(i), i * SLOT)
    flushed.append(i)
h.flush()

acked = []
cookies = {}
signalled = False
i = 64
try:
    while True:
        while i < nslots and len(cookies) < 32:
            cookies[h.aio_pwrite(nbd.Buffer.from_bytearray(data(i)),
                                 i * SLOT)] = i
            i += 1
        if not signalled and i >= 96:
            os.kill(pid, signal.SIGTERM)
            signalled = True
        h.poll(-1)
        for c in list(cookies):
            if h.aio_command_completed(c):
                acked.append(cookies.pop(c))
        if i >= nslots and not cookies:
            break
except nbd.Error as e:
    print("connection ended: %s" % e)
# A second SIGTERM (timeout(1) sends two) and a SIGINT while the server
# is still shutting down (held up by the stalled read) must not cut the
# graceful shutdown short.
for sig in (signal.SIGTERM, signal.SIGINT):
    time.sleep(0.2)
    os.kill(pid, sig)
time.sleep(0.2)
assert alive(), "the server died of a second signal"
del stall                       # closed: the server may finish now

with open(state, "w") as f:
    f.write("flushed %s\n" % " ".join(map(str, flushed)))
    f.write("acked %s\n" % " ".join(map(str, acked)))
print("signalled=%s flushed=%d acked=%d" % (signalled, len(flushed),
                                            len(acked)))
assert signalled
