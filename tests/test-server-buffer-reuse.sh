#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A connection reuses its request buffers, and gives each request the
# smallest free buffer that fits:
# - under a mixed load (reads and writes of 4 KiB, 256 KiB and 1 MiB
#   and block status queries, which take a 32 KiB buffer, in random
#   order, QD in flight) the server allocates at most one buffer per
#   size class for each request it holds at once, however many requests
#   it serves;
# - rounds of 15 reads of 4 KiB and one of 1 MiB, sent together, hold
#   one 1 MiB buffer and fifteen small ones, not sixteen of 1 MiB: a
#   pool that handed a small read the free 1 MiB buffer would allocate
#   another for the large read, round after round, until every buffer
#   was large (it held 16 MiB).
. "${srcdir:-.}/metrics-functions.sh"
requires $PYTHON -c 'import nbd'

script=$(cd "$srcdir" && pwd)/test-server-buffer-reuse.py
QD=16 N=3000 CLASSES=4 SMALL=15 ROUNDS=40

qemu-img create -q -f qcow2 "$tmp/img.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x5a 0 16M' -c 'write -P 0x3c 32M 8M' \
    "$tmp/img.qcow2" >/dev/null

# load ARGS...: runs the client on a new server; sets allocs and peak.
load ()
{
    start_metrics_server "$tmp/img.qcow2"
    timeout -k 5 120 $PYTHON "$script" "$(uri)" "$@" ||
        fail "client $*: failed"
    scrape "$tmp/m.txt"
    allocs=$(metric "$tmp/m.txt" cowbd_request_buffer_allocations_total)
    peak=$(metric "$tmp/m.txt" cowbd_request_buffer_peak_bytes)
    echo "$*: $allocs buffers allocated, at most $peak bytes held" >&2
    stop_server
}

# A request whose reply is out goes back to the pool when the event loop
# next runs; the client may have sent its next requests by then, so the
# server may hold up to twice what the client has in flight.
load mixed $QD $N
[ "$allocs" -gt 0 ] || fail "mixed: no buffer was allocated"
[ "$allocs" -le $(( 2 * QD * CLASSES )) ] ||
    fail "mixed: $allocs buffers allocated for $N requests, $QD in flight"
[ "$peak" -le $(( 2 * QD * (1 << 20) )) ] ||
    fail "mixed: $peak bytes held at once, $QD requests in flight"

# Each round holds one 1 MiB buffer; requests of rounds before whose
# replies are out but that are not back in the pool yet add theirs
# (a loaded machine saw three at once).  Half of the requests holding
# 1 MiB buffers is far from the one a round needs, and far from all.
load rounds $SMALL $ROUNDS
bound=$(( (SMALL + 1) * (1 << 20) / 2 ))
[ "$peak" -le "$bound" ] ||
    fail "rounds: $peak bytes held at once (bound $bound)"
