#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Read-only service: with -r the export is read-only, writes fail with
# EPERM and the overlay file does not change; an overlay that cannot be
# opened for writing (here: served by a user without write permission) is
# served read-only instead of refused, says so in the debug log, and is
# not changed either.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdsh --version
requires nbdinfo --version

cd "$tmp"
make_base base.raw raw
make_clone clone.qed base.raw raw
qemu-io -f qed -c 'write -P 0x66 0 64k' clone.qed > /dev/null
clone_sum=$(sum clone.qed)

cat > ro.py <<'PY'
import errno
assert h.is_read_only()
assert h.pread(65536, 0) == b"\x66" * 65536
assert h.pread(4096, 65536) == b"\x11" * 4096
h.set_strict_mode(0)            # send them anyway: the server must refuse
for op in (lambda: h.pwrite(b"x" * 512, 0),
           lambda: h.zero(65536, 0),
           lambda: h.trim(65536, 0)):
    try:
        op()
        raise SystemExit("a write to a read-only export succeeded")
    except nbd.Error as e:
        assert e.errnum in (errno.EPERM, errno.EROFS), e
PY

serve -r -- "$tmp/clone.qed" \
    --run 'nbdsh -u "$uri" -c "exec(open(\"'"$tmp"'/ro.py\").read())"' ||
    fail "-r"
[ "$(sum clone.qed)" = "$clone_sum" ] || fail "-r: the overlay changed"

# A file this process cannot write: chmod is enough for an ordinary user;
# root writes anyway unless nbdkit runs without CAP_DAC_OVERRIDE.
chmod a-w clone.qed
cleanup_fn "chmod u+w '$tmp/clone.qed'"
drop=()
if [ "$(id -u)" -eq 0 ]; then
    requires setpriv --help
    drop=(setpriv --bounding-set=-dac_override,-dac_read_search --)
    "${drop[@]}" sh -c 'echo x >> clone.qed' 2>/dev/null &&
        fail "setpriv did not take away root's write permission"
fi
nbdkit_env "${drop[@]}" timeout -k 10 120 nbdkit -v -U - "$COWBD_PLUGIN" \
    "$tmp/clone.qed" \
    --run 'nbdsh -u "$uri" -c "exec(open(\"'"$tmp"'/ro.py\").read())"' \
    2> nbdkit.log || { tail -20 nbdkit.log; fail "unwritable file"; }
grep -q 'clone.qed: Permission denied; serving it read-only' nbdkit.log ||
    fail "no debug message about the read-only fallback"
[ "$(sum clone.qed)" = "$clone_sum" ] || fail "unwritable file: it changed"
