#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Multi-conn: nbdcopy --connections=4 of a raw source (random data, zero
# runs and holes) into the export of a fresh overlay whose backing file
# holds other data; nbdcopy really opens 4 connections (it only does when
# the server advertises multi-conn), they share one engine image opened
# once, and afterwards qemu-img compare finds the overlay equal to the
# source, qemu-img check finds nothing wrong and the backing file is
# unchanged.  Over a raw and over a QED backing file.
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

for b in raw qed; do
    rm -f base.* clone.qed
    make_base base.$b $b
    make_clone clone.qed base.$b $b
    base_sum=$(sum base.$b)

    serve -v -- "$tmp/clone.qed" --run "nbdcopy --connections=4 --threads=4 \
        --flush '$tmp/source.raw' \"\$uri\"" 2> nbdkit.log ||
        { tail -20 nbdkit.log; fail "$b: nbdcopy failed"; }
    conns=$(grep -c 'accepted connection' nbdkit.log || true)
    [ "$conns" -ge 4 ] || fail "$b: nbdcopy used $conns connection(s), not 4"
    # One engine image shared by all of them: opened once.
    opens=$(grep -c "export '': opened .*clone.qed" nbdkit.log || true)
    [ "$opens" -eq 1 ] || fail "$b: the overlay was opened $opens times"

    qemu-img compare source.raw clone.qed ||
        fail "$b: the overlay differs from the source"
    qemu_check clone.qed
    [ "$(sum base.$b)" = "$base_sum" ] || fail "$b: the backing file changed"
done
