#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The loop's thread runs a connection's only request itself when nothing
# else is out (server/workers.c, "Leader and followers"), leaving the
# loop to any idle thread without waking one.  A request that runs long
# must not hold the other clients up: here it is a read of an overlay
# whose remote base (nbdkit, each read delayed 1.5 s) answers slowly.
# While it runs, a second client connects to another export and reads:
# it must be answered at once (the guard timer gives the loop to another
# thread, and the server says so with -vv), and the slow read must still
# return the remote's data.  Then SIGTERM arrives during another such
# read: the read is answered and the server exits 0.
. "${srcdir:-.}/server-functions.sh"
requires nbdkit --version
requires nbdkit --filter=delay null --version
requires $PYTHON -c 'import nbd'
cd "$tmp"

qemu-img create -q -f raw golden.raw 8M
qemu-io -f raw -c 'write -P 0x5a 0 8M' golden.raw > /dev/null
qemu-img create -q -f raw local.raw 1M
qemu-io -f raw -c 'write -P 0x33 0 1M' local.raw > /dev/null

nbdkit -f -r -U "$tmp/gsock" -e golden --filter=delay file \
    "$tmp/golden.raw" rdelay=1500ms 2> remote.log &
remote_pid=$!
cleanup_fn "kill -9 $remote_pid 2>/dev/null"
wait_for_socket "$tmp/gsock"
qemu-img create -q -f qcow2 -b "nbd+unix:///golden?socket=$tmp/gsock" \
    -F raw c.qcow2

start_server -vv c=c.qcow2 local=local.raw

cat > guard.py <<'EOF'
import nbd, os, signal, sys, time
sock, server_pid = sys.argv[1], int(sys.argv[2])

def connect(name):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sock)
    return h

def wait_for(h, cookie):
    while not h.aio_command_completed(cookie):
        h.poll(1000)

a = connect("c")
buf = nbd.Buffer(65536)
cookie = a.aio_pread(buf, 1 << 20)
t0 = time.monotonic()
time.sleep(0.2)                 # the slow read is now running
t = time.monotonic()
b = connect("local")
assert b.pread(4096, 0) == b"\x33" * 4096
assert b.pread(4096, 65536) == b"\x33" * 4096
waited = time.monotonic() - t
# Not a speed check: without a thread taking the loop over, the second
# client would wait for the slow read (another 1.3 s).
assert waited < 0.8, "the second client waited %.2f s for another's read" % waited
wait_for(a, cookie)
assert time.monotonic() - t0 > 1.2, "the remote's delay did not apply"
assert buf.to_bytearray() == b"\x5a" * 65536, "the slow read's data"
b.shutdown()

# SIGTERM while a connection's only request runs: it is answered, then
# the server closes.
buf = nbd.Buffer(65536)
cookie = a.aio_pread(buf, 4 << 20)
time.sleep(0.2)
os.kill(server_pid, signal.SIGTERM)
wait_for(a, cookie)
assert buf.to_bytearray() == b"\x5a" * 65536, "the read during shutdown"
print("second client answered in %.3f s during a 1.5 s read" % waited)
EOF
$PYTHON guard.py "$tmp/sock" "$server_pid" || fail "guard.py"

grep -q "another thread leads the loop meanwhile" server.log ||
    fail "no takeover of the loop logged"
# guard.py's SIGTERM stopped the server: exit status 0, no sanitizer
# report.
rc=0
wait "$server_pid" || rc=$?
server_pid=
check_no_sanitizer server.log
[ "$rc" -eq 0 ] || { cat server.log; fail "cowbd exited with status $rc"; }
echo "PASS"
