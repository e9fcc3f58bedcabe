#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cowbd --base-cache, at the issue's size: two clones (two exports of one
# cowbd) of a 64 MiB remote base read it all at once; the remote (nbdkit,
# every read logged) sends those 64 MiB once.  After a restart of cowbd
# with the same cache folder the reads fetch no data again: the remote
# only sends the fingerprint that keys the cache (4 KiB reads, counted
# apart and bounded).  What each clone serves through the cache equals
# qemu-img's reading of its chain straight from the remote.  Without the
# cache each clone fetches the base itself: the counting can fail.
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/remote-functions.sh"
requires qemu-io --version
cd "$tmp"

MiB=$((1 << 20))
# Fingerprint: 8 reads of 4 KiB per open of the remote; a cowbd run opens
# it at most twice (each export is opened at start-up and closed, then
# opened again at its first connection; the two exports share one).
FP_MAX=$((2 * 8 * 4096))

# Data of their own: whole clusters and a partial one (copy-on-write).
remote_clones 'write -P 0xc1 1M 1M' 'write -P 0xc2 5243392 512' -- \
    'write -P 0xd1 40M 64k'

# Both clones read whole at once; each must equal qemu-img's reading.
read_clones ()
{
    local c pids=()
    for c in c1 c2; do
        rm -f out-$c.raw
        timeout 60 nbdcopy "$(uri $c)" out-$c.raw & pids+=($!)
    done
    for c in 0 1; do
        wait "${pids[$c]}" || fail "reading clone $((c + 1))"
    done
    for c in c1 c2; do
        cmp out-$c.raw want-$c.raw || fail "$c differs from qemu-img's reading"
    done
}

# run_clones LABEL [COWBD-OPTIONS]: one cowbd run reading both clones;
# sets data and fp, what the remote sent during the run.
run_clones ()
{
    local label=$1 d0 f0
    shift
    d0=$(remote_bytes data) f0=$(remote_bytes fp)
    start_server "$@" c1=c1.qcow2 c2=c2.qcow2
    read_clones
    stop_server
    data=$(( $(remote_bytes data) - d0 ))
    fp=$(( $(remote_bytes fp) - f0 ))
    echo "$test_name: $label: remote sent $data bytes of data," \
        "$fp of fingerprint"
}

run_clones "cold cache" --base-cache="$tmp/cache"
[ "$data" -eq $((64 * MiB)) ] ||
    fail "two clones, cold cache: the remote sent $data bytes, not 64 MiB once"
[ "$fp" -gt 0 ] && [ "$fp" -le "$FP_MAX" ] ||
    fail "cold cache: $fp bytes of fingerprint"
ls cache/*.basecache > /dev/null || fail "no cache file"

run_clones "restart" --base-cache="$tmp/cache"
[ "$data" -eq 0 ] ||
    fail "after a restart the remote sent $data bytes of data again"
[ "$fp" -gt 0 ] && [ "$fp" -le "$FP_MAX" ] ||
    fail "restart: $fp bytes of fingerprint"

# Without the cache: each clone fetches what it reads of the base.
run_clones "no cache"
[ "$data" -ge $((2 * 64 * MiB - 2 * MiB)) ] ||
    fail "without the cache the remote sent only $data bytes"
[ "$fp" -eq 0 ] || fail "without the cache: $fp bytes in 4 KiB reads"
stop_remote
exit 0
