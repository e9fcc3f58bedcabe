#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cowbd --base-cache: two clones of one remote base read the same data,
# which the remote (nbdkit, every read logged by its log filter) serves
# once; after a restart of cowbd, and from the nbdkit plugin, nothing but
# the cache's fingerprint blocks is fetched again, which the server's
# figures (query-stats) count; what the clones read is the remote's data.
. "${srcdir:-.}/server-functions.sh"
requires nbdkit --filter=log null --version
requires nbdcopy --version
requires jq --version
requires cowbdctl --version
cd "$tmp"

qemu-img create -q -f raw golden.raw 8M
qemu-io -f raw -c 'write -P 0x11 0 3M' -c 'write -P 0x22 3M 5M' \
    golden.raw > /dev/null
rm -f gsock remote.log
nbdkit -f -r -U "$tmp/gsock" -e golden --filter=log file \
    "$tmp/golden.raw" logfile="$tmp/remote.log" 2> nbdkit.err &
remote_pid=$!
cleanup_fn "kill \$remote_pid 2>/dev/null"
wait_for_socket "$tmp/gsock"
for c in c1 c2; do
    qemu-img create -q -f qcow2 -b "nbd+unix:///golden?socket=$tmp/gsock" \
        -F raw $c.qcow2
done
mkdir cache

# Bytes the remote has sent so far.
remote_read_bytes ()
{
    local sum=0 n
    for n in $(sed -n 's/.* Read id=[0-9]* offset=0x[0-9a-f]* count=\(0x[0-9a-f]*\).*/\1/p' \
                   remote.log); do
        sum=$((sum + n))
    done
    echo $sum
}

read_clones ()
{
    local c
    for c in c1 c2; do
        rm -f out-$c.raw
        nbdcopy "$(uri $c)" out-$c.raw || fail "reading $c"
        cmp out-$c.raw golden.raw || fail "$c differs from the remote"
    done
}

start_server --base-cache="$tmp/cache" c1=c1.qcow2 c2=c2.qcow2
read_clones
stop_server
first=$(remote_read_bytes)
# One copy of the 8 MiB, plus the cache's fingerprint blocks: 32 KiB per
# open of the remote (a front end opens an export at start-up, closes it,
# and opens it again at the first connection): fewer than 128 KiB.
fp=$((128 << 10))
[ "$first" -ge $((8 << 20)) ] && [ "$first" -le $(( (8 << 20) + fp )) ] ||
    fail "two clones: the remote sent $first bytes, not 8 MiB once"
ls cache/*.basecache > /dev/null || fail "no cache file"

start_server --base-cache="$tmp/cache" --control="$tmp/ctl" \
    c1=c1.qcow2 c2=c2.qcow2
read_clones
# The figures (query-stats, as --metrics): what the remote sent this
# time, and reads the cache served alone.
stats=$(cowbdctl -s "$tmp/ctl" --output=json stats c1) ||
    fail "cowbdctl stats"
stop_server
again=$(( $(remote_read_bytes) - first ))
# (The counter lives as long as the remote is open: the open at start-up
# and its fingerprint are not in it.)
fetched=$(jq '.exports[0]."remote-fetched-bytes"' <<<"$stats")
[ "$fetched" -gt 0 ] && [ "$fetched" -le "$again" ] ||
    fail "remote-fetched-bytes $fetched, the remote sent $again: $stats"
[ "$(jq '.exports[0]."remote-cache-hits"' <<<"$stats")" -gt 0 ] &&
[ "$(jq '.exports[0]."remote-cache-misses"' <<<"$stats")" = 0 ] ||
    fail "a warm cache: hits and no misses expected: $stats"
[ "$again" -le "$fp" ] ||
    fail "after a restart the remote sent $again bytes again"

# The nbdkit plugin (base-cache=) finds the same cache warm.
if [ -f "${COWBD_PLUGIN:-}" ]; then
    before=$(remote_read_bytes)
    rm -f out-plugin.raw
    nbdkit_env timeout -k 10 120 nbdkit -r -U - "$COWBD_PLUGIN" c1.qcow2 \
        base-cache="$tmp/cache" --run 'nbdcopy "$uri" out-plugin.raw' ||
        fail "the plugin with base-cache="
    cmp out-plugin.raw golden.raw || fail "the plugin reads otherwise"
    plugin=$(( $(remote_read_bytes) - before ))
    [ "$plugin" -le "$fp" ] ||
        fail "the plugin's reads cost the remote $plugin bytes"
    again=$((again + plugin))
fi

# Without the cache each clone reads the remote itself: the test can fail.
start_server c1=c1.qcow2 c2=c2.qcow2
read_clones
stop_server
nocache=$(( $(remote_read_bytes) - first - again ))
[ "$nocache" -ge $((16 << 20)) ] ||
    fail "without the cache the remote sent only $nocache bytes"
exit 0
