#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Ctrl-C (SIGINT) in the middle of the long commands, on a terminal with
# -p (the first progress line tells us the work is under way):
#  - convert removes the target it was making;
#  - commit leaves the overlay whole: the chain reads as before and both
#    images pass qemu-img check;
#  - rebase leaves the overlay on its old backing file, reading as before.
# Each dies of SIGINT, with one message.  Uninterrupted, each finishes.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

dir="$tmp"
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    dir=$(mktemp -d /dev/shm/test-img-interrupt.XXXXXX)
    cleanup_fn rm -rf "$dir"
fi
cd "$dir"

# interrupted OUT: pty_run's answer was death by SIGINT, with a message.
interrupted ()
{
    [ "$1" = "signal 2" ] || { cat out.txt; fail "not killed by SIGINT: $1"; }
    grep -q 'cowbd-img: .*interrupted' out.txt || fail "no message"
}

# A base of 256 MiB of data, an overlay writing over all of it.
qemu-img create -q -f qed base.qed 256M
qemu-io -c 'write -P 0x11 0 256M' base.qed > /dev/null
cowbd-img create -q -b base.qed over.qed
for (( i = 0; i < 256; i += 2 )); do echo "write -P 0x22 ${i}M 1M"; done |
    qemu-io over.qed > /dev/null
qemu-img convert -O raw over.qed expect.raw

# convert
r=$(pty_run out.txt 1 cowbd-img convert -p -m 1 -O qed over.qed copy.qed)
interrupted "$r"
[ ! -e copy.qed ] || fail "an interrupted convert left its target"
r=$(pty_run out.txt 0 cowbd-img convert -p -O qed over.qed copy.qed)
[ "$r" = "exit 0" ] || fail "convert: $r"
grep -q '100.0%' out.txt || fail "convert: no progress to 100%"
qemu_same -F raw copy.qed expect.raw

# commit
sum=$(sha256sum < over.qed)
r=$(pty_run out.txt 1 cowbd-img commit -p over.qed)
interrupted "$r"
[ "$(sha256sum < over.qed)" = "$sum" ] || fail "interrupted commit changed the overlay"
qemu_same -F raw over.qed expect.raw
qemu_check_clean over.qed
qemu_check_clean base.qed
r=$(pty_run out.txt 0 cowbd-img commit -p over.qed)
[ "$r" = "exit 0" ] || fail "commit: $r"
grep -q 'Image committed.' out.txt || fail "commit: no 'Image committed.'"
qemu_same -F raw base.qed expect.raw

# rebase (onto nothing: all 256 MiB differ from zeros)
cowbd-img create -q -b base.qed over2.qed
r=$(pty_run out.txt 1 cowbd-img rebase -p -b '' over2.qed)
interrupted "$r"
qemu-img info --output=json over2.qed > info.json
[ "$(json_get info.json backing-filename)" = base.qed ] ||
    fail "interrupted rebase changed the backing file"
qemu_same -F raw over2.qed expect.raw
qemu_check_clean over2.qed
r=$(pty_run out.txt 0 cowbd-img rebase -p -b '' over2.qed)
[ "$r" = "exit 0" ] || fail "rebase: $r"
qemu-img info --output=json over2.qed > info.json
[ -z "$(json_get info.json backing-filename)" ] || fail "rebase: backing left"
qemu_same -F raw over2.qed expect.raw
