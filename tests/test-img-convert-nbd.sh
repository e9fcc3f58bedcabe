#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img convert` with NBD URIs (Unix sockets only), against qemu-img
# convert with the same URIs:
#  - as the source: a qcow2 image served by qemu-nbd, a raw file served
#    by nbdkit; converted to raw the result is byte for byte qemu-img's,
#    to qcow2 it is clean and reads the same;
#  - as the target: nbdkit's memory plugin, with and without -n and
#    --target-is-zero, and qemu-nbd serving a raw file full of garbage
#    (without -n qemu-img opens an existing export it cannot create, and
#    so does cowbd-img); the export then reads what the source reads,
#    and holds what qemu-img's conversion leaves;
#  - refusals: an export too small, a read-only export, no server,
#    -O qcow2 for a URI target: exit 1, one line, nothing created.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"
requires qemu-nbd --version
requires nbdkit --version
requires nbdkit memory --version
requires nbdcopy --version

cd "$tmp"

# --- the source images --------------------------------------------------------
qemu-img create -q -f qcow2 base.qcow2 6M
qemu-io -c 'write -P 1 0 2M' base.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 src.qcow2 8M
qemu-io -c 'write -P 2 1M 64k' -c 'write -z 0 64k' -c 'write -P 3 5M 1M' \
    -c 'write -P 4 7M 4k' src.qcow2 > /dev/null
qemu-img convert -O raw src.qcow2 src.raw

# serve SOCK ARGS...: qemu-nbd ARGS on the Unix socket SOCK (persistent),
# stopped by its PID at exit; sets qpid.
serve ()
{
    local sock=$1; shift
    qemu-nbd -t -k "$tmp/$sock" "$@" 2>> qemu-nbd.log &
    qpid=$!
    cleanup_fn "kill $qpid 2>/dev/null"
    wait_for_socket "$tmp/$sock"
}

# --- a URI as the source ------------------------------------------------------
serve src.sock -r -f qcow2 src.qcow2
uri="nbd+unix:///?socket=$tmp/src.sock"
cowbd-img convert -O raw "$uri" from-nbd.ours.raw
qemu-img convert -O raw "$uri" from-nbd.qemu.raw
cmp from-nbd.ours.raw from-nbd.qemu.raw || fail "raw from qemu-nbd differs"
cmp from-nbd.ours.raw src.raw || fail "raw from qemu-nbd is not the source"
cowbd-img convert -f raw -O qcow2 "$uri" from-nbd.ours.qcow2
qemu_check_clean from-nbd.ours.qcow2
qemu_same src.qcow2 from-nbd.ours.qcow2
cowbd-img convert -f raw -O qed -m 4 -W "$uri" from-nbd.ours.qed
qemu_check_clean from-nbd.ours.qed
qemu_same src.qcow2 from-nbd.ours.qed
# nbd:// with an export name, served by nbdkit from a raw file.
nbdkit -U - -e disk file src.raw --run '
    cowbd-img convert -f raw -O raw "$uri" from-nbdkit.ours.raw &&
    qemu-img convert -f raw -O raw "$uri" from-nbdkit.qemu.raw' ||
    fail "convert from nbdkit"
cmp from-nbdkit.ours.raw from-nbdkit.qemu.raw || fail "raw from nbdkit"
cmp from-nbdkit.ours.raw src.raw || fail "raw from nbdkit: not the source"

# --- a URI as the target ------------------------------------------------------
# nbdkit's memory plugin reads zeros at first: with and without
# --target-is-zero the export ends up reading what the source reads.
for z in "" -n "-n --target-is-zero"; do
    for tool in cowbd-img qemu-img; do
        nbdkit -U - memory 8M --run "
            $tool convert $z -O raw src.qcow2 \"\$uri\" &&
            nbdcopy \"\$uri\" 'mem$z.$tool.raw'" ||
            fail "$tool $z into memory"
    done
    cmp "mem$z.cowbd-img.raw" src.raw || fail "memory target $z: content"
    cmp "mem$z.cowbd-img.raw" "mem$z.qemu-img.raw" || fail "memory $z: differs"
done
# A server without WRITE_ZEROES (nbdkit's nozero filter) over non-zero
# bytes (the pattern plugin, made writable by the cow filter): the zeros
# are written as data.
nbdkit -U - --filter=nozero --filter=cow pattern 8M --run '
    cowbd-img convert -n -O raw src.qcow2 "$uri" && nbdcopy "$uri" nozero.raw' ||
    fail "into an export without WRITE_ZEROES"
cmp nozero.raw src.raw || fail "an export without WRITE_ZEROES: content"
# qemu-nbd serving a raw file full of garbage: zeros are written too,
# with -n or without.
for n in -n ""; do
    for tool in cowbd-img qemu-img; do
        qemu-img create -q -f raw garbage$n.$tool.raw 8M
        qemu-io -f raw -c 'write -P 0xee 0 8M' garbage$n.$tool.raw > /dev/null
        serve g.$tool.sock -f raw garbage$n.$tool.raw
        $tool convert $n -O raw src.qcow2 \
            "nbd+unix:///?socket=$tmp/g.$tool.sock"
        kill $qpid; wait $qpid 2>/dev/null || true
        rm -f "$tmp/g.$tool.sock"
    done
    qemu-img compare -q -f raw -F raw src.raw garbage$n.cowbd-img.raw ||
        fail "garbage target $n does not read as the source"
    cmp garbage$n.cowbd-img.raw garbage$n.qemu-img.raw ||
        fail "garbage $n: differs"
done
# A qcow2 image served by qemu-nbd as a target: its guest view is written.
qemu-img create -q -f qcow2 t.qcow2 8M
serve t.sock -f qcow2 t.qcow2
cowbd-img convert -n -m 3 -O raw src.qcow2 "nbd+unix:///?socket=$tmp/t.sock"
kill $qpid; wait $qpid 2>/dev/null || true
qemu_check_clean t.qcow2
qemu_same src.qcow2 t.qcow2

# --- refusals -----------------------------------------------------------------
# refused CMD...: exit 1, one line.
refused ()
{
    local rc=0
    "$@" 2> err.txt || rc=$?
    [ "$rc" -eq 1 ] || { cat err.txt >&2; fail "exit $rc: $*"; }
    one_line_error err.txt
}
nbdkit -U - memory 8M --run '
    cowbd-img convert -n -O qcow2 src.qcow2 "$uri" 2> err.txt && exit 1
    exit 0' || fail "-O qcow2 for a URI target was accepted"
one_line_error err.txt
nbdkit -U - memory 1M --run '
    cowbd-img convert -n -O raw src.qcow2 "$uri" 2> err.txt && exit 1
    exit 0' || fail "an export smaller than the source was accepted"
one_line_error err.txt
nbdkit -U - -r memory 8M --run '
    cowbd-img convert -n -O raw src.qcow2 "$uri" 2> err.txt && exit 1
    exit 0' || fail "a read-only export was written"
one_line_error err.txt
refused cowbd-img convert -n -O raw src.qcow2 \
    "nbd+unix:///?socket=$tmp/nobody.sock"
refused cowbd-img convert -O raw src.qcow2 \
    "nbd+unix:///?socket=$tmp/nobody.sock"
! ls | grep -q '^nbd' || fail "a file named after the URI was created"
refused cowbd-img convert -O raw "nbd+unix:///?socket=$tmp/nobody.sock" \
    never.raw
[ ! -e never.raw ] || fail "an unreachable source left a target"
