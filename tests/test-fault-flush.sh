#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# An honest FLUSH after a failed sync.  The fault shim fails one fdatasync
# of the image (the 1st, 3rd, 6th of a write+flush workload, see
# test-fault-flush.py) under cowbd and under nbdkit with the plugin, for
# raw, QED and qcow2 with lazy refcounts on and off: the failing request
# and every later FLUSH and FUA write get EIO, reads go on; the close
# reports the failure (cowbd exits 1; nbdkit logs an error).  After a
# reopen, every block made durable before the failure reads back, writes
# and flushes work again, and after a clean stop qemu-img check is clean.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/fault-functions.sh"
requires test -f "$COWBD_PLUGIN"
requires nbdkit --version

cd "$tmp"
uri="nbd+unix:///?socket=$tmp/sock"

# verify KIND FILE: a fresh cowbd (no shim) serves what was durable.
verify ()
{
    local kind=$1 f=$2 cmds=()
    fault_cowbd -- -f "$(fault_fmt $kind)" "$f"
    $PYTHON - "$uri" "$tmp/state" <<'PY' || fail "$kind: after reopen"
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for line in open(sys.argv[2]):
    what, i = line.split()
    i = int(i)
    if what == "durable" and h.pread(65536, i * 65536) != bytes([i + 1]) * 65536:
        raise SystemExit("durable block %d was lost" % i)
h.pwrite(b"\xee" * 65536, 63 * 65536)
h.flush()
h.shutdown()
PY
    fault_stop
    [ "$server_rc" -eq 0 ] || fail "$kind: the reopened image did not close cleanly"
    [ $kind = raw ] || qemu-img check -q -f "$(fault_fmt $kind)" "$f" ||
        fail "$kind: qemu-img check after the reopen"
}

for front in cowbd nbdkit; do
    for kind in raw qed qcow2-lazy qcow2; do
        for nth in 1 3 6; do
            what="$front $kind sync #$nth"
            echo "$what"
            fault_image $kind img
            rm -f state arm
            faults=(FAULT_PATH="$tmp/img" FAULT_OP=sync FAULT_NTH=$nth
                    FAULT_ARM="$tmp/arm")
            if [ $front = cowbd ]; then
                fault_cowbd "${faults[@]}" -- -f "$(fault_fmt $kind)" "$tmp/img"
            else
                fault_nbdkit "${faults[@]}" -- "$tmp/img" \
                    format="$(fault_fmt $kind)"
            fi
            touch arm           # the server's start-up check is done
            $PYTHON "$abs_srcdir/test-fault-flush.py" "$uri" state ||
                fail "$what: the workload"
            rm -f arm
            fault_stop
            # The close must not call the image good.
            if [ $front = cowbd ]; then
                [ "$server_rc" -eq 1 ] ||
                    fail "$what: cowbd exited $server_rc after a failed sync"
            fi
            grep -q 'an earlier sync or metadata write failed' server.log ||
                fail "$what: the failed close was not reported"
            verify $kind img
        done
    done
done
