#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A client stalled halfway through the TLS handshake delays nobody else
# (test-server-tls-stall.py), and plaintext sent after STARTTLS is refused.
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/tls-functions.sh"
requires nbdinfo --version

make_psk "$tmp/keys.psk" alice
make_image raw img.raw
start_server --tls=require --tls-psk="$tmp/keys.psk" "$tmp/img.raw"
/usr/bin/python3 "$srcdir/test-server-tls-stall.py" "$tmp/sock" \
    nbdinfo --map "nbds+unix://alice@/?socket=$tmp/sock&tls-psk-file=$tmp/keys.psk"
stop_server
