#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# 64 concurrent aio requests on one connection, every byte verified, on
# each format (test-server-aio.py): with the images in the test's
# directory, then on tmpfs, where the server runs small reads, writes,
# allocations and flushes inline on its loop instead of on a worker.
. "${srcdir:-.}/server-functions.sh"
requires $PYTHON -c 'import nbd'

run_aio ()
{
    local fmt=$1
    make_image $fmt img.$fmt
    start_server -t 4 "$tmp/img.$fmt"
    $PYTHON "$srcdir/test-server-aio.py" "$(uri)"
    stop_server
    [ $fmt = raw ] || qemu-img check -q -f $fmt "$tmp/img.$fmt"
}

for fmt in $FORMATS; do
    run_aio $fmt
done

if [ -d /dev/shm ] && shm=$(mktemp -d /dev/shm/cowbd-test-aio.XXXXXX); then
    cleanup_fn "rm -rf '$shm'"
    disk_tmp=$tmp
    tmp=$shm
    for fmt in $FORMATS; do
        run_aio $fmt
    done
    tmp=$disk_tmp
fi
