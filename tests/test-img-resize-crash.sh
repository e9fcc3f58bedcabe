#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img resize` killed (SIGKILL) at random moments, 60 rounds over
# qcow2 (grow past the L1 table, shrink), a qcow2 overlay grown over its
# longer backing file (zero clusters first) and QED likewise: afterwards
# cowbd opens the image read-write (repairing what the crash left) and
# serves it with the old size or the new one, `qemu-img check` finds it
# clean, and the data written before reads back.  COWBD_TEST_PAUSE makes
# each resize pause between its steps so that kills land inside it too.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"
requires cowbd --version
requires nbdinfo --version
requires timeout --version

cd "$tmp"

qemu-img create -q -f qcow2 base.qcow2 64M
qemu-io -c 'write -P 0x11 0 64M' base.qcow2 > /dev/null

# fresh KIND: img (a fresh image of that kind), and the resize arguments.
fresh ()
{
    case $1 in
        grow)
            qemu-img create -q -f qcow2 -o cluster_size=4096 img 1M
            args=(img 4G) ;;
        shrink)
            qemu-img create -q -f qcow2 -o cluster_size=4096 img 8M
            qemu-io -c 'write -P 0x33 4M 4M' img > /dev/null
            args=(--shrink img 1M) ;;
        overlay)
            qemu-img create -q -f qcow2 -o cluster_size=4096 \
                -b base.qcow2 -F qcow2 img 1M
            args=(img 32M) ;;
        qed)
            qemu-img create -q -f qed -b base.qcow2 -F qcow2 img 1M
            args=(img 32M) ;;
    esac
    qemu-io -c 'write -P 0x22 0 512k' img > /dev/null
}

# old_new KIND: the sizes the image may have afterwards.
sizes ()
{
    case $1 in
        grow) echo "1048576 4294967296" ;;
        shrink) echo "8388608 1048576" ;;
        *) echo "1048576 33554432" ;;
    esac
}

kinds=(grow shrink overlay qed)
n_old=0 n_new=0

# How long each kind takes uninterrupted here (process start included:
# slow under sanitizers, on a loaded machine): kills land in [0, that).
declare -A took
for kind in "${kinds[@]}"; do
    fresh "$kind"
    t0=$(date +%s%N)
    COWBD_TEST_PAUSE=30000 cowbd-img resize -q "${args[@]}"
    took[$kind]=$(( ($(date +%s%N) - t0) / 1000000 + 1 ))
    echo "$kind takes ${took[$kind]} ms"
done
for round in $(seq 1 60); do
    kind=${kinds[round % 4]}
    fresh "$kind"
    COWBD_TEST_PAUSE=30000 cowbd-img resize -q "${args[@]}" &
    pid=$!
    ms=$(( RANDOM % ${took[$kind]} ))
    sleep "$(( ms / 1000 )).$(printf %03d $(( ms % 1000 )))"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true

    # cowbd opens it read-write (a dirty image is repaired there).
    timeout 60 cowbd -U - img --run 'nbdinfo --size "$uri"' > size ||
        fail "round $round ($kind): cowbd cannot serve the image"
    read -r old new <<< "$(sizes "$kind")"
    size=$(cat size)
    [ "$size" = "$old" ] || [ "$size" = "$new" ] ||
        fail "round $round ($kind): size $size is neither $old nor $new"
    if [ "$size" = "$old" ]; then n_old=$((n_old + 1)); else n_new=$((n_new + 1)); fi
    echo "round $round ($kind): size $size"
    qemu_check_clean img
    qemu-io -c 'read -P 0x22 0 512k' img > /dev/null ||
        fail "round $round ($kind): the data written before is lost"
    if [ "$kind" = overlay ] || [ "$kind" = qed ]; then
        [ "$size" = "$old" ] ||
            qemu-io -c "read -P 0 1M 31M" img > /dev/null ||
            fail "round $round ($kind): the new part reads the backing file"
    fi
done

# The kills must have landed on both sides of the size change.
echo "old size $n_old times, new size $n_new times"
[ "$n_old" -gt 0 ] && [ "$n_new" -gt 0 ] ||
    fail "every kill landed on the same side: old $n_old, new $n_new"
