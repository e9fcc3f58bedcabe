#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# libnbd is mapped only by a server that reads a remote image: serving a
# local overlay leaves it (and libxml2, ICU, libstdc++ that it pulls in)
# out of the process; a remote-backed overlay loads it at its first
# read, and reads the same as qemu-img does.  cowbd-img too loads it only
# for a remote image (each start cost 9 ms more when it was linked).
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/remote-functions.sh"
cd "$tmp"

maps_have_libnbd ()
{
    grep -q '/libnbd\.so' "/proc/$server_pid/maps"
}

make_image qcow2 local.qcow2
start_server local.qcow2
nbdcopy "$(uri)" local.out || fail "reading the local overlay"
qemu-img compare -q -U -f raw -F qcow2 local.out local.qcow2 ||
    fail "local overlay reads differently"
! maps_have_libnbd || fail "libnbd mapped while serving a local image"
stop_server

qemu-img create -q -f raw golden.raw 16M
qemu-io -f raw -c 'write -P 0x5a 0 2M' -c 'write -P 0xa5 10M 1M' \
    golden.raw > /dev/null
start_remote
qemu-img create -q -f qcow2 -b "$(golden_uri)" -F raw remote.qcow2
qemu-io -f qcow2 -c 'write -P 0x77 1M 64K' remote.qcow2 > /dev/null
qemu-img convert -O raw remote.qcow2 want.raw
# ld.so names each object it loads: LD_DEBUG=files.
loads_libnbd ()
{
    LD_DEBUG=files "$@" 2>&1 >/dev/null | grep -q 'file=libnbd\.so'
}
cowbd-img info local.qcow2 > /dev/null || fail "cowbd-img info local.qcow2"
! loads_libnbd cowbd-img info local.qcow2 ||
    fail "cowbd-img loads libnbd for a local image"
loads_libnbd cowbd-img compare remote.qcow2 want.raw ||
    fail "cowbd-img did not load libnbd for a remote base"
cowbd-img compare remote.qcow2 want.raw ||
    fail "cowbd-img reads the remote-backed overlay differently"

start_server remote.qcow2
nbdcopy "$(uri)" remote.out || fail "reading the remote-backed overlay"
cmp remote.out want.raw || fail "remote-backed overlay reads differently"
maps_have_libnbd || fail "libnbd not mapped after reading a remote base"
stop_server
stop_remote
