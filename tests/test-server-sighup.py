# SPDX-License-Identifier: BSD-3-Clause
# Writes to several exports at once, then SIGHUP to the server while
# writes are in flight on each.
# Usage: test-server-sighup.py SERVER_PID STATE_PREFIX URI...
# On each export, slot i (64 KiB at i * 64 KiB) gets byte (i % 250) + 1.
# Slots 0..31 are written and flushed before the signal; STATE_PREFIX.N
# (N: the URI's position) lists them, then every later slot whose write
# was acknowledged.
import os
import signal
import sys
import nbd

pid, prefix, uris = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
SLOT = 65536
DEPTH = 16


def data(i):
    return bytearray([(i % 250) + 1]) * SLOT


class Writer:
    def __init__(self, uri):
        self.h = nbd.NBD()
        self.h.connect_uri(uri)
        self.nslots = self.h.get_size() // SLOT
        self.flushed, self.acked, self.cookies = [], [], {}
        self.next = 32
        self.done = False
        for i in range(32):
            self.h.pwrite(data(i), i * SLOT)
            self.flushed.append(i)
        self.h.flush()

    def step(self):
        """Keeps DEPTH writes in flight; False once this export is done."""
        if self.done:
            return False
        try:
            while self.next < self.nslots and len(self.cookies) < DEPTH:
                buf = nbd.Buffer.from_bytearray(data(self.next))
                c = self.h.aio_pwrite(buf, self.next * SLOT)
                self.cookies[c] = self.next
                self.next += 1
            self.h.poll(-1)
            for c in list(self.cookies):
                if self.h.aio_command_completed(c):
                    self.acked.append(self.cookies.pop(c))
        except nbd.Error as e:
            print("connection ended: %s" % e)
            self.done = True
        if self.next >= self.nslots and not self.cookies:
            self.done = True
        return not self.done


writers = [Writer(u) for u in uris]
signalled = False
while any([w.step() for w in writers]):
    if not signalled and all(w.next >= 64 for w in writers):
        os.kill(pid, signal.SIGHUP)
        signalled = True
for n, w in enumerate(writers):
    with open("%s.%d" % (prefix, n), "w") as f:
        f.write("flushed %s\n" % " ".join(map(str, w.flushed)))
        f.write("acked %s\n" % " ".join(map(str, w.acked)))
    print("export %d: flushed=%d acked=%d" % (n, len(w.flushed),
                                               len(w.acked)))
assert signalled, "the writes ended before the signal was sent"
