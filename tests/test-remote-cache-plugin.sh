#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The nbdkit plugin's base-cache=, at the issue's size: a 64 MiB remote
# base (nbdkit's file plugin, every read logged) read through clones
# served by nbdkit + our plugin.  Two clients read one clone at once: the
# remote sends the 64 MiB once.  A second clone in a new nbdkit, and the
# first clone after a restart, fetch no data again: only the fingerprint
# (4 KiB reads, counted apart).  The plugin serves one image per nbdkit
# here: its dir= and clone-from= modes confine backing files, and a
# remote base is refused wherever backing files are confined.
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/remote-functions.sh"
requires test -f "$COWBD_PLUGIN"
requires qemu-io --version
cd "$tmp"

MiB=$((1 << 20))
FP_MAX=$((2 * 8 * 4096))        # as test-remote-cache-64m.sh

remote_clones -- 'write -P 0xd1 40M 64k' 'write -P 0xd2 7340544 512'

# plugin_read CLONE LABEL: one nbdkit serving CLONE with the cache, two
# clients reading it whole at once, each equal to qemu-img's reading;
# sets data and fp, what the remote sent meanwhile.
plugin_read ()
{
    local c=$1 label=$2 d0 f0
    d0=$(remote_bytes data) f0=$(remote_bytes fp)
    rm -f out-1.raw out-2.raw
    nbdkit_env timeout -k 10 120 nbdkit -r -U - "$COWBD_PLUGIN" $c.qcow2 \
        base-cache="$tmp/cache" \
        --run 'nbdcopy "$uri" out-1.raw & p=$!
               nbdcopy "$uri" out-2.raw || exit 1
               wait $p' 2> nbdkit-$c.log ||
        { cat nbdkit-$c.log; fail "$label: reading $c through the plugin"; }
    cmp out-1.raw want-$c.raw && cmp out-2.raw want-$c.raw ||
        fail "$label: $c differs from qemu-img's reading"
    data=$(( $(remote_bytes data) - d0 ))
    fp=$(( $(remote_bytes fp) - f0 ))
    echo "$test_name: $label: remote sent $data bytes of data," \
        "$fp of fingerprint"
    [ "$fp" -gt 0 ] && [ "$fp" -le "$FP_MAX" ] ||
        fail "$label: $fp bytes of fingerprint"
}

plugin_read c1 "cold cache, two clients"
[ "$data" -eq $((64 * MiB)) ] ||
    fail "two clients, cold cache: the remote sent $data bytes, not 64 MiB"
plugin_read c2 "second clone"
[ "$data" -eq 0 ] || fail "the second clone fetched $data bytes again"
plugin_read c1 "restart"
[ "$data" -eq 0 ] || fail "after a restart the remote sent $data bytes again"
stop_remote
exit 0
