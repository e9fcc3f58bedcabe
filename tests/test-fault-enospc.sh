#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# ENOSPC: the fault shim makes cowbd's disk full (its allocating writes of
# data fail with ENOSPC) for a while in a write+flush workload
# (test-fault-enospc.py).  Clients get ENOSPC, the server goes on
# answering, and once space is back writes and FLUSHes work again.  After
# a clean stop the image is closed clean and qemu-img check exits 0 - the
# clusters the failed writes had reserved are given back, not leaked -
# and every flushed block reads back.  QED and qcow2, lazy refcounts on
# and off.  Then the same on a real full disk: a 16 MiB tmpfs mounted in
# a mount namespace of the test's own (skipped where unshare -m cannot).
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/fault-functions.sh"

cd "$tmp"
uri="nbd+unix:///?socket=$tmp/sock"

# judge KIND: after the clean stop.
judge ()
{
    local kind=$1 fmt=$(fault_fmt $1)
    info=$(qemu-img info --output=json -f $fmt img)
    case $kind in
        qcow2*) grep -q '"dirty-flag": false' <<<"$info" ||
                    fail "$kind: left dirty after a clean stop" ;;
    esac
    qemu-img check -f $fmt img > check.out 2>&1 || {
        cat check.out >&2
        fail "$kind: qemu-img check after ENOSPC and a clean close"
    }
    cmds=()
    for i in $(sed -n 's/^durable //p' state); do
        cmds+=(-c "read -P $(( i + 1 )) $(( i * 65536 )) 64k")
    done
    [ ${#cmds[@]} -ge 16 ] || fail "$kind: too few durable blocks"
    qemu-io -r -f $fmt "${cmds[@]}" img > verify.out
    if grep -q -i -e fail -e mismatch verify.out; then
        fail "$kind: a flushed block was lost"
    fi
}

for kind in qed qcow2-lazy qcow2; do
    fmt=$(fault_fmt $kind)
    fault_image $kind img
    rm -f arm state
    fault_cowbd FAULT_PATH="$tmp/img" FAULT_OP=pwritev FAULT_NTH=1 \
        FAULT_COUNT=forever FAULT_ERRNO=ENOSPC FAULT_ARM="$tmp/arm" \
        -- -f $fmt "$tmp/img"
    $PYTHON "$abs_srcdir/test-fault-enospc.py" "$uri" "arm:$tmp/arm" state ||
        fail "$kind: the workload"
    fault_stop
    [ "$server_rc" -eq 0 ] || fail "$kind: cowbd exited $server_rc"
    judge $kind
done

# A real full disk.  The image lives on the small tmpfs, its backing file
# outside; the server and the client run inside the namespace.
if ! unshare -m true 2>/dev/null; then
    echo "$test_name: tmpfs part skipped: unshare -m is not allowed"
    exit 0
fi
mkdir small
for kind in qed qcow2-lazy qcow2; do
    fmt=$(fault_fmt $kind)
    fault_image $kind img
    rm -f state
    unshare -m bash -c '
        set -e
        mount -t tmpfs -o size=16M tmpfs small
        cp img small/img
        ln -s "$1/img.base" small/img.base
        cowbd -U "$1/sock" -f "$2" --fork -P "$1/pid" "$1/small/img" \
            2>"$1/server.log"
        rc=0
        '"$PYTHON"' "$3/test-fault-enospc.py" "$4" "fill:$1/small/fill" \
            "$1/state" || rc=$?
        kill -TERM $(cat "$1/pid")
        for i in $(seq 100); do kill -0 $(cat "$1/pid") 2>/dev/null || break; sleep 0.1; done
        cp small/img img
        exit $rc' - "$tmp" $fmt "$abs_srcdir" "$uri" ||
        { cat server.log >&2; fail "$kind on a full tmpfs: the workload"; }
    grep -q -e Sanitizer -e 'runtime error' server.log && fail "sanitizer report"
    judge $kind
done
