#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A remote backing image lost while cowbd serves its overlay: the remote
# (nbdkit, each read delayed) is killed in the middle of a read, which
# then fails with EIO within --remote-timeout while another export of
# the same cowbd keeps serving; a write that needs copy-on-write data
# from the lost remote fails with EIO and leaves the overlay consistent;
# a hung remote (SIGSTOP) gives EIO within the timeout, not a hang (in
# cowbd and in the plugin under nbdkit); once
# the remote is back, reads succeed again without restarting cowbd.  The
# overlay passes qemu-img check throughout.
. "${srcdir:-.}/server-functions.sh"
requires nbdkit --version
requires nbdkit --filter=delay null --version
requires nbdsh --version
cd "$tmp"

qemu-img create -q -f raw golden.raw 32M
qemu-io -f raw -c 'write -P 0x11 0 32M' golden.raw > /dev/null
qemu-img create -q -f qcow2 local.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x55 0 16M' local.qcow2 > /dev/null

remote_pid=
start_remote ()
{
    rm -f gsock
    nbdkit -f -r -U "$tmp/gsock" -e golden --filter=delay file \
        "$tmp/golden.raw" rdelay="${1}ms" 2>> remote.log &
    remote_pid=$!
    cleanup_fn "[ -n \"\$remote_pid\" ] && kill -9 \$remote_pid 2>/dev/null"
    wait_for_socket "$tmp/gsock"
}
start_remote 500
qemu-img create -q -f qcow2 -b "nbd+unix:///golden?socket=$tmp/gsock" \
    -F raw c.qcow2

# qemu-img check of the overlay alone (its backing image may be gone).
check_overlay ()
{
    qemu-img check -U \
        "json:{\"driver\":\"qcow2\",\"backing\":null,\"file\":{\"driver\":\"file\",\"filename\":\"$tmp/c.qcow2\"}}" \
        > check.log 2>&1 || { cat check.log; fail "qemu-img check: $1"; }
}

start_server --remote-timeout=2 c=c.qcow2 local=local.qcow2
cat > reads.py <<'EOF'
import errno, nbd, os, signal, sys, time
sock, remote_pid, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def connect(name):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sock)
    return h
c, l = connect("c"), connect("local")
def expect_eio(fn, label, bound):
    t = time.monotonic()
    try:
        fn()
    except nbd.Error as e:
        assert e.errnum == errno.EIO, "%s: %s, not EIO" % (label, e)
    else:
        raise AssertionError("%s succeeded" % label)
    # A hang check, not a speed check: the timeout is 2 s.
    assert time.monotonic() - t < bound, "%s: no answer within %d s" % (
        label, bound)
if what == "kill":
    assert c.pread(65536, 0) == b"\x11" * 65536
    # 4 MiB: many delayed remote reads; the remote dies in the middle.
    cookie = c.aio_pread(nbd.Buffer(4 << 20), 8 << 20)
    time.sleep(0.3)
    os.kill(remote_pid, signal.SIGKILL)
    t = time.monotonic()
    while True:
        try:
            if c.aio_command_completed(cookie):
                raise AssertionError("the read succeeded without its remote")
        except nbd.Error as e:
            assert e.errnum == errno.EIO, "killed mid-read: %s" % e
            break
        c.poll(1000)
        assert time.monotonic() - t < 10, "killed mid-read: no answer"
    # Another export of the same process keeps serving.
    assert l.pread(1 << 20, 0) == b"\x55" * (1 << 20)
    # A partial write into an unallocated cluster needs the remote's data.
    expect_eio(lambda: c.pwrite(b"\xcc" * 512, (20 << 20) + 512),
               "copy-on-write without the remote", 10)
    expect_eio(lambda: c.pread(4096, 24 << 20), "read, remote gone", 10)
    c.flush()
elif what == "stop":
    expect_eio(lambda: c.pread(4096, 28 << 20), "read, remote hung", 8)
    assert l.pread(4096, 0) == b"\x55" * 4096
elif what == "back":
    # Reconnects come with a backoff (at most 5 s): retry for a while.
    deadline = time.monotonic() + 20
    while True:
        try:
            data = c.pread(1 << 20, 20 << 20)
            break
        except nbd.Error as e:
            assert e.errnum == errno.EIO, "remote back: %s" % e
            assert time.monotonic() < deadline, "the remote is back, reads fail"
            time.sleep(0.2)
    assert data == b"\x11" * (1 << 20), "remote back: wrong data"
    c.pwrite(b"\xcc" * 512, (20 << 20) + 512)
    c.flush()
    assert c.pread(1024, 20 << 20) == b"\x11" * 512 + b"\xcc" * 512
EOF
/usr/bin/python3 reads.py "$tmp/sock" "$remote_pid" kill ||
    fail "remote killed mid-read"
wait "$remote_pid" 2>/dev/null || :
check_overlay "after the remote was killed"

# A hung remote: no answer at all.
start_remote 0
# The plugin in nbdkit too (the remote stops after the plugin opened the
# overlay): EIO, where nbdkit would send the engine's ETIMEDOUT, an errno
# without an NBD name, as EINVAL.
if [ -f "$COWBD_PLUGIN" ]; then
    qemu-img create -q -f qcow2 -u -b "nbd+unix:///golden?socket=$tmp/gsock" \
        -F raw p.qcow2 32M
    nbdkit_env timeout -k 10 60 nbdkit -r -U - "$COWBD_PLUGIN" p.qcow2 \
        remote-timeout=1 --run '/usr/bin/python3 -c "
import errno, nbd, os, signal, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
os.kill(int(sys.argv[2]), signal.SIGSTOP)
try:
    h.pread(65536, 0)
except nbd.Error as e:
    assert e.errnum == errno.EIO, \"plugin, hung remote: %s, not EIO\" % e
else:
    raise AssertionError(\"plugin, hung remote: the read succeeded\")
" "$uri" '"$remote_pid" 2> plugin.log || { cat plugin.log; fail "plugin: remote hung"; }
fi
kill -STOP "$remote_pid"
/usr/bin/python3 reads.py "$tmp/sock" "$remote_pid" stop ||
    fail "remote hung"
kill -9 "$remote_pid"
wait "$remote_pid" 2>/dev/null || :
check_overlay "after the remote hung"

# The remote comes back: service resumes, same cowbd.
start_remote 0
/usr/bin/python3 reads.py "$tmp/sock" "$remote_pid" back ||
    fail "remote back"
kill -0 "$server_pid" || fail "cowbd is gone"
stop_server
check_overlay "at the end"
qemu-img check -q c.qcow2 || fail "qemu-img check with its backing image"
qemu-img convert -f qcow2 -O raw c.qcow2 final.raw
cp golden.raw want.raw
qemu-io -f raw -c 'write -P 0xcc 20972032 512' want.raw > /dev/null
cmp final.raw want.raw || fail "the overlay's content"
kill "$remote_pid"
wait "$remote_pid" 2>/dev/null || :
remote_pid=
exit 0
