#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# --base-cache over a TLS-PSK remote: nbdkit (file plugin, every read
# logged) requires TLS with a pre-shared key; a clone made by cowbd-img
# names it as nbds+unix://alice@/golden?...&tls-psk-file=...  cowbd reads
# the clone through the cache: the remote's data, sent once; after a
# restart no data is fetched again.  Without the key, the open fails
# with one line naming the remote.
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/remote-functions.sh"
. "${srcdir:-.}/tls-functions.sh"
cd "$tmp"

make_psk "$tmp/keys.psk" alice
head -c 8M /dev/urandom > golden.raw
start_remote --tls=require --tls-psk="$tmp/keys.psk"
tb="nbds+unix://alice@/golden?socket=$tmp/gsock&tls-psk-file=$tmp/keys.psk"
cowbd-img create -q -f qcow2 -b "$tb" -F raw c.qcow2 ||
    fail "create over TLS-PSK"
mkdir cache

read_clone ()
{
    local d0
    d0=$(remote_bytes data)
    start_server --base-cache="$tmp/cache" c=c.qcow2
    rm -f out.raw
    timeout 60 nbdcopy "$(uri c)" out.raw || fail "$1: reading the clone"
    stop_server
    cmp out.raw golden.raw || fail "$1: the clone differs from the remote"
    data=$(( $(remote_bytes data) - d0 ))
    echo "$test_name: $1: remote sent $data bytes of data"
}

read_clone "cold cache"
[ "$data" -eq $((8 << 20)) ] || fail "cold cache: not 8 MiB once"
read_clone "restart"
[ "$data" -eq 0 ] || fail "restart: data fetched again"

# A clone naming the remote without its key: refused at open.
cowbd-img create -q -f qcow2 -u \
    -b "nbds+unix:///golden?socket=$tmp/gsock" -F raw nokey.qcow2 8M
expect_fail cowbd-img check nokey.qcow2
expect_fail cowbd -U "$tmp/sock2" --base-cache="$tmp/cache" nokey.qcow2
grep -q "golden?socket=$tmp/gsock" stderr ||
    fail "the refusal does not name the remote"
stop_remote
exit 0
