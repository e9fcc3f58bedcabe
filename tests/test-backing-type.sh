#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Only regular files and block devices are images.  An overlay whose
# backing file is a FIFO (open(2) of which blocks until a writer comes),
# a Unix socket, a directory or a character device is refused with one
# line naming it, at once, by cowbd-img check, by cowbd and by the
# plugin; cowbd-img info shows the overlay with one warning line naming
# it and exits 0, as qemu-img info does for a backing file it cannot
# open.  A FIFO named as the image itself is refused by all.  Every
# command runs under timeout: before the fix the FIFO hung them all.
. "${srcdir:-.}/functions.sh"
requires qemu-img --version
requires /usr/bin/python3 --version
requires mkfifo --version

cd "$tmp"
mkfifo fifo
mkdir dir
/usr/bin/python3 -c 'import socket, sys
socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$tmp/sock"
declare -A what=([fifo]="a FIFO" [sock]="a socket" [dir]="a directory"
                 [chr]="a character device")
for t in fifo sock dir; do
    qemu-img create -q -f qcow2 -u -b "$tmp/$t" -F raw ov-$t.qcow2 1M
done
qemu-img create -q -f qcow2 -u -b /dev/zero -F raw ov-chr.qcow2 1M
qemu-img create -q -f qed -u -b "$tmp/fifo" -F raw ov-fifo.qed 1M

# refused WHAT CMD...: CMD exits non-zero within 10 s, saying it is
# WHAT (nbdkit_env: the plugin runs in a sanitizer build too).
refused ()
{
    local what=$1 rc=0
    shift
    nbdkit_env timeout -k 1 10 "$@" > /dev/null 2> err.txt || rc=$?
    [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "$*: hung"
    [ $rc -ne 0 ] || fail "$*: not refused"
    grep -q -e Sanitizer -e 'runtime error' err.txt && fail "$*: sanitizer"
    grep -q "$what, not a regular file or block device" err.txt ||
        { cat err.txt; fail "$*: no reason given"; }
}

# shown WHAT CMD...: CMD exits 0 within 10 s, printing the image, with
# one warning line saying the backing file is WHAT.
shown ()
{
    local what=$1 rc=0
    shift
    timeout -k 1 10 "$@" > out.txt 2> err.txt || rc=$?
    [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "$*: hung"
    [ $rc -eq 0 ] || { cat err.txt; fail "$*: exit $rc (qemu-img info: 0)"; }
    grep -q '^image: ' out.txt || fail "$*: the overlay was not shown"
    [ "$(wc -l < err.txt)" -eq 1 ] &&
        grep -q "warning: .*$what, not a regular file or block device" \
            err.txt || { cat err.txt; fail "$*: no one-line warning"; }
}

for t in fifo sock dir chr; do
    shown "${what[$t]}" cowbd-img info ov-$t.qcow2
    refused "${what[$t]}" cowbd-img check ov-$t.qcow2
    [ "$(wc -l < err.txt)" -eq 1 ] || fail "cowbd-img check ov-$t: not one line"
    refused "${what[$t]}" cowbd -U "$tmp/srv.sock" ov-$t.qcow2
    grep -q "ov-$t.qcow2: backing file $tmp/$t\|ov-chr.qcow2: backing file /dev/zero" err.txt ||
        fail "cowbd does not name ov-$t.qcow2's backing file"
done
shown "a FIFO" cowbd-img info ov-fifo.qed
refused "a FIFO" cowbd-img info fifo
refused "a FIFO" cowbd -U "$tmp/srv.sock" fifo

if [ -f "${COWBD_PLUGIN:-}" ] && nbdkit --version > /dev/null 2>&1; then
    for t in fifo sock dir chr; do
        refused "${what[$t]}" nbdkit -U - "$COWBD_PLUGIN" \
            file=ov-$t.qcow2 --run true
    done
    refused "a FIFO" nbdkit -U - "$COWBD_PLUGIN" file=fifo --run true
fi
