#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Write zeroes, fast zero, trim, FUA and cache through the plugin on QED and
# qcow2 overlays over raw, QED and qcow2 backing files, and on raw images: a
# fast zero that would need a copy on write (part of a cluster over backing
# data) fails with ENOTSUP and changes nothing, not even the file (raw: it
# zeroes or fails with ENOTSUP); fast zeroes of whole clusters, or over
# backing holes, succeed; zeroes with and without NO_HOLE read back as
# zeros; a trimmed range reads as zeros or as what was written there, never
# as anything else; the result survives a restart and qemu-img reads the
# same from the file.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdsh --version

cd "$tmp"

cat > ops.py <<'PY'
import errno, hashlib, os
import nbd

K, M = 1024, 1 << 20
model_path = os.environ["EXPECTED"]
model = bytearray(open(model_path, "rb").read())

def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()

def zero(n, off, flags=0):
    h.zero(n, off, flags)
    model[off:off + n] = bytes(n)

def check(what):
    got = h.pread(len(model), 0)
    if got != model:
        i = next(i for i in range(len(model)) if got[i] != model[i])
        raise SystemExit("%s: offset %d reads %#x, expected %#x"
                         % (what, i, got[i], model[i]))

if os.environ["MODE"] == "ops":
    before = sha(os.environ["OVERLAY"])
    # Part of a cluster over backing data: an overlay would need a copy on
    # write and must refuse; a raw image has none and may zero.
    cow = not os.environ["OVERLAY"].endswith(".raw")
    for n, off in ((1000, 100), (64 * K, 32 * K), (200 * K, 900 * K)):
        try:
            h.zero(n, off, nbd.CMD_FLAG_FAST_ZERO)
        except nbd.Error as e:
            assert e.errnum in (errno.ENOTSUP, errno.EOPNOTSUPP), e
            continue
        if cow:
            raise SystemExit("fast zero of %d at %d succeeded" % (n, off))
        model[off:off + n] = bytes(n)
    check("after refused fast zeroes")
    assert not cow or sha(os.environ["OVERLAY"]) == before, \
        "a refused fast zero wrote"

    zero(128 * K, 64 * K, nbd.CMD_FLAG_FAST_ZERO)      # whole clusters
    zero(1000, M + 100, nbd.CMD_FLAG_FAST_ZERO)        # over a backing hole
    zero(32 * M, 32 * M, nbd.CMD_FLAG_FAST_ZERO)       # large, over 0x44
    zero(100, 200)                                     # partial, COW
    h.pwrite(b"\xee" * 256 * K, 4 * M, nbd.CMD_FLAG_FUA)
    model[4 * M:4 * M + 256 * K] = b"\xee" * 256 * K
    zero(64 * K + 7, 4 * M + 3, nbd.CMD_FLAG_NO_HOLE)  # written data
    zero(5000, 2 * M + 10, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
    check("after zeroes")

    # Trim: each byte reads as zero or as what it held.
    h.pwrite(b"\xdd" * 192 * K, 512 * K)
    model[512 * K:704 * K] = b"\xdd" * 192 * K
    for n, off in ((128 * K, 512 * K), (3000, 700 * K), (64 * K, 4 * M)):
        old = bytes(model[off:off + n])
        h.trim(n, off)
        got = h.pread(n, off)
        bad = [i for i in range(n) if got[i] not in (0, old[i])]
        assert not bad, "trim at %d: offset %d reads %#x" % (
            off, off + bad[0], got[bad[0]])
        model[off:off + n] = got
    h.cache(8 * M, 0)
    h.flush()
    check("after trims")
    open(model_path, "wb").write(model)
else:
    check("after a restart")
PY

for o in $FORMATS; do
    for b in $(bases_for $o); do
        rm -f expected.raw
        fresh_clone $o $b
        qemu-img convert -O raw clone.$o expected.raw
        export EXPECTED="$tmp/expected.raw" OVERLAY="$tmp/clone.$o"

        MODE=ops serve -- "$tmp/clone.$o" --run "$(run_py ops.py)" ||
            fail "$o/$b: zero, trim or fast zero"
        MODE=verify serve -- "$tmp/clone.$o" --run "$(run_py ops.py)" ||
            fail "$o/$b: after a restart"
        qemu-img compare -q clone.$o expected.raw ||
            fail "$o/$b: qemu-img reads other data from the overlay"
        clone_intact $o $b
    done
done
