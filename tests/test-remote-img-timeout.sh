#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cowbd-img --remote-timeout=SECONDS (a global option): a remote backing
# image whose reads get no answer (nbdkit's delay filter holds each read
# a minute) makes convert fail with one line naming the remote within
# the timeout, where the default (10 s) still waits; a remote that does
# not even answer the handshake (SIGSTOP) makes create -b fail within it
# too.  Bad values are refused.
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/remote-functions.sh"
requires nbdkit --filter=delay null --version
cd "$tmp"

head -c 4M /dev/urandom > golden.raw
start_remote --filter=delay rdelay=60
cowbd-img create -q -f qcow2 -u -b "$(golden_uri)" -F raw c.qcow2 4M

# The default waits 10 s: still running after 4.
rc=0
timeout 4 cowbd-img convert -O raw c.qcow2 out.raw 2> /dev/null || rc=$?
[ "$rc" -eq 124 ] || fail "without --remote-timeout convert ended ($rc)"

rc=0
timeout 20 cowbd-img --remote-timeout=1 convert -O raw c.qcow2 out.raw \
    2> err.txt || rc=$?
cat err.txt
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -lt 128 ] ||
    fail "convert with --remote-timeout=1: status $rc"
[ "$(grep -c . err.txt)" -eq 1 ] || fail "convert: not one line"
grep -q "timed out" err.txt || fail "convert: the line does not say it timed out"
# (Two words work too; the line names the image or the remote.)
rc=0
timeout 20 cowbd-img --remote-timeout 1 compare c.qcow2 golden.raw \
    2> err.txt || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -lt 128 ] ||
    { cat err.txt; fail "compare with --remote-timeout 1: status $rc"; }
stop_remote

# A remote that accepts the connection and then says nothing.
start_remote
kill -STOP "$remote_pid"
rc=0
timeout 20 cowbd-img --remote-timeout=1 create -q -f qcow2 \
    -b "$(golden_uri)" -F raw hung.qcow2 2> err.txt || rc=$?
cat err.txt
kill -CONT "$remote_pid"
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -lt 128 ] ||
    fail "create of a hung remote with --remote-timeout=1: status $rc"
grep -q "golden?socket=$tmp/gsock" err.txt ||
    fail "create: the message does not name the remote"
[ ! -e hung.qcow2 ] || fail "a failed create left hung.qcow2"
stop_remote

for bad in 0 3601 -1 x 1.5 ''; do
    expect_fail cowbd-img --remote-timeout="$bad" info c.qcow2
    grep -q -- "--remote-timeout" stderr || fail "no message for '$bad'"
done
expect_fail cowbd-img --remote-timeout
exit 0
