# SPDX-License-Identifier: BSD-3-Clause
# The client of test-fault-powercut.sh (run with /usr/bin/python3):
#   test-fault-powercut.py URI JOURNAL SEED OPS
# One connection, one request at a time, OPS requests on 24 hot 4 KiB
# blocks of the first 2 MiB (inside and outside the backing file's data,
# several per cluster): writes, FUA writes, write zeroes and FLUSHes; and,
# so that clusters are allocated all along the run and not only at its
# start, writes to fresh blocks of the whole image, in turn inside the
# backing file's data (its first MiB: the new cluster takes a fill) and
# outside it (nothing below: the flush may take one sync).
# Each request is framed by markers appended to the shim's journal
# (record type 'M', see faultshim.c), which powercut.py reads:
#   "S B G"  generation G of block B is about to be sent
#   "A B G"  it was acknowledged;  "D B G"  acknowledged with FUA
#   "F"      a FLUSH was acknowledged
# Generation G's content is powercut.block_content (B, G); negative
# generations are zeroes.
import os
import random
import struct
import sys

import nbd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from powercut import block_content, BLOCK  # noqa: E402

uri, journal, seed, ops = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4])
rng = random.Random(seed)
fd = os.open(journal, os.O_WRONLY | os.O_APPEND)


def marker(text):
    data = text.encode()
    os.write(fd, struct.pack("<BBHIQQQ", ord("M"), 0, 0, 0, 0, 0,
                             len(data)) + data)


hot = sorted(rng.sample(range(2 << 20 >> 12), 24))
h = nbd.NBD()
h.connect_uri(uri)
blocks = h.get_size() // BLOCK
fresh = [[b for b in range(blocks) if b not in hot and (b < 256) == inside]
         for inside in (True, False)]
for f in fresh:
    rng.shuffle(f)
gen = 0
for i in range(ops):
    r = rng.random()
    if r < 0.2:
        h.flush()
        marker("F")
        continue
    b = rng.choice(hot)
    if r > 0.8 and fresh[i % 2]:
        b = fresh[i % 2].pop()
    gen += 1
    g = -gen if r < 0.3 else gen
    fua = rng.random() < 0.15
    flags = nbd.CMD_FLAG_FUA if fua else 0
    marker("S %d %d" % (b, g))
    if g < 0:
        h.zero(BLOCK, b * BLOCK, flags)
    else:
        h.pwrite(block_content(b, g), b * BLOCK, flags)
    marker("%s %d %d" % ("D" if fua else "A", b, g))
h.shutdown()
