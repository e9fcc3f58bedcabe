#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Multi-conn: nbdcopy --connections=4 of a raw source (random data, zero
# runs and holes) into the export of a fresh overlay whose backing file
# holds other data; nbdcopy really opens 4 connections (it only does when
# the server advertises multi-conn), they share one engine image opened
# once, and afterwards qemu-img compare finds the overlay equal to the
# source, qemu-img check finds nothing wrong and the backing file is
# unchanged.  QED and qcow2 overlays over raw, QED and qcow2 backing
# files, and raw images (a copy of the base: there the copy overwrites it).
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdcopy --version
requires qemu-io --version

cd "$tmp"

python3 - source.raw <<'PY'
import random, sys
r = random.Random(7)
M = 1 << 20
with open(sys.argv[1], "wb") as f:
    f.truncate(64 * M)
    for i in range(64):
        k = r.random()
        if k < 0.5:             # random data somewhere in this MiB
            f.seek(i * M + r.randrange(0, M // 2))
            f.write(r.randbytes(r.randrange(1, M // 2)))
        elif k < 0.6:           # allocated zeros
            f.seek(i * M)
            f.write(bytes(M))
PY

for o in $FORMATS; do
    for b in $(bases_for $o); do
        fresh_clone $o $b

        serve -v -- "$tmp/clone.$o" --run "nbdcopy --connections=4 \
            --threads=4 --flush '$tmp/source.raw' \"\$uri\"" 2> nbdkit.log ||
            { tail -20 nbdkit.log; fail "$o/$b: nbdcopy failed"; }
        conns=$(grep -c 'accepted connection' nbdkit.log || true)
        [ "$conns" -ge 4 ] ||
            fail "$o/$b: nbdcopy used $conns connection(s), not 4"
        # One engine image shared by all of them: opened once.
        opens=$(grep -c "export '': opened .*clone.$o" nbdkit.log || true)
        [ "$opens" -eq 1 ] ||
            fail "$o/$b: the image was opened $opens times"

        qemu-img compare source.raw clone.$o ||
            fail "$o/$b: the overlay differs from the source"
        clone_intact $o $b
    done
done
