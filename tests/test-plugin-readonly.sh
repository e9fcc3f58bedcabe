#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Read-only service: with -r the export is read-only, writes fail with
# EPERM and the overlay file does not change; an overlay that cannot be
# opened for writing (here: served by a user without write permission) is
# served read-only instead of refused, says so in the debug log, and is
# not changed either.  QED and qcow2 overlays over a raw backing file,
# and a raw image.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdsh --version
requires nbdinfo --version

cd "$tmp"
make_base base.raw raw

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

# read_only FORMAT: both ways of serving clone.FORMAT read-only.
read_only ()
{
    local o=$1 f=clone.$1 before drop=()
    make_clone $f base.raw raw
    qemu-io -f $o -c 'write -P 0x66 0 64k' $f > /dev/null
    before=$(sum $f)

    serve -r -- "$tmp/$f" --run "$(run_py ro.py)" ||
        fail "$o: -r"
    [ "$(sum $f)" = "$before" ] || fail "$o: -r: the image changed"

    # A file this process cannot write: chmod is enough for an ordinary
    # user; root writes anyway unless nbdkit runs without
    # CAP_DAC_OVERRIDE.
    chmod a-w $f
    cleanup_fn "chmod u+w '$tmp/$f'"
    if [ "$(id -u)" -eq 0 ]; then
        requires setpriv --help
        drop=(setpriv --bounding-set=-dac_override,-dac_read_search --)
        "${drop[@]}" sh -c "echo x >> $f" 2>/dev/null &&
            fail "setpriv did not take away root's write permission"
    fi
    nbdkit_env "${drop[@]}" timeout -k 10 120 nbdkit -v -U - \
        "$COWBD_PLUGIN" "$tmp/$f" \
        --run "$(run_py ro.py)" \
        2> nbdkit.log || { tail -20 nbdkit.log; fail "$o: unwritable file"; }
    grep -q "$f: Permission denied; serving it read-only" nbdkit.log ||
        fail "$o: no debug message about the read-only fallback"
    [ "$(sum $f)" = "$before" ] || fail "$o: unwritable file: it changed"
}

for o in $FORMATS; do
    read_only $o
done
