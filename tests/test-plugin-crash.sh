#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# An unclean stop: nbdkit is killed (SIGKILL) after a flushed write and
# during unflushed ones.  The overlay is left marked NEED_CHECK; served
# with -r it is read as it is and not a byte of it changes; the next
# read-write serve repairs it (the engine's automatic check, logged at
# nbdkit's default level), the flushed
# data is intact, the unflushed range holds old or new bytes only, and
# after a clean stop qemu-img check finds nothing wrong and the overlay is
# marked clean.  Over a raw and over a QED backing file.
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

for b in raw qed; do
    rm -f base.* clone.qed old.raw flushed sock pid
    make_base base.$b $b
    make_clone clone.qed base.$b $b
    qemu-img convert -O raw clone.qed old.raw
    base_sum=$(sum base.$b)

    nbdkit_env timeout -k 10 120 nbdkit -f -U "$tmp/sock" -P "$tmp/pid" \
        "$COWBD_PLUGIN" "$tmp/clone.qed" &
    cleanup_fn "kill -9 $! 2>/dev/null"
    wait_for_socket "$tmp/sock"
    nbdsh -u "nbd+unix:///?socket=$tmp/sock" \
        -c "exec(open('$tmp/write.py').read())" &
    writer=$!
    for (( i=0; i<100; i++ )); do [ -f flushed ] && break; sleep 0.1; done
    [ -f flushed ] || fail "$b: the flushed write never finished"
    kill -9 "$(cat pid)"
    wait "$writer" 2>/dev/null || true
    for (( i=0; i<100; i++ )); do [ -S sock ] || break; sleep 0.1; done

    need_check clone.qed || fail "$b: killed with data written, yet clean"

    # -r: read what is there, change nothing.
    crashed_sum=$(sum clone.qed)
    OLD="$tmp/old.raw" serve -r -- "$tmp/clone.qed" \
        --run 'nbdsh -u "$uri" -c "exec(open(\"'"$tmp"'/check.py\").read())"' ||
        fail "$b: reading the crashed overlay with -r"
    [ "$(sum clone.qed)" = "$crashed_sum" ] ||
        fail "$b: serving with -r changed the crashed overlay"

    # Read-write: repaired at open, which nbdkit says without -v.
    OLD="$tmp/old.raw" serve -- "$tmp/clone.qed" \
        --run 'nbdsh -u "$uri" -c "exec(open(\"'"$tmp"'/check.py\").read())"' \
        2> repair.err || { cat repair.err; fail "$b: after the repair"; }
    grep -q "clone.qed: was not closed cleanly (QED NEED_CHECK set): repaired at open" \
        repair.err || { cat repair.err; fail "$b: the repair was not logged"; }
    need_check clone.qed && fail "$b: still marked NEED_CHECK"
    qemu_check clone.qed
    [ "$(sum base.$b)" = "$base_sum" ] || fail "$b: the backing file changed"
done
