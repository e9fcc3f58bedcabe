#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Extents seen by libnbd block_status (base:allocation) through the plugin
# agree with qemu-img map on the same image: data where qemu-img map says
# data, zero where it says zero, offset by offset.  QED and qcow2 overlays
# with data, zero clusters, discarded clusters and partial writes over
# raw, QED and qcow2 backing files (the QED and qcow2 ones with zero
# clusters of their own), those backing files themselves, a raw image
# written likewise, and block_status with REQ_ONE.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdsh --version
requires qemu-io --version

cd "$tmp"

# Both sides become "start length data zero" lines, adjacent runs with the
# same flags merged.
cat > merge.py <<'PY'
def merge(runs):
    out = []
    for start, length, data, zero in runs:
        if out and out[-1][2:] == [data, zero] and \
           out[-1][0] + out[-1][1] == start:
            out[-1][1] += length
        else:
            out.append([start, length, data, zero])
    return "".join("%d %d %s %s\n" % tuple(r) for r in out)
PY

cat > bs.py <<'PY'
import os, sys
sys.path.insert(0, os.environ["TMPDIR_T"])
import nbd
from merge import merge

size = h.get_size()
runs = []
def cb(ctx, offset, entries, err):
    global pos
    assert ctx == "base:allocation"
    for i in range(0, len(entries), 2):
        n, flags = entries[i], entries[i + 1]
        n = min(n, size - pos)
        runs.append((pos, n, not (flags & nbd.STATE_HOLE),
                     bool(flags & nbd.STATE_ZERO)))
        pos += n
    return 0
pos = 0
while pos < size:
    h.block_status(min(size - pos, 1 << 30), pos, cb)
open(os.environ["OUT"], "w").write(merge(runs))

# REQ_ONE: one extent, starting where asked, agreeing with the full walk.
for start, length, data, zero in runs[:50]:
    got = []
    h.block_status(length, start,
                   lambda c, o, e, err: got.extend(e) or 0,
                   nbd.CMD_FLAG_REQ_ONE)
    assert len(got) == 2 and 0 < got[0] <= length, (start, got)
    assert (not (got[1] & nbd.STATE_HOLE)) == data, (start, got)
PY

cat > map.py <<'PY'
import json, sys
from merge import merge
m = json.load(open(sys.argv[1]))
print(merge([(e["start"], e["length"], e["data"], e["zero"]) for e in m]),
      end="")
PY

# compare_map IMAGE FORMAT: block_status through the plugin vs qemu-img map.
compare_map ()
{
    local img=$1 fmt=$2
    qemu-img map -f "$fmt" --output=json "$img" > map.json
    (cd "$tmp" && python3 map.py map.json) > want
    TMPDIR_T="$tmp" OUT="$tmp/got" serve -- "$tmp/$img" format="$fmt" \
        --run "$(run_py --base-allocation bs.py)" ||
        fail "$img: block_status failed"
    if ! diff -u want got; then
        fail "$img: block_status (+) differs from qemu-img map (-)"
    fi
}

for b in $BASES; do
    rm -f base.$b
    make_base base.$b $b
    if [ $b != raw ]; then
        qemu-io -f $b -c 'write -z 1M 128k' -c 'write -z 8M 64k' base.$b \
            > /dev/null
    fi
    compare_map base.$b $b
done

for o in $FORMATS; do
    for b in $(bases_for $o); do
        rm -f clone.$o
        make_clone clone.$o base.$b $b
        qemu-io -f $o \
            -c 'write -P 0x55 200k 300k' \
            -c 'write -z 2M 64k' \
            -c 'write -P 0x66 30M 1M' \
            -c 'write -P 0x77 4095k 2k' \
            -c 'write -P 0x88 40M 256k' \
            -c 'discard 40M 128k' \
            -c 'write -P 0x99 67108000 864' \
            clone.$o > /dev/null
        compare_map clone.$o $o
    done
done
