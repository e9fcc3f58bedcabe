#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Malformed traffic over raw sockets (test-server-malformed.py): garbage
# handshakes, huge and inconsistent options, unknown commands and flags,
# requests past the end, a write cut short, a broken stream.  The server
# survives each, keeps serving other clients and exits cleanly with no
# sanitizer report.
. "${srcdir:-.}/server-functions.sh"
requires /usr/bin/python3 --version
requires nbdinfo --version

for fmt in $FORMATS; do
    make_image $fmt img.$fmt
    cp "$tmp/img.$fmt" "$tmp/before.$fmt"
    start_server -v "$tmp/img.$fmt"
    /usr/bin/python3 "$srcdir/test-server-malformed.py" "$tmp/sock" 16777216
    # Another client, and the server is still fine.
    nbdinfo "$(uri)" > /dev/null
    qemu-io -f raw -c 'read -P 0x33 15M 1M' "$(uri)" > /dev/null ||
        fail "$fmt: data read back wrong after the malformed clients"
    stop_server
    grep -q 'closed: protocol error' "$tmp/server.log" ||
        fail "-v did not log the protocol errors"
    # Nothing any of them sent reached the image.
    qemu-img compare -q "$tmp/before.$fmt" "$tmp/img.$fmt" ||
        fail "$fmt: the malformed clients changed the image"
done
