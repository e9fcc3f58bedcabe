# SPDX-License-Identifier: BSD-3-Clause
# The workload of test-fault-flush.sh (run with /usr/bin/python3):
#   test-fault-flush.py URI STATE
# Writes 40 blocks of 64 KiB (block i holds byte i + 1) at 64 KiB * i,
# every fifth with FUA, a FLUSH after every second.  The server's shim
# fails a sync somewhere in it: from the first failed request on, every
# FLUSH and every FUA write must fail with EIO, and reads must go on.
# STATE gets "durable I" for every block a successful FLUSH (or its own
# FUA) made durable, and "failed N" (the request that failed first).
import errno
import sys

import nbd

uri, state = sys.argv[1], sys.argv[2]
BS = 65536
h = nbd.NBD()
h.connect_uri(uri)

failed = None
durable, pending = set(), set()
n = 0


def run(fn):
    """True if the request succeeds, False if it fails with EIO."""
    global failed, n
    n += 1
    try:
        fn()
        return True
    except nbd.Error as e:
        if e.errnum != errno.EIO:
            raise SystemExit("request %d failed with %s, not EIO" % (n, e))
        if failed is None:
            failed = n
        return False


def must_fail(what, ok):
    if ok and failed is not None:
        raise SystemExit("%s succeeded after request %d failed" %
                         (what, failed))


for i in range(40):
    data = bytes([i + 1]) * BS
    fua = i % 5 == 4
    flags = nbd.CMD_FLAG_FUA if fua else 0
    was_failed = failed is not None
    ok = run(lambda: h.pwrite(data, i * BS, flags))
    if fua:
        must_fail("FUA write %d" % i, ok and was_failed)
        if ok:
            durable.add(i)
    if ok:
        pending.add(i)
    if i % 2 == 1:
        was_failed = failed is not None
        ok = run(h.flush)
        must_fail("FLUSH after write %d" % i, ok and was_failed)
        if ok:
            durable |= pending
            pending.clear()

if failed is None:
    raise SystemExit("no request failed: the injected fault was never hit")
# Two more flushes, long after the failure: still EIO.
for k in range(2):
    must_fail("a late FLUSH", run(h.flush))
# Reads go on, and the durable blocks read what was written.
for i in sorted(durable):
    if h.pread(BS, i * BS) != bytes([i + 1]) * BS:
        raise SystemExit("block %d reads wrong data after the failure" % i)
h.shutdown()

with open(state, "w") as f:
    f.write("failed %d\n" % failed)
    for i in sorted(durable):
        f.write("durable %d\n" % i)
