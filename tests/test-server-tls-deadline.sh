#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# --handshake-limit covers the TLS handshake after STARTTLS: clients
# stalled inside it are dropped when the limit is up (before the TLS
# handshake's own 30 s timeout), a real TLS client is served meanwhile
# (test-server-limits.py tls).
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/tls-functions.sh"
requires nbdinfo --version

make_psk "$tmp/keys.psk" alice
make_image raw img.raw
start_server -v --handshake-limit=2 --tls=require --tls-psk="$tmp/keys.psk" \
    "$tmp/img.raw"
/usr/bin/python3 "$srcdir/test-server-limits.py" tls "$tmp/sock" \
    "nbds+unix://alice@/?socket=$tmp/sock&tls-psk-file=$tmp/keys.psk" 2
stop_server
n=$(grep -c 'closed: handshake not finished within 2 s' "$tmp/server.log") ||
    true
[ "$n" -eq 2 ] || fail "-v logged $n handshake timeouts, expected 2"
