# SPDX-License-Identifier: BSD-3-Clause
# 64 requests in flight at once on one connection, every byte checked:
# 64 concurrent writes of distinct patterns, then 64 concurrent reads,
# then a mix of both.  Usage: test-server-aio.py URI
import sys
import nbd

h = nbd.NBD()
h.connect_uri(sys.argv[1])
N = 64
size = h.get_size()
span = size // N                       # one slot per request
lengths = [4096 * (1 + i % 16) + (i * 37) % 512 for i in range(N)]
offsets = [i * span + (i * 509) % 4096 for i in range(N)]

def pattern(i, seed):
    return bytes(((seed * 131 + i * 7 + j) & 255) for j in range(256)) * \
        (lengths[i] // 256 + 1)

def wait_all(cookies):
    pending = set(cookies)
    while pending:
        pending = {c for c in pending if not h.aio_command_completed(c)}
        if pending:
            h.poll(-1)

data = [pattern(i, 1)[:lengths[i]] for i in range(N)]
cookies = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data[i])),
                        offsets[i]) for i in range(N)]
assert h.aio_in_flight() >= 1
wait_all(cookies)
h.flush()

bufs = [nbd.Buffer(lengths[i]) for i in range(N)]
cookies = [h.aio_pread(bufs[i], offsets[i]) for i in range(N)]
wait_all(cookies)
for i in range(N):
    assert bufs[i].to_bytearray() == data[i], "read %d differs" % i

# Mixed: odd slots rewritten while even ones are read.
cookies = []
for i in range(N):
    if i % 2:
        data[i] = pattern(i, 2)[:lengths[i]]
        cookies.append(h.aio_pwrite(
            nbd.Buffer.from_bytearray(bytearray(data[i])), offsets[i]))
    else:
        bufs[i] = nbd.Buffer(lengths[i])
        cookies.append(h.aio_pread(bufs[i], offsets[i]))
wait_all(cookies)
for i in range(0, N, 2):
    assert bufs[i].to_bytearray() == data[i], "mixed read %d differs" % i
for i in range(N):
    assert h.pread(lengths[i], offsets[i]) == data[i], "slot %d" % i
h.shutdown()
print("ok")
