#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img info` beside `qemu-img info`, output compared byte for byte:
#  - --backing-chain over a raw <- qed <- qcow2 <- qcow2 chain, human and
#    JSON;
#  - -U/--force-share while qemu-nbd serves the top image read-write
#    (without -U both refuse, with it both show the same);
#  - an overlay whose backing file is missing, a directory or not an
#    image: both show the overlay's own fields and exit 0 (we also warn
#    on stderr, naming the backing problem); with --backing-chain both
#    exit 1.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"
requires qemu-nbd --version

cd "$tmp"

# same ARGS...: cowbd-img info and qemu-img info print the same (human and
# JSON) and both exit 0.
same ()
{
    local out
    for out in human json; do
        cowbd-img info --output=$out "$@" > ours 2> ours.err ||
            { cat ours.err >&2; fail "cowbd-img info $*"; }
        qemu-img info --output=$out "$@" > theirs 2> theirs.err ||
            { cat theirs.err >&2; fail "qemu-img info $*"; }
        diff -u theirs ours >&2 || fail "info --output=$out $* differs"
    done
}

qemu-img create -q -f raw base.raw 8M
qemu-img create -q -f qed -b base.raw -F raw mid.qed
qemu-io -c 'write -P 1 0 1M' mid.qed > /dev/null
qemu-img create -q -f qcow2 -b mid.qed -F qed upper.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 -b upper.qcow2 -F qcow2 top.qcow2 16M

same --backing-chain top.qcow2
same --backing-chain mid.qed
same top.qcow2

# -U while qemu-nbd holds the top image.
qemu-nbd -k "$tmp/q.sock" -f qcow2 top.qcow2 2> qemu-nbd.log &
qpid=$!
cleanup_fn "kill $qpid 2>/dev/null"
wait_for_socket "$tmp/q.sock"
wait_for_lock top.qcow2
expect_fail cowbd-img info top.qcow2
grep -q 'in use' "$tmp/stderr" || fail "info without -U: no 'in use'"
expect_fail qemu-img info top.qcow2
same -U --backing-chain top.qcow2
same --force-share top.qcow2
kill $qpid; wait $qpid 2>/dev/null || true

# A broken chain: upper.qcow2's backing file mid.qed goes missing,
# becomes a directory, becomes junk (upper.qcow2 records format qed).
mv mid.qed saved.qed
for broken in missing directory junk; do
    case $broken in
        directory) mkdir mid.qed ;;
        junk) rmdir mid.qed; echo junk > mid.qed ;;
    esac
    same upper.qcow2
    cowbd-img info upper.qcow2 2> err > /dev/null
    grep -q "warning: .*mid.qed" err || fail "$broken: no warning: $(cat err)"
    [ "$(wc -l < err)" -eq 1 ] || fail "$broken: more than one line: $(cat err)"
    expect_fail cowbd-img info --backing-chain top.qcow2
    grep -q "mid.qed" "$tmp/stderr" || fail "$broken: --backing-chain error"
    expect_fail qemu-img info --backing-chain top.qcow2
done
# The image itself unreadable as its format: an error, not a warning.
expect_fail cowbd-img info -f qed upper.qcow2
expect_fail qemu-img info -f qed upper.qcow2
