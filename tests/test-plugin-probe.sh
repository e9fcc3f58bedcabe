#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Probing safety in the plugin.  nbdkit cowbd file=X, with X a raw file
# and no format=, refuses (EPERM) a guest's write of a qcow2 or QED
# header naming a host file as backing file, says why in the log, and
# warns at open (debug); the file is unchanged and served again as raw,
# never as the host file.  Writes to sector 0 that form no header work.
# With format=raw the header write succeeds and is served back as bytes.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdsh --version
requires qemu-io --version
requires jq --version

cd "$tmp"
SIZE=$((1024 * 1024))

probe_fixtures

# write.py: writes the header file $HDR at 0; $EXPECT is "ok" or an
# errno name.
cat > write.py <<'PY'
import os
hdr, expect = os.environ['HDR'], os.environ['EXPECT']
try:
    h.pwrite(open(hdr, 'rb').read(), 0)
    got = 'ok'
except nbd.Error as e:
    got = e.errno
if got != expect:
    raise SystemExit('%s: got %s, expected %s' % (hdr, got, expect))
PY

# check.py: the size is $SIZE (raw), and the secret is never read.
cat > check.py <<'PY'
import os
size = int(os.environ['SIZE'])
assert h.get_size() == size, h.get_size()
if b'TOP SECRET' in h.pread(size, 0):
    raise SystemExit('the secret file was served')
PY

export SIZE HDR EXPECT

for hdr in hdr.qcow2 hdr.qed; do
    fmt=${hdr#hdr.}
    new_disk
    HDR=$hdr EXPECT=EPERM
    serve -v -- file=disk.raw --run "$(run_py write.py)" 2> nbdkit.log ||
        { cat nbdkit.log >&2; fail "$fmt: header write"; }
    grep -q "warning: .*probing guessed raw" nbdkit.log ||
        fail "$fmt: no warning at open"
    grep -q "error: .*refused: the first sector would then probe as $fmt" \
        nbdkit.log || fail "$fmt: no reason for the refusal"
    cmp disk.raw orig.raw || fail "$fmt: the refused write changed the file"
    serve -- file=disk.raw --run "$(run_py check.py)" ||
        fail "$fmt: restarted, not served as raw"
done

# A header built by two harmless writes is refused too; an MBR and
# zeros are not.
new_disk
serve -- file=disk.raw --run "nbdsh -u \"\$uri\" -c '
h.pwrite(b\"QFI\", 0)
try:
    h.pwrite(b\"\\xfb\", 3)
    raise SystemExit(\"completing the qcow2 magic succeeded\")
except nbd.Error as e:
    assert e.errno == \"EPERM\", e
'" || fail "piecewise magic"
serve -- file=disk.raw --run '
qemu-io -f raw -c "write -P 0x00 0 446" -c "write -P 0x55 510 1" \
    -c "write -P 0xaa 511 1" -c "read -P 0x55 510 1" \
    -c "write -z 0 64k" -c "discard 0 4k" -c "read -P 0 0 64k" "$uri"
' > qemu-io.log || { cat qemu-io.log >&2; fail "MBR / zeros refused"; }
grep -q 'read 1/1 bytes' qemu-io.log || fail "MBR not read back"

# format=raw: the header write succeeds and is served back as bytes.
for hdr in hdr.qcow2 hdr.qed; do
    fmt=${hdr#hdr.}
    new_disk
    HDR=$hdr EXPECT=ok
    serve -v -- file=disk.raw format=raw --run "$(run_py write.py)" \
        2> nbdkit.log ||
        { cat nbdkit.log >&2; fail "$fmt: format=raw header write"; }
    ! grep -q "probing guessed raw" nbdkit.log ||
        fail "$fmt: warning with format=raw"
    qemu-img info --output=json disk.raw > info.json
    [ "$(jq -r .format info.json)" = $fmt ] ||
        fail "$fmt: the header written is not a $fmt image"
    serve -- file=disk.raw format=raw --run "$(run_py check.py)" ||
        fail "$fmt: format=raw restarted"
    n=$(stat -c %s $hdr)
    serve -- file=disk.raw format=raw --run 'nbdcopy "$uri" back.bin' ||
        fail "$fmt: read back"
    cmp -n $n back.bin $hdr || fail "$fmt: format=raw does not serve the bytes"
done
