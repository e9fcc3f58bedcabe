#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# SIGHUP under a write load on a qcow2 and a QED clone of one base: the
# server shuts down as on SIGTERM (it used to die with the images open):
# exit status 0, the socket removed, both images closed cleanly (no dirty
# bit or NEED_CHECK in their headers, qemu-img check clean), and every
# flushed or acknowledged write intact.
. "${srcdir:-.}/server-functions.sh"
requires $PYTHON -c 'import nbd'
requires od --version

# Header bits nobody but the format's spec defines: QED features
# (64 bits little-endian at byte 16), NEED_CHECK is bit 1; qcow2
# incompatible features (64 bits big-endian at byte 72), dirty is bit 0.
needs_check ()
{
    local f
    case "$1" in
        *.qed)
            f=$(od -An -t u8 -j 16 -N 8 "$1" | tr -d ' ')
            [ $(( f & 2 )) -ne 0 ] ;;
        *.qcow2)
            f=$(od -An -t u1 -j 79 -N 1 "$1" | tr -d ' ')
            [ $(( f & 1 )) -ne 0 ] ;;
    esac
}

driver=$(cd "$srcdir" && pwd)/test-server-sighup.py
cd "$tmp"
qemu-img create -q -f raw base.raw 32M
qemu-io -f raw -c 'write -P 0x5a 0 32M' base.raw > /dev/null
qemu-img create -q -f qcow2 -o lazy_refcounts=on -b base.raw -F raw \
    clone.qcow2
qemu-img create -q -f qed -b base.raw -F raw clone.qed

start_server -t 4 clone.qcow2 clone.qed
pid=$server_pid
timeout 120 $PYTHON "$driver" $pid state \
    "$(uri clone.qcow2)" "$(uri clone.qed)"
rc=0
wait $pid || rc=$?
server_pid=
check_no_sanitizer server.log
[ $rc -eq 0 ] || fail "server exited with $rc after SIGHUP"
[ ! -e sock ] || fail "the socket was left behind"

n=0
for img in clone.qcow2 clone.qed; do
    fmt=${img##*.}
    ! needs_check $img || fail "$img: left needing a check"
    cowbd-img info $img | grep -q 'cleanly shut down: no' &&
        fail "$img: cowbd-img info says not cleanly shut down"
    qemu-img check -q -f $fmt $img || fail "$img: qemu-img check"
    # Every flushed and acknowledged slot holds its pattern.
    cmds=()
    for i in $(sed -n 's/^flushed //p; s/^acked //p' state.$n); do
        cmds+=(-c "read -P $(( (i % 250) + 1 )) $(( i * 65536 )) 64k")
    done
    [ ${#cmds[@]} -ge 64 ] || fail "$img: too few writes recorded"
    qemu-io -f $fmt "${cmds[@]}" $img > verify
    if grep -q -i -e fail -e mismatch verify; then
        grep -i -e fail -e mismatch verify | head
        fail "$img: a write was lost"
    fi
    # A slot the client never had acknowledged (the last, if none was)
    # reads the base or its own pattern: never anything else.
    if ! grep -qw 511 state.$n; then
        qemu-io -f $fmt -c 'read -P 0x5a 32704k 64k' $img > /dev/null ||
            qemu-io -f $fmt -c "read -P $(( (511 % 250) + 1 )) 32704k 64k" \
                $img > /dev/null ||
            fail "$img: the last slot reads neither base nor written data"
    fi
    n=$((n + 1))
done
