#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The plugin's image locks, as QEMU's, for QED and qcow2 overlays.  Once
# nbdkit cowbd has opened an overlay for a client, qemu-img info needs -U, qemu-nbd and cowbd
# refuse it, and its base cannot be written (qemu-io); in dir= mode,
# the list still describes it, and its base is served read-only (the
# plugin's own peeks at open images share).  Before nbdkit starts,
# qemu-nbd holding the image makes it refuse to start, in one line naming
# the file.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdsh --version
requires qemu-nbd --version
requires cowbd --version

cd "$tmp"

# One nbdsh holds clone.FMT open (read-write) and meanwhile tries the
# others.
cat > hold.py <<'PY'
import os, subprocess, sys
sock, fmt = sys.argv[1], sys.argv[2]
clone = "clone." + fmt
h.connect_uri("nbd+unix:///" + clone + "?socket=" + sock)
h.pwrite(b"\x77" * 65536, 0)
h.flush()

def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return r.returncode, r.stderr

rc, err = run("qemu-img", "info", "images/" + clone)
assert rc != 0 and "lock" in err, ("qemu-img info", rc, err)
rc, err = run("qemu-img", "info", "-U", "images/" + clone)
assert rc == 0, ("qemu-img info -U", err)
rc, err = run("timeout", "20", "qemu-nbd", "-k", os.path.abspath("refused.sock"),
               "images/" + clone)
assert rc != 0 and "lock" in err, ("qemu-nbd", rc, err)
rc, err = run("timeout", "20", "cowbd", "-U", "c.sock", "images/" + clone)
assert rc != 0 and clone + ": image is in use" in err, ("cowbd", rc, err)
assert len(err.splitlines()) == 1, err
rc, err = run("qemu-io", "-f", "raw", "-c", "write 0 4k", "images/base.raw")
assert rc != 0 and "lock" in err, ("qemu-io on the base", rc, err)

# The list, while the clone is open read-write in this same nbdkit.
h2 = nbd.NBD()
h2.set_opt_mode(True)
h2.connect_uri("nbd+unix:///?socket=" + sock)
names = {}
h2.opt_list(lambda n, d: names.__setitem__(n, d) or 0)
assert clone in names and names[clone].startswith(fmt), names
h2.opt_abort()

# base.raw, asked for while the clone reads it: served read-only (the
# plugin finds that the clone reads it by a peek that must share).
h3 = nbd.NBD()
h3.connect_uri("nbd+unix:///base.raw?socket=" + sock)
assert h3.is_read_only()
assert h3.pread(4096, 0) == b"\x11" * 4096
h3.shutdown()
h.shutdown()
PY

for fmt in qed qcow2; do
    rm -rf images
    mkdir images
    make_base images/base.raw raw
    make_clone images/clone.$fmt images/base.raw raw
    base_sum=$(sum images/base.raw)
    export fmt
    serve -- dir="$tmp/images" \
          --run 'nbdsh -c "import sys; sys.argv = [\"\", \"$unixsocket\", \"$fmt\"]; exec(open(\"hold.py\").read())"' ||
        fail "nbdkit cowbd holding clone.$fmt"
    [ "$(sum images/base.raw)" = "$base_sum" ] || fail "$fmt: the base changed"
    qemu-io -f $fmt -c 'read -P 0x77 0 64k' images/clone.$fmt |
        grep -q 'verification failed' && fail "$fmt: the write through nbdkit"
    qemu_check images/clone.$fmt

    # qemu-nbd holds the image: nbdkit cowbd refuses to start.
    rm -f "$tmp/q.sock"
    qemu-nbd -k "$tmp/q.sock" -f $fmt images/clone.$fmt 2> qemu-nbd.log &
    qpid=$!
    cleanup_fn "kill $qpid 2>/dev/null"
    wait_for_socket "$tmp/q.sock"
    wait_for_lock images/clone.$fmt
    expect_fail serve -- file="$tmp/images/clone.$fmt" --run 'nbdinfo "$uri"'
    grep -q "clone.$fmt: image is in use" "$tmp/stderr" ||
        fail "$fmt: nbdkit cowbd beside qemu-nbd: no message naming the file"
    [ "$(grep -c "clone.$fmt" "$tmp/stderr")" -eq 1 ] ||
        fail "$fmt: not one line"
    kill $qpid 2>/dev/null || true  # (it may have exited after its client)
    wait $qpid || true
done
