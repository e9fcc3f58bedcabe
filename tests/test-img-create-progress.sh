#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img create -o preallocation=full -p` of 1 GiB (raw and qed) on a
# pseudo-terminal draws a progress bar (percentage and rate) up to 100%;
# interrupted by SIGINT while preallocating, it leaves no file and dies of
# SIGINT.  Not on a terminal, -p draws nothing.
#
# To interrupt while preallocating, whatever the machine's speed, the
# process is stopped as soon as its first progress line shows (pty_run).
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

# Big files go to tmpfs when there is one.
dir="$tmp"
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    dir=$(mktemp -d /dev/shm/test-img-create-progress.XXXXXX)
    cleanup_fn rm -rf "$dir"
fi

for fmt in raw qed; do
    f="$dir/full.$fmt"

    # Uninterrupted: a bar, a rate, 100% at the end, and the image.
    r=$(pty_run "$tmp/out" 0 cowbd-img create -f $fmt \
            -o preallocation=full -p "$f" 1G)
    [ "$r" = "exit 0" ] || { cat "$tmp/out"; fail "$fmt: $r"; }
    grep -q $'\r\\[#*-*\\] ' "$tmp/out" || fail "$fmt: no bar"
    grep -q '100.0%' "$tmp/out" || fail "$fmt: never reached 100%"
    grep -Eq '[0-9.]+ [KMG]iB/s' "$tmp/out" || fail "$fmt: no rate"
    [ "$(stat -c %s "$f")" -ge $((1 << 30)) ] || fail "$fmt: too small"
    qemu-img info "$f" | grep -q '^virtual size: 1 GiB' || fail "$fmt: size"
    [ $fmt = raw ] || qemu-img check "$f" > /dev/null || fail "$fmt: check"
    rm -f "$f"

    # Interrupted while preallocating: no file, killed by SIGINT.
    r=$(pty_run "$tmp/out" 1 cowbd-img create -f $fmt \
            -o preallocation=full -p "$f" 1G)
    [ "$r" = "signal 2" ] || { cat "$tmp/out"; fail "$fmt interrupted: $r"; }
    grep -q '%' "$tmp/out" || fail "$fmt: no progress before the interrupt"
    grep -q 'interrupted' "$tmp/out" || fail "$fmt: no message"
    [ ! -e "$f" ] || fail "$fmt: an interrupted create left $f"

    # Not a terminal: no bar.
    cowbd-img create -f $fmt -o preallocation=full -p "$f" 64M > "$tmp/out"
    if grep -q -e '%' -e $'\r' "$tmp/out"; then
        fail "$fmt: progress drawn on a file"
    fi
    rm -f "$f"
done
