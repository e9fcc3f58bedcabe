#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Data written through the plugin with nbdsh (aligned, unaligned, across
# clusters, over backing data and holes, FUA, write zeroes) reads back
# identically in the same run and after an nbdkit restart, qemu-img reads
# the same from the overlay file, qemu-img check finds nothing wrong, the
# backing file is byte-for-byte unchanged and the overlay is marked clean
# after nbdkit exits.  QED and qcow2 overlays, each over a raw, a QED and a
# qcow2 backing file, and raw images.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdsh --version

cd "$tmp"

# io.py: MODE=write applies the writes to the export and to $EXPECTED,
# then (like MODE=verify) compares the whole export with $EXPECTED.
cat > io.py <<'PY'
import os, random
import nbd

expected = os.environ["EXPECTED"]
M = 1 << 20
# (offset, length, kind): data writes, FUA writes and zeroes.
ops = [
    (1000, 10, "data"),                 # tiny, unaligned, over 0x11 data
    (65536 - 100, 300, "data"),         # across a cluster boundary
    (512 * 1024 + 7, 5000, "fua"),      # partial cluster over backing data
    (M + 12345, 70000, "data"),         # partial clusters over a hole
    (2 * M + 4096, 4096, "data"),       # inside the 0x22 range
    (4 * M, 256 * 1024, "data"),        # whole clusters
    (8 * M + 100, M, "data"),           # over and past the 0x33 range
    (16 * M, 3 * M, "fua"),             # large
    (64 * M - 100, 100, "data"),        # the last bytes
    (8 * M + 64 * 1024, 128 * 1024, "zero"),      # zero written data
    (63 * M + 65536, 65536, "zero-notrim"),       # zero backing data
    (30 * M + 1, 200000, "zero"),       # zero over a hole, unaligned
]

def apply(h, f):
    rng = random.Random(1234)
    for off, n, kind in ops:
        if kind.startswith("zero"):
            flags = nbd.CMD_FLAG_NO_HOLE if kind == "zero-notrim" else 0
            h.zero(n, off, flags)
            buf = bytes(n)
        else:
            buf = rng.randbytes(n)
            h.pwrite(buf, off, nbd.CMD_FLAG_FUA if kind == "fua" else 0)
        f.seek(off)
        f.write(buf)
    h.flush()

def verify(h):
    size = h.get_size()
    assert size == os.path.getsize(expected), "size %d" % size
    with open(expected, "rb") as f:
        off = 0
        while off < size:
            n = min(4 * M, size - off)
            got = h.pread(n, off)
            want = f.read(n)
            if got != want:
                i = next(i for i in range(n) if got[i] != want[i])
                raise SystemExit("mismatch at offset %d: got %#x, want %#x"
                                 % (off + i, got[i], want[i]))
            off += n

if os.environ["MODE"] == "write":
    with open(expected, "r+b") as f:
        apply(h, f)
verify(h)
PY

for o in $FORMATS; do
    for b in $(bases_for $o); do
        rm -f expected.raw
        fresh_clone $o $b
        qemu-img convert -O raw clone.$o expected.raw

        export EXPECTED="$tmp/expected.raw"
        MODE=write serve -- "$tmp/clone.$o" --run "$(run_py io.py)" ||
            fail "$o/$b: writing or reading back in the first run"
        left_clean clone.$o ||
            fail "$o/$b: overlay left marked as needing a check"

        MODE=verify serve -- "$tmp/clone.$o" --run "$(run_py io.py)" ||
            fail "$o/$b: data did not survive an nbdkit restart"

        qemu-img compare -q clone.$o expected.raw ||
            fail "$o/$b: qemu-img reads other data from the overlay"
        clone_intact $o $b
    done
done
