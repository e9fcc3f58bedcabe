#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cowbd-img and image locks.  While cowbd serves an overlay read-write:
#  - info, map, check, compare and convert (SRC) refuse it, in one line
#    naming the file, and with -U (--force-share) read it and agree with
#    qemu-img -U; check -U -r is a usage error;
#  - create over the golden image the served overlay reads, or over the
#    overlay itself, is refused and changes nothing; a new clone of that
#    golden image can still be made;
#  - commit of another overlay of the same golden image is refused (it
#    would write what the served overlay reads).
# While qemu-nbd serves an image, cowbd-img refuses it likewise.
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/img-functions.sh"
requires qemu-nbd --version
cd "$tmp"

expect_in_use ()
{
    local file=$1; shift
    expect_fail "$@"
    one_line_error "$tmp/stderr"
    grep -q "$file: image is in use" "$tmp/stderr" ||
        fail "$*: does not say $file is in use"
}

for fmt in qcow2 qed; do
    rm -f base.raw ov.$fmt ov2.$fmt copy.$fmt new.$fmt out.raw
    qemu-img create -q -f raw base.raw 8M
    qemu-io -f raw -c 'write -P 0x11 0 2M' -c 'write -P 0x12 6M 1M' \
        base.raw > /dev/null
    qemu-img create -q -f $fmt -b base.raw -F raw ov.$fmt
    qemu-io -f $fmt -c 'write -P 0x21 1M 2M' -c 'write -z 7M 64k' \
        ov.$fmt > /dev/null
    qemu-img create -q -f $fmt -b base.raw -F raw ov2.$fmt
    qemu-io -f $fmt -c 'write -P 0x31 0 64k' ov2.$fmt > /dev/null
    cp ov.$fmt copy.$fmt
    sum_base=$(sha256sum < base.raw)
    sum_ov2=$(sha256sum < ov2.$fmt)

    start_server "$tmp/ov.$fmt"
    hold_connection "$(uri)"    # an idle export holds no lock

    # Without -U: refused, with a hint.
    for cmd in info map check; do
        expect_in_use ov.$fmt cowbd-img $cmd ov.$fmt
        grep -q -- '-U' "$tmp/stderr" || fail "$cmd: no hint to -U"
    done
    rc=0; cowbd-img compare ov.$fmt copy.$fmt 2> "$tmp/stderr" || rc=$?
    [ $rc -eq 2 ] || fail "compare of a served image: exit $rc, not 2"
    grep -q 'ov.*: image is in use' "$tmp/stderr" || fail "compare: message"
    expect_in_use ov.$fmt cowbd-img convert -O raw ov.$fmt out.raw
    [ ! -e out.raw ] || fail "refused convert left out.raw"

    # With -U: the same answers as qemu-img -U.
    cowbd-img info -U --output=json ov.$fmt > info.cowbd
    qemu-img info -U --output=json ov.$fmt > info.qemu
    json_same info.cowbd info.qemu format virtual-size backing-filename
    MAP_OPTS=-U map_same ov.$fmt
    rc=0; cowbd-img check -U ov.$fmt > check.out 2>&1 || rc=$?
    qrc=0; qemu-img check -U ov.$fmt > qcheck.out 2>&1 || qrc=$?
    [ $rc -eq $qrc ] || { cat check.out qcheck.out; fail "check -U: $rc, qemu-img $qrc"; }
    cowbd-img check --force-share --output=json ov.$fmt > check.json ||
        fail "check --force-share"
    cowbd-img compare -U ov.$fmt copy.$fmt | grep -q 'Images are identical' ||
        fail "compare -U"
    cowbd-img convert -U -O raw ov.$fmt out.raw
    qemu_same -U -f $fmt ov.$fmt out.raw
    rc=0; cowbd-img check -U -r leaks ov.$fmt 2> "$tmp/stderr" || rc=$?
    [ $rc -eq 1 ] || fail "check -U -r: exit $rc"
    grep -q 'cannot be used with -r' "$tmp/stderr" || fail "check -U -r: message"

    # create over what the served overlay uses: refused, nothing changed.
    expect_in_use base.raw cowbd-img create -q -f raw base.raw 8M
    expect_in_use ov.$fmt cowbd-img create -q -f $fmt ov.$fmt 8M
    # A new clone of the served golden image is fine.
    cowbd-img create -q -f $fmt -b base.raw -F raw new.$fmt
    qemu-img compare -U new.$fmt base.raw > /dev/null || fail "new clone"
    # commit into the golden image the served overlay reads: refused.
    expect_in_use base.raw cowbd-img commit ov2.$fmt
    [ "$(sha256sum < base.raw)" = "$sum_base" ] || fail "$fmt: base changed"
    [ "$(sha256sum < ov2.$fmt)" = "$sum_ov2" ] || fail "$fmt: ov2 changed"

    release_connection
    stop_server
    [ "$(sha256sum < base.raw)" = "$sum_base" ] || fail "$fmt: base changed"
    # The server is gone: no -U needed, and the overlay is sound.
    cowbd-img check ov.$fmt > /dev/null || fail "check after the server"
    qemu_check_clean ov.$fmt
    qemu_same -f $fmt ov.$fmt copy.$fmt
done

# qemu-nbd holds the image: cowbd-img refuses it too, -U reads it.  (Its
# base is qcow2 here: qemu forbids writers of a qcow2 base, not of a raw
# one.)
qemu-img create -q -f qcow2 base.qcow2 8M
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2
rm -f q.sock
qemu-nbd -k "$tmp/q.sock" -f qcow2 ov.qcow2 2> qemu-nbd.log &
qpid=$!
cleanup_fn "kill $qpid 2>/dev/null"
wait_for_socket "$tmp/q.sock"
wait_for_lock ov.qcow2
expect_in_use ov.qcow2 cowbd-img info ov.qcow2
expect_in_use ov.qcow2 cowbd-img check ov.qcow2
cowbd-img info -U ov.qcow2 | grep -q '^file format: qcow2' || fail "info -U"
MAP_OPTS=-U map_same ov.qcow2
expect_in_use base.qcow2 cowbd-img create -q -f qcow2 base.qcow2 8M
kill $qpid 2>/dev/null || true  # (it may have exited after its client)
wait $qpid || true
