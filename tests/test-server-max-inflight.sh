#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# --max-inflight bounds the memory of requests in flight across all
# connections: 20 clients each stalled inside a 32 MiB WRITE (header and
# 24 MiB of payload sent, the rest never) make the server's resident
# memory grow by at most the cap plus a bounded overhead, where without
# a binding cap (--max-inflight=2G, the control) it grows by far more;
# a small read is served meanwhile, and once the stalled clients leave
# a full 32 MiB write is served.
. "${srcdir:-.}/server-functions.sh"
requires $PYTHON -c 'import nbd'
requires nbdsh --version

script=$(cd "$srcdir" && pwd)/test-server-max-inflight.py
cd "$tmp"
truncate -s 64M img.raw

# run CAP: sets grew to the RSS growth in MiB.
run ()
{
    start_server --format=raw --max-inflight="$1" "$tmp/img.raw"
    timeout -k 5 120 $PYTHON "$script" \
        "$tmp/sock" "$server_pid" 20 24 > out-$1.txt ||
        { cat out-$1.txt; fail "--max-inflight=$1: clients not served"; }
    stop_server
    cat out-$1.txt >&2
    grep -q '^served$' out-$1.txt || fail "--max-inflight=$1: no end"
    grew=$(sed -n 's/^grew //p' out-$1.txt)
}

run 64M
capped=$grew
# The cap (64 MiB), the per-connection allowance (1 MiB each) and the
# connections' input buffers (64 KiB each), with room to spare.
[ "$capped" -le $(( 64 + 20 + 40 )) ] ||
    fail "--max-inflight=64M: RSS grew by $capped MiB"
grep -q 'with all 24 MiB taken: [12]$' out-64M.txt ||
    fail "--max-inflight=64M: the cap let other writes in"

run 2G
control=$grew
[ "$control" -gt $(( 64 + 20 + 40 )) ] ||
    fail "control: without a binding cap RSS grew only $control MiB"
