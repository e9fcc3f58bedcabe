#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Probing safety in the server.  A raw image served without --format
# refuses (EPERM) a guest's write of a qcow2 or QED header naming a host
# file as its backing file, so a restart still serves the raw bytes and
# never the host file; ordinary writes to sector 0 (an MBR, zeros) work.
# With --format=raw the same write succeeds and is served back as raw
# bytes.  A backing file whose format is not recorded is not followed
# into a backing file of its own.
. "${srcdir:-.}/server-functions.sh"
requires nbdsh --version
requires nbdinfo --version
requires qemu-io --version
requires jq --version

cd "$tmp"
SIZE=$((1024 * 1024))

probe_fixtures

# nbdsh_write HEADER: writes the whole header file at offset 0; prints
# "ok" or the errno name.
nbdsh_write ()
{
    nbdsh -u "$(uri)" -c "
data = open('$1', 'rb').read()
try:
    h.pwrite(data, 0)
    print('ok')
except nbd.Error as e:
    print(e.errno)
"
}

# served_has_no_secret: the export reads as raw, 1 MiB, never the secret.
served_has_no_secret ()
{
    [ "$(nbdinfo --size "$(uri)")" = $SIZE ] ||
        fail "served size is not the raw file's"
    nbdsh -u "$(uri)" -c "
import sys
d = h.pread($SIZE, 0)
sys.exit(1 if b'TOP SECRET' in d else 0)
" || fail "the secret file's bytes were served"
}

for hdr in hdr.qcow2 hdr.qed; do
    fmt=${hdr#hdr.}
    new_disk
    start_server -v disk.raw
    r=$(nbdsh_write $hdr)
    [ "$r" = EPERM ] || fail "$fmt header write over probed raw: $r"
    stop_server
    grep -q "probing guessed raw" server.log || fail "no warning at open"
    grep -q "refused: the first sector would then probe as $fmt" server.log ||
        fail "no reason for the refusal in the log"
    cmp disk.raw orig.raw || fail "$fmt: the refused write changed the file"

    # Restarted: still raw, the original bytes, never the secret.
    start_server disk.raw
    served_has_no_secret
    nbdsh -u "$(uri)" -c "
assert h.pread(512, 0) == b'\x5a' * 512
"   || fail "$fmt: sector 0 changed"
    stop_server
done

# A magic completed piece by piece is caught too: each write alone is
# harmless, the last one would form the QED magic "QED\0".
new_disk
start_server disk.raw
nbdsh -u "$(uri)" -c "
h.pwrite(b'QED\x01', 0)
for what, f in (('zero', lambda: h.zero(1, 3)),
                ('trim', lambda: h.trim(1, 3)),
                ('write', lambda: h.pwrite(b'\0', 3))):
    try:
        f()
        raise SystemExit(what + ' forming a magic succeeded')
    except nbd.Error as e:
        assert e.errno == 'EPERM', what + ': ' + str(e.errno)
assert h.pread(4, 0) == b'QED\x01'
h.pwrite(b'QFI', 0)
try:
    h.pwrite(b'\xfb', 3)
    raise SystemExit('completing the qcow2 magic succeeded')
except nbd.Error as e:
    assert e.errno == 'EPERM'
" || fail "piecewise magic"

# Ordinary writes to sector 0 still work: an MBR, zeros, trim, with
# qemu-io over NBD.
qemu-io -f raw -c 'write -P 0x00 0 446' -c 'write -P 0x80 446 16' \
    -c 'write -P 0x55 510 1' -c 'write -P 0xaa 511 1' \
    "$(uri)" >/dev/null || fail "MBR write refused"
qemu-io -f raw -c 'read -P 0x55 510 1' -c 'read -P 0xaa 511 1' \
    "$(uri)" | grep -q 'read 1/1' || fail "MBR not written"
qemu-io -f raw -c 'write -z 0 64k' -c 'discard 0 4k' -c 'read -P 0 0 64k' \
    "$(uri)" >/dev/null || fail "zeroing sector 0 refused"
stop_server

# With --format=raw the header write succeeds, and a restart with
# --format=raw serves it back as raw bytes.
for hdr in hdr.qcow2 hdr.qed; do
    fmt=${hdr#hdr.}
    new_disk
    start_server --format=raw disk.raw
    r=$(nbdsh_write $hdr)
    [ "$r" = ok ] || fail "$fmt header write with --format=raw: $r"
    stop_server
    ! grep -q "probing guessed raw" server.log ||
        fail "warning given with --format=raw"
    # The header is real: qemu-img, probing, sees the image it describes.
    qemu-img info --output=json disk.raw > info.json
    [ "$(jq -r .format info.json)" = $fmt ] &&
        [ "$(jq -r '."backing-filename"' info.json)" = "$tmp/secret.txt" ] ||
        fail "$fmt: the header written is not a $fmt image naming the secret"
    start_server --format=raw disk.raw
    served_has_no_secret
    cmp -n $(stat -c %s $hdr) <(nbdsh -u "$(uri)" -c "
import sys
sys.stdout.buffer.write(h.pread($(stat -c %s $hdr), 0))
") $hdr || fail "$fmt: --format=raw does not serve the bytes written"
    stop_server
done

# Rule 2: an overlay that records no backing format, over a file with a
# forged qcow2 header, is refused rather than followed into the secret.
cp hdr.qcow2 forged.img
truncate -s 1M forged.img
for ofmt in qcow2 qed; do
    cowbd-img create -q -f $ofmt -u -b forged.img top.$ofmt 1M
    expect_fail cowbd -U sock2 top.$ofmt
    grep -q "backing file .*forged.img probes as qcow2 with a backing file of its own" \
        "$tmp/stderr" || fail "$ofmt overlay: no reason given"
    [ "$(wc -l < "$tmp/stderr")" -eq 1 ] || fail "more than one line"
    # With the format recorded (raw), the overlay reads the forged header
    # as data.
    cowbd-img rebase -q -u -b forged.img -F raw top.$ofmt
    start_server top.$ofmt
    served_has_no_secret
    stop_server
done
