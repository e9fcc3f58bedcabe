# SPDX-License-Identifier: BSD-3-Clause
# The client of test-server-buffer-reuse.sh.
#   test-server-buffer-reuse.py URI mixed QD N
#       N requests in random order, QD in flight: reads and writes of
#       4 KiB, 256 KiB and 1 MiB and block status queries
#   test-server-buffer-reuse.py URI rounds SMALL N
#       N rounds of SMALL reads of 4 KiB and then one of 1 MiB sent at
#       once; each round waits for all its replies
import random
import sys

import nbd

uri, mode, a, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
h = nbd.NBD()
h.add_meta_context("base:allocation")
h.connect_uri(uri)
assert h.can_meta_context("base:allocation")
rng = random.Random(19)
size = h.get_size()
sizes = (4096, 256 * 1024, 1 << 20)
bufs = {s: nbd.Buffer(s) for s in sizes}


def offset(s):
    return rng.randrange((size - s) // 4096) * 4096


def mixed(qd, n):
    issued = 0
    while issued < n or h.aio_in_flight() > 0:
        while issued < n and h.aio_in_flight() < qd:
            kind = rng.randrange(4)
            if kind == 3:
                h.aio_block_status(1 << 20, offset(1 << 20),
                                   lambda *args: 0)
            elif kind == 0:
                s = sizes[rng.randrange(3)]
                h.aio_pwrite(bufs[s], offset(s))
            else:
                s = sizes[rng.randrange(3)]
                h.aio_pread(bufs[s], offset(s))
            issued += 1
        h.poll(-1)


def rounds(small, n):
    for _ in range(n):
        for _ in range(small):
            h.aio_pread(bufs[4096], offset(4096))
        h.aio_pread(bufs[1 << 20], offset(1 << 20))
        while h.aio_in_flight() > 0:
            h.poll(-1)


(mixed if mode == "mixed" else rounds)(a, n)
h.shutdown()
