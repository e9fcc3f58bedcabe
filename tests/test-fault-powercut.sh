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
# A flush whose new clusters read as zeros before makes data and tables
# durable with one sync, one with a fill from the backing file with two
# (formats/cow.c, "One sync or two"); so does qcow2 without lazy
# refcounts, whose new clusters are counted ahead, when the file grows
# (formats/qcow2-refcount.c, "Counted ahead"): for each of QED and qcow2
# with and without lazy refcounts the run must contain flushes of both
# kinds (the simulator counts them from the journal).
#
# The negative controls: with syncs turned into no-ops (FAULT_NOSYNC=1)
# the same run must find lost writes, and with the one-sync flush taken
# even over fills and, for qcow2 without lazy refcounts, over counts
# raised by the allocation itself (COWBD_TEST_UNSAFE_ONE_SYNC=1, a
# variable read only for this control) it must find blocks read as zeros
# that nobody wrote, or for qcow2 an entry whose count is 0 (qemu-img
# check: corruption), or the test could not fail.
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

# flushes KIND: the count of flushes of a kind ("one sync", "two syncs")
# in the simulator's output sim.out.
flushes ()
{
    sed -n "s/.*flushes: \([0-9]*\) with one sync after table writes, \([0-9]*\) with two syncs.*/\1 \2/p" sim.out |
        case $1 in one) cut -d' ' -f1 ;; two) cut -d' ' -f2 ;; esac
}

for kind in raw qed qcow2-lazy qcow2; do
    record $kind
    simulate $kind >sim.out || { cat sim.out; fail "$kind: a simulated power cut lost data"; }
    cat sim.out
    case $kind in
        qed|qcow2-lazy|qcow2)
            [ "$(flushes one)" -gt 0 ] && [ "$(flushes two)" -gt 0 ] ||
                fail "$kind: the run lacks one-sync or two-sync flushes" ;;
    esac
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

# Negative control: one sync even where the new clusters took a fill, so
# an entry may be durable before the backing data copied under it.  More
# cuts, as only cuts between a fill's table write and its sync can tell.
for kind in qed qcow2-lazy; do
    record $kind COWBD_TEST_UNSAFE_ONE_SYNC=1
    grep -q 'COWBD_TEST_UNSAFE_ONE_SYNC' "$tmp/server.log" ||
        fail "$kind: cowbd did not take the unsafe knob"
    if simulate $kind --no-check --cuts $((cuts * 3)) >sim.out 2>unsafe.err; then
        fail "$kind: with fills under one sync no cut lost anything: the test is blind"
    fi
    grep -q 'changed, yet nothing wrote it\|neither its original content' unsafe.err ||
        fail "$kind: the control failed for another reason: $(head -3 unsafe.err)"
    echo "$kind with fills under one sync: $(grep -c '^cut ' unsafe.err) cuts fail, as they must"
done

# Negative control for the counts: qcow2 without lazy refcounts, with the
# knob, counts nothing ahead and writes each allocation's count in the
# same sync as its entry; qemu-img check must then find an entry whose
# count is 0 in some cut.
record qcow2 COWBD_TEST_UNSAFE_ONE_SYNC=1
grep -q 'COWBD_TEST_UNSAFE_ONE_SYNC' "$tmp/server.log" ||
    fail "qcow2: cowbd did not take the unsafe knob"
if simulate qcow2 --cuts $((cuts * 3)) >sim.out 2>unsafe.err; then
    fail "qcow2: with counts under one sync no cut lost anything: the test is blind"
fi
grep -q 'corruption' unsafe.err ||
    fail "qcow2: the control failed for another reason: $(head -3 unsafe.err)"
echo "qcow2 with counts under one sync: $(grep -c 'corruption' unsafe.err) cuts find corruption, as they must, e.g."
grep -m1 'corruption' unsafe.err
