#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Power loss, simulated: the fault shim journals every write, truncate,
# allocation and sync cowbd makes to its image while a client
# (test-fault-powercut.py) writes, zeroes and flushes; powercut.py then
# rebuilds the file as a power cut at POWERCUT_CUTS points (default 300,
# fixed seed) would leave it and checks each state with qemu-img: no
# corruption, every flushed or FUA write intact, nothing read that was
# never written.  raw, QED, qcow2 with lazy refcounts on and off.
#
# The negative control: with syncs turned into no-ops (FAULT_NOSYNC=1)
# the same run must find lost writes, or the test could not fail.
# `make check-powercut` runs it longer (more requests and cuts).
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/fault-functions.sh"
requires cowbd-img --version

cd "$tmp"
uri="nbd+unix:///?socket=$tmp/sock"
cuts=${POWERCUT_CUTS:-300}
ops=${POWERCUT_OPS:-120}
seed=${POWERCUT_SEED:-1}

# record KIND [SHIM-ENV...]: serves a fresh image with the journal on
# while the client runs; leaves img.orig, orig.raw and journal.
record ()
{
    local kind=$1; shift
    fault_image $kind img 4M
    cp img img.orig
    qemu-img convert -f "$(fault_fmt $kind)" -O raw img.orig orig.raw
    rm -f journal
    touch journal
    fault_cowbd FAULT_PATH="$tmp/img" FAULT_RECORD="$tmp/journal" "$@" \
        -- -f "$(fault_fmt $kind)" "$tmp/img"
    $PYTHON "$abs_srcdir/test-fault-powercut.py" "$uri" "$tmp/journal" \
        "$seed" "$ops" || fail "$kind: the client"
    fault_stop
    [ "$server_rc" -eq 0 ] || fail "$kind: cowbd exited $server_rc"
}

# The states are many files of a few MiB: on tmpfs, next to the backing
# file that their header names.
work=$(mktemp -d /dev/shm/test-fault-powercut.XXXXXX)
cleanup_fn "rm -rf '$work'"
simulate ()
{
    ln -sf "$tmp/img.base" "$work/img.base"
    $PYTHON "$abs_srcdir/powercut.py" --journal journal --image img.orig \
        --orig-raw orig.raw --format "$(fault_fmt $1)" --work "$work" \
        --cuts "$cuts" --seed "$seed" --label $1 "${@:2}"
}

for kind in raw qed qcow2-lazy qcow2; do
    record $kind
    simulate $kind || fail "$kind: a simulated power cut lost data"
done

# Negative control: syncs skipped, so flushed data is not durable.
for kind in raw qcow2; do
    record $kind FAULT_NOSYNC=1
    if simulate $kind --no-check 2>nosync.err; then
        fail "$kind: without syncs no cut lost anything: the test is blind"
    fi
    grep -q 'neither its original content\|corruption' nosync.err ||
        fail "$kind: the control failed for another reason: $(head -3 nosync.err)"
    echo "$kind without syncs: $(grep -c '^cut ' nosync.err) cuts fail, as they must"
done
