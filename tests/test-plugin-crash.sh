#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# An unclean stop: nbdkit is killed (SIGKILL) after a flushed write and
# during unflushed ones.  An overlay is left marked as needing a check
# (QED NEED_CHECK, the qcow2 dirty bit); served with -r it is read as it
# is and not a byte of it changes; the next read-write serve repairs it
# (the engine's automatic check, logged at nbdkit's default level), the
# flushed data is intact, the unflushed range holds old or new bytes
# only, and after a clean stop qemu-img check finds nothing wrong and the
# overlay is marked clean.  QED and qcow2 overlays over raw, QED and qcow2
# backing files, and raw images (nothing to mark or repair there: the
# data checks only).
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdsh --version

cd "$tmp"

cat > write.py <<'PY'
# Flushed: 0xaa at [0, 192K).  Not flushed: 0xbb over [1M, 3M) in 64K
# pieces, still going when nbdkit is killed.
h.pwrite(b"\xaa" * 196608, 0)
h.flush()
open("flushed", "w").close()
for i in range(32):
    h.pwrite(b"\xbb" * 65536, (1 << 20) + i * 65536)
PY

cat > check.py <<'PY'
import os
old = open(os.environ["OLD"], "rb").read()
assert h.pread(196608, 0) == b"\xaa" * 196608, "flushed data lost"
got = h.pread(2 << 20, 1 << 20)
for i, c in enumerate(got):
    if c not in (0xbb, old[(1 << 20) + i]):
        raise SystemExit("offset %d reads %#x: neither old nor new"
                         % ((1 << 20) + i, c))
PY

# mark FORMAT: how the repair message names the mark a crash leaves.
mark ()
{
    case $1 in
        qed) echo "QED NEED_CHECK set" ;;
        qcow2) echo "qcow2 dirty bit set" ;;
    esac
}

# crash_round FORMAT BASE-FORMAT: one round over a fresh clone.$o.
crash_round ()
{
    local o=$1 b=$2 t=$1/$2 server writer crashed_sum i
    rm -f old.raw flushed sock pid repair.err
    fresh_clone $o $b
    qemu-img convert -O raw clone.$o old.raw

    nbdkit_env timeout -k 10 120 nbdkit -f -U "$tmp/sock" -P "$tmp/pid" \
        "$COWBD_PLUGIN" "$tmp/clone.$o" &
    server=$!
    cleanup_fn "kill -9 $server 2>/dev/null"
    wait_for_socket "$tmp/sock"
    nbdsh -u "nbd+unix:///?socket=$tmp/sock" \
        -c "exec(open('$tmp/write.py').read())" &
    writer=$!
    for (( i=0; i<100; i++ )); do [ -f flushed ] && break; sleep 0.1; done
    [ -f flushed ] || fail "$t: the flushed write never finished"
    kill -9 "$(cat pid)"
    wait "$writer" 2>/dev/null || true
    # A killed nbdkit leaves its socket behind: wait for the process.
    wait "$server" 2>/dev/null || true

    if [ $o != raw ] && left_clean clone.$o; then
        fail "$t: killed with data written, yet marked clean"
    fi

    # -r: read what is there, change nothing.
    crashed_sum=$(sum clone.$o)
    OLD="$tmp/old.raw" serve -r -- "$tmp/clone.$o" --run "$(run_py check.py)" ||
        fail "$t: reading the crashed image with -r"
    [ "$(sum clone.$o)" = "$crashed_sum" ] ||
        fail "$t: serving with -r changed the crashed image"

    # Read-write: repaired at open, which nbdkit says without -v.
    OLD="$tmp/old.raw" serve -- "$tmp/clone.$o" --run "$(run_py check.py)" \
        2> repair.err || { cat repair.err; fail "$t: after the repair"; }
    if [ $o != raw ] && ! grep -q -F \
        "clone.$o: was not closed cleanly ($(mark $o)): repaired at open" \
        repair.err; then
        cat repair.err
        fail "$t: the repair was not logged"
    fi
    left_clean clone.$o || fail "$t: still marked as needing a check"
    clone_intact $o $b
}

for o in $FORMATS; do
    for b in $(bases_for $o); do
        crash_round $o $b
    done
done
