# SPDX-License-Identifier: BSD-3-Clause
# Read, write, flush, trim, zero and block status over one export, the
# boundaries included, through libnbd.  Usage: test-server-io.py URI
# The export is 16 MiB and holds make_image's pattern (server-functions.sh).
import sys
import nbd

uri = sys.argv[1]
MiB = 1 << 20
h = nbd.NBD()
h.add_meta_context("base:allocation")
h.add_meta_context("qemu:allocation-depth")
h.connect_uri(uri)
size = h.get_size()
assert size == 16 * MiB, size
assert h.can_meta_context("base:allocation")
assert h.can_meta_context("qemu:allocation-depth")

# A mirror of what the export should hold, kept in step with every write.
model = bytearray(h.pread(size, 0))
assert model[0:MiB] != b"\0" * MiB, "the image's pattern is missing"
assert model[15 * MiB:] == b"\x33" * MiB

def check(offset, length):
    got = h.pread(length, offset)
    assert got == model[offset:offset + length], \
        "mismatch in [%d, +%d)" % (offset, length)

def write(buf, offset, flags=0):
    h.pwrite(buf, offset, flags)
    model[offset:offset + len(buf)] = buf

# Writes across the export: unaligned, across cluster boundaries, at the
# very start and the very end.
write(b"A", 0)
write(b"Z", size - 1)
write(b"\xee" * 4097, 65536 - 2048)
write(bytes(range(256)) * 1024, 3 * MiB - 100)
write(b"\x5a" * (2 * MiB), size - 2 * MiB, nbd.CMD_FLAG_FUA)
check(0, size)
check(size - 1, 1)
check(size - 4096, 4096)

# The largest request the server advertises works.
maxb = h.get_block_size(nbd.SIZE_MAXIMUM)
assert maxb == 32 * MiB
h.flush()

# Zeroing: plain (may punch), NO_HOLE, FAST_ZERO; each reads back zeros.
def zero(length, offset, flags=0):
    try:
        h.zero(length, offset, flags)
    except nbd.Error as e:
        # A fast zero may be refused, and must then change nothing.
        assert flags & nbd.CMD_FLAG_FAST_ZERO and e.errno == "ENOTSUP", e
        return False
    model[offset:offset + length] = bytes(length)
    return True

zero(MiB, 4 * MiB)
zero(100, 4 * MiB + MiB + 7, nbd.CMD_FLAG_NO_HOLE)
zero(65536, 8 * MiB, nbd.CMD_FLAG_FAST_ZERO)
zero(1, size - 1, nbd.CMD_FLAG_FUA)
check(0, size)

# Trim: afterwards the range reads as zeros or as before, nothing else.
before = h.pread(MiB, 5 * MiB)
h.trim(MiB, 5 * MiB)
after = h.pread(MiB, 5 * MiB)
for i in range(0, MiB, 4096):
    a = after[i:i + 4096]
    assert a == before[i:i + 4096] or a == bytes(4096), "trim at %d" % i
model[5 * MiB:6 * MiB] = after
h.flush()
check(0, size)

# Block status: the extents cover the whole export, REQ_ONE gives one.
def extents(length, offset, flags=0):
    got = {}
    def cb(ctx, off, ents, err):
        assert err.value == 0 if hasattr(err, "value") else True
        got[ctx] = (off, list(zip(ents[0::2], ents[1::2])))
        return 0
    h.block_status(length, offset, cb, flags)
    return got

for ctx, (off, ents) in extents(size, 0).items():
    assert off == 0
    total = sum(l for l, _ in ents)
    assert total == size, "%s covers %d bytes" % (ctx, total)
    for l, _ in ents:
        assert l > 0
# Ranges base:allocation calls zero do read as zeros.
off = 0
for l, flags in extents(size, 0)["base:allocation"][1]:
    if flags & nbd.STATE_ZERO:
        assert h.pread(l, off) == bytes(l), "zero extent at %d reads data" % off
    off += l
# The zeroed range is reported as zero.
flags = extents(MiB, 4 * MiB, nbd.CMD_FLAG_REQ_ONE)["base:allocation"][1]
assert len(flags) == 1 and flags[0][0] <= MiB, flags
assert flags[0][1] & nbd.STATE_ZERO, flags
# REQ_ONE at the last byte.
for ctx, (off, ents) in extents(1, size - 1, nbd.CMD_FLAG_REQ_ONE).items():
    assert off == size - 1 and len(ents) == 1 and ents[0][0] == 1, (ctx, ents)
# Unaligned status queries.
for ctx, (off, ents) in extents(12345, 777).items():
    assert sum(l for l, _ in ents) <= 12345 or ctx == "base:allocation"
    assert sum(l for l, _ in ents) >= 1
# Allocation depth: 1 where the image wrote.
depth = extents(MiB, 15 * MiB, nbd.CMD_FLAG_REQ_ONE)["qemu:allocation-depth"]
assert depth[1][0][1] == 1, depth

# Structured reads: holes come as holes, DF gives a single chunk.
zero(2 * MiB, 10 * MiB)
h.flush()
def chunks(length, offset, flags=0):
    seen = []
    def cb(buf, off, status, err):
        seen.append((status, off, len(buf)))
        return 0
    buf = h.pread_structured(length, offset, cb, flags)
    assert buf == model[offset:offset + length]
    return seen
c = chunks(6 * MiB, 9 * MiB)
assert any(s == nbd.READ_HOLE for s, _, _ in c), c
assert any(s == nbd.READ_DATA for s, _, _ in c), c
assert sum(n for _, _, n in c) == 6 * MiB
c = chunks(6 * MiB, 9 * MiB, nbd.CMD_FLAG_DF)
assert len(c) == 1 and c[0][0] == nbd.READ_DATA, c
c = chunks(MiB, 10 * MiB, nbd.CMD_FLAG_DF)
assert len(c) == 1 and c[0][0] == nbd.READ_HOLE, c
c = chunks(100, 3 * MiB)
assert len(c) == 1, c

# Cache succeeds and changes nothing.
h.cache(MiB, 0)
check(0, MiB)

# Out of range: the error the specification names, and the connection
# stays usable.  libnbd's own checks are turned off to let them through.
h.set_strict_mode(0)
def expect(errno, fn, *args):
    try:
        fn(*args)
    except nbd.Error as e:
        assert e.errno == errno, "%s%r: %s, wanted %s" % (fn.__name__, args,
                                                       e.errno, errno)
    else:
        raise AssertionError("%s%r succeeded" % (fn.__name__, args))
    check(size - 4096, 4096)

expect("EINVAL", h.pread, 1, size)
expect("EINVAL", h.pread, 4096, size - 4095)
expect("EINVAL", h.pread, 1, 2**63)
expect("EINVAL", h.pread, 1, 2**64 - 1)
expect("ENOSPC", h.pwrite, b"x", size)
expect("ENOSPC", h.pwrite, b"x" * 4096, size - 1)
expect("ENOSPC", h.pwrite, b"x", 2**64 - 1)
expect("ENOSPC", h.zero, 2, size - 1)
expect("EINVAL", h.trim, 2, size - 1)
expect("EINVAL", h.cache, 2, size - 1)
expect("EINVAL", h.block_status, 2, size - 1, lambda *a: 0)
expect("EINVAL", h.pread, 0, 0)
expect("EINVAL", h.pwrite, b"x", 0, nbd.CMD_FLAG_DF)
expect("EINVAL", h.pread, 33 * MiB, 0)
h.flush()
check(0, size)
h.shutdown()
print("ok")
