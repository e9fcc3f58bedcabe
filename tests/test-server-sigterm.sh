#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# SIGTERM under a write load, then two more signals during the shutdown
# (a client not reading its reply holds it up): the server finishes the
# requests in flight and exits 0; every write that was flushed (and every one acknowledged,
# since a graceful shutdown flushes) is intact, and the image is closed
# cleanly: a QED image does not carry NEED_CHECK, a qcow2 image (lazy
# refcounts too) is not dirty, and each passes qemu-img check.
. "${srcdir:-.}/server-functions.sh"
requires $PYTHON -c 'import nbd'
requires od --version

# QED header: features (64 bits, little-endian) at byte 16; NEED_CHECK
# is bit 1.
qed_needs_check ()
{
    local f
    f=$(od -An -t u8 -j 16 -N 8 "$1" | tr -d ' ')
    [ $(( f & 2 )) -ne 0 ]
}

for variant in $FORMATS qcow2-lazy; do
    fmt=${variant%-lazy}
    make_image $fmt img.$fmt
    if [ $variant = qcow2-lazy ]; then
        qemu-img amend -f qcow2 -o lazy_refcounts=on "$tmp/img.qcow2"
    fi
    start_server -t 4 "$tmp/img.$fmt"
    pid=$server_pid
    $PYTHON "$srcdir/test-server-sigterm.py" "$(uri)" $pid "$tmp/state"
    rc=0
    wait $pid || rc=$?
    server_pid=
    check_no_sanitizer "$tmp/server.log"
    [ $rc -eq 0 ] || fail "$variant: server exited with $rc after SIGTERM"
    [ ! -e "$tmp/sock" ] || fail "$variant: the socket was left behind"

    case $fmt in
        qed)
            ! qed_needs_check "$tmp/img.qed" || fail "$variant: left needing a check"
            qemu-img check -q -f qed "$tmp/img.qed" ;;
        qcow2)
            qemu-img info --output=json "$tmp/img.qcow2" |
                grep -q '"dirty-flag": false' || fail "$variant: left dirty"
            qemu-img check -q -f qcow2 "$tmp/img.qcow2" ;;
    esac
    # Every flushed and every acknowledged slot holds its pattern.
    cmds=()
    for i in $(sed -n 's/^flushed //p; s/^acked //p' "$tmp/state"); do
        cmds+=(-c "read -P $(( (i % 250) + 1 )) $(( i * 65536 )) 64k")
    done
    [ ${#cmds[@]} -ge 64 ] || fail "$variant: too few writes recorded"
    qemu-io -f $fmt "${cmds[@]}" "$tmp/img.$fmt" > "$tmp/verify"
    if grep -q -i -e fail -e mismatch "$tmp/verify"; then
        grep -i -e fail -e mismatch "$tmp/verify" | head
        fail "$variant: a write was lost"
    fi
done
