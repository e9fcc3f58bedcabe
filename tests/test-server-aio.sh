#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# 64 concurrent aio requests on one connection, every byte verified, on
# each format (test-server-aio.py).
. "${srcdir:-.}/test-server-lib.sh"
requires $PYTHON -c 'import nbd'

for fmt in $FORMATS; do
    make_image $fmt img.$fmt
    start_server -t 4 "$tmp/img.$fmt"
    $PYTHON "$srcdir/test-server-aio.py" "$(uri)"
    stop_server
    [ $fmt = raw ] || qemu-img check -q -f $fmt "$tmp/img.$fmt"
done
