#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# --handshake-limit, --max-connections and the cap on option data
# (test-server-limits.py): clients that stall the handshake are dropped
# when its time is up, one announcing 1 GiB of option data at once, one
# past the connection limit before the greeting; real clients are served
# meanwhile, -v says why each was dropped, a flood of refused clients
# gets one log line, and the server exits cleanly.
. "${srcdir:-.}/server-functions.sh"
requires /usr/bin/python3 -c 'import nbd'
requires nbdinfo --version

limits_py ()
{
    /usr/bin/python3 "$srcdir/test-server-limits.py" "$1" "$tmp/sock" \
        "$(uri)" "${@:2}"
}

make_image raw img.raw

start_server -v --handshake-limit=2 "$tmp/img.raw"
limits_py deadline 2
stop_server
n=$(grep -c 'closed: handshake not finished within 2 s' "$tmp/server.log") ||
    true
[ "$n" -eq 3 ] || fail "-v logged $n handshake timeouts, expected 3"

start_server -v "$tmp/img.raw"
limits_py bigopt
stop_server
grep -q 'announces 1073741824 bytes .*dropping the client' \
    "$tmp/server.log" || fail "-v did not log the dropped 1 GiB option"

start_server --max-connections=3 "$tmp/img.raw"
limits_py maxconn 3
stop_server
n=$(grep -c 'refused: 3 connections open' "$tmp/server.log") || true
[ "$n" -eq 1 ] || fail "$n log lines for 21 refused clients, expected 1"

# Bad values are refused on the command line.
expect_fail cowbd --handshake-limit=soon "$tmp/img.raw"
expect_fail cowbd --max-connections=-1 "$tmp/img.raw"
