# SPDX-License-Identifier: BSD-3-Clause
# The client of test-server-slow-reader.sh:
#   test-server-slow-reader.py URI PID FILE N SIZE PAUSE
# sends N reads of SIZE bytes at once, reads no reply for PAUSE seconds
# (the socket fills and the server's writer gives up), then takes every
# reply and checks it against FILE (the raw image).  Prints the growth
# of the server's VmHWM in KiB as "grew N".
import sys
import time

import nbd

uri, pid, path = sys.argv[1], sys.argv[2], sys.argv[3]
n, size, pause = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])


def hwm_kib():
    with open("/proc/%s/status" % pid) as f:
        return next(int(line.split()[1]) for line in f
                    if line.startswith("VmHWM:"))


h = nbd.NBD()
h.connect_uri(uri)
h.pread(4096, 0)                # the server is warm: workers, caches
before = hwm_kib()
bufs = [nbd.Buffer(size) for _ in range(n)]
for i, b in enumerate(bufs):
    h.aio_pread(b, i * size)
time.sleep(pause)
while h.aio_in_flight() > 0:
    h.poll(-1)
grew = hwm_kib() - before
with open(path, "rb") as f:
    for i, b in enumerate(bufs):
        f.seek(i * size)
        if b.to_bytearray() != f.read(size):
            sys.exit("read %d of %d: wrong data" % (i, n))
h.shutdown()
print("grew", grew)
