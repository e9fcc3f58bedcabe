# SPDX-License-Identifier: BSD-3-Clause
# The client of test-fault-enospc.sh (run with /usr/bin/python3):
#   test-fault-enospc.py URI arm:FILE|fill:FILE STATE
# Writes 64 KiB blocks (block i holds byte i + 1) at 64 KiB * i with a
# FLUSH after every fourth; after block 11 it makes the server's disk
# full - arm: creates FILE, which arms the shim (it fails the server's
# writes with ENOSPC); fill: fills the file system with FILE - and after
# block 23 it removes FILE.  Writes of the full disk must fail with
# ENOSPC (and the FLUSHes after them may fail); the server must go on
# answering: every durable block reads back while the disk is full, and
# once space is back, writes and FLUSHes work again.  STATE gets
# "durable I" for every block a successful FLUSH covered.
import errno
import os
import sys

import nbd

uri, how, state = sys.argv[1:4]
mode, path = how.split(":", 1)
BS = 65536
h = nbd.NBD()
h.connect_uri(uri)
durable, pending, nospc = set(), set(), 0


def fill(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while mode == "fill":
            os.write(fd, bytes(4096))
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
    os.close(fd)


def check_reads():
    for i in sorted(durable):
        if h.pread(BS, i * BS) != bytes([i + 1]) * BS:
            raise SystemExit("durable block %d reads wrong data" % i)


for i in range(36):
    full = 12 <= i < 24
    if i == 12:
        fill(path)
    if i == 24:
        os.unlink(path)
    try:
        h.pwrite(bytes([i + 1]) * BS, i * BS)
        if full:
            raise SystemExit("block %d was written on a full disk" % i)
        pending.add(i)
    except nbd.Error as e:
        if not full or e.errnum not in (errno.ENOSPC, errno.EIO):
            raise SystemExit("block %d: %s" % (i, e))
        nospc += e.errnum == errno.ENOSPC
    if i % 4 == 3:
        try:
            h.flush()
            durable |= pending
            pending.clear()
        except nbd.Error as e:
            if not full:
                raise SystemExit("FLUSH after block %d: %s" % (i, e))
    if full:
        check_reads()           # the server still answers
if nospc == 0:
    raise SystemExit("no write failed with ENOSPC")
check_reads()
h.shutdown()
with open(state, "w") as f:
    for i in sorted(durable):
        f.write("durable %d\n" % i)
