#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# I/O through nbdsh's Python API on each format: reads, writes, flush,
# trim, zero and block status, the boundaries and out-of-range requests
# included (test-server-io.py); then qemu-img check on the image.
. "${srcdir:-.}/server-functions.sh"
requires $PYTHON -c 'import nbd'

for fmt in $FORMATS; do
    make_image $fmt img.$fmt
    start_server "$tmp/img.$fmt"
    $PYTHON "$srcdir/test-server-io.py" "$(uri)"
    stop_server
    [ $fmt = raw ] || qemu-img check -q -f $fmt "$tmp/img.$fmt"
done
