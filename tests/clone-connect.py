# SPDX-License-Identifier: BSD-3-Clause
# Connects to many export names of one server at once, for the tests of
# clones on demand (test-registry-clone.sh, test-plugin-clone.sh):
#
#   clone-connect.py SOCKET MODE NAME...
#
# Every handle starts its handshake before any finishes (libnbd's
# aio_connect_uri, driven by one select loop), so first connections race
# as they would from many clients.  MODE:
#   read    each must connect and read the base's bytes (0x11 at 0,
#           0x22 at 8 MiB); then each writes its own 4 KiB at
#           4096 * its index, flushes, and all read every other's write
#           (the same name must be one image)
#   refuse  each must be refused in the handshake
#   any     connect and read what can be (a burst cut off by a kill)
# Names are given as Python string literals' contents (\x01 escapes).
import select
import sys
import time

import nbd

sock, mode, names = sys.argv[1], sys.argv[2], sys.argv[3:]
names = [n.encode("latin-1").decode("unicode_escape") for n in names]


def start(name):
    h = nbd.NBD()
    h.set_export_name(name)
    h.aio_connect_unix(sock)
    return h


def drive(hs, deadline):
    """Runs every handshake to its end (or the deadline)."""
    while time.monotonic() < deadline:
        busy = [h for h in hs if h.aio_is_connecting()]
        if not busy:
            return
        rl, wl = [], []
        for h in busy:
            d = h.aio_get_direction()
            if d & nbd.AIO_DIRECTION_READ:
                rl.append(h.aio_get_fd())
            if d & nbd.AIO_DIRECTION_WRITE:
                wl.append(h.aio_get_fd())
        r, w, _ = select.select(rl, wl, [], 0.5)
        for h in busy:
            fd = h.aio_get_fd()
            try:
                if fd in r:
                    h.aio_notify_read()
                if fd in w:
                    h.aio_notify_write()
            except nbd.Error:
                pass            # refused: the handle is dead now
    sys.exit("handshakes still running after the deadline")


hs = [start(n) for n in names]
drive(hs, time.monotonic() + 120)
ready = [h.aio_is_ready() for h in hs]
if mode == "refuse":
    bad = [n for n, r in zip(names, ready) if r]
    if bad:
        sys.exit("served although bad: %r" % bad[:5])
    sys.exit(0)
if mode == "any":
    print("%d of %d connected" % (sum(ready), len(hs)))
    sys.exit(0)
lost = [n for n, r in zip(names, ready) if not r]
if lost:
    sys.exit("not served: %r" % lost[:5])
for n, h in zip(names, hs):
    if h.pread(4096, 0) != b"\x11" * 4096 or \
       h.pread(4096, 8 << 20) != b"\x22" * 4096:
        sys.exit("%s: does not read the base's bytes" % n)
for i, h in enumerate(hs):
    h.pwrite(bytes([i % 250 + 1]) * 4096, 4096 * (i + 1))
    h.flush()
for n, h in zip(names, hs):
    for i in range(len(hs)):
        want = bytes([i % 250 + 1]) * 4096
        mine = names[i] == n
        if mine and h.pread(4096, 4096 * (i + 1)) != want:
            sys.exit("%s: its write of block %d is not read back" % (n, i))
print("%d connections served" % len(hs))
