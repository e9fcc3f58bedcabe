# SPDX-License-Identifier: BSD-3-Clause
# boot-reader.py URI BASE_MIB DATA_MIB SEED [GO]: reads an export the way a
# guest boots (for remote-boot-storm.sh): the data extents of the golden
# image in order, in sequential 64 KiB reads, with one random 4 KiB read
# inside the data after every 16th.  The data is DATA_MIB / 4 extents of
# 4 MiB spread evenly over BASE_MIB (as the bench script writes them).
# With GO (a FIFO), it connects, creates GO.SEED.ready, and waits for the
# FIFO's writer to close before it reads, so that the start-up of many
# readers is not part of what is measured.  Prints the wall-clock time
# (seconds since the epoch) at which it finished reading.  Run with
# /usr/bin/python3 (the nbd module).
import random
import sys
import time

import nbd

MIB = 1 << 20
EXT = 4 * MIB
SEQ = 64 << 10
RND = 4 << 10


def extents(base_mib, data_mib):
    n = data_mib * MIB // EXT
    stride = base_mib * MIB // n
    return [i * stride for i in range(n)]


def main():
    uri, base_mib, data_mib, seed = sys.argv[1], int(sys.argv[2]), \
        int(sys.argv[3]), int(sys.argv[4])
    exts = extents(base_mib, data_mib)
    rnd = random.Random(seed)
    h = nbd.NBD()
    h.connect_uri(uri)
    if len(sys.argv) > 5:
        go = sys.argv[5]
        open("%s.%d.ready" % (go, seed), "w").close()
        with open(go) as f:
            f.read()
    reads = 0
    for start in exts:
        for off in range(start, start + EXT, SEQ):
            h.pread(SEQ, off)
            reads += 1
            if reads % 16 == 0:
                e = rnd.choice(exts)
                h.pread(RND, e + rnd.randrange(EXT // RND) * RND)
    print("%.6f" % time.time())
    h.shutdown()


main()
