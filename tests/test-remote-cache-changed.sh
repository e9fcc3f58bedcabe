#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A remote base changed under the same URI: nbdkit is stopped, the golden
# image rewritten with other content at the same size, and nbdkit started
# again on the same socket.  cowbd, restarted with the same --base-cache,
# logs that the cache was discarded and serves the new content (the
# remote sends it all again); the next restart finds the new content
# cached.  While cowbd keeps running, the same change is seen at the
# next connection to an idle export (which opens the remote again); with
# a client connected all along, a remote that comes back with another
# size is refused (EIO, a log line) while what the cache holds is still
# served, and service resumes when the remote is back as it was.
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/remote-functions.sh"
requires nbdsh --version
cd "$tmp"

MiB=$((1 << 20))
head -c 8M /dev/urandom > golden.raw
cp golden.raw golden-1.raw
start_remote
qemu-img create -q -f qcow2 -b "$(golden_uri)" -F raw c.qcow2
mkdir cache

# read_clone WANT: the whole clone through cowbd equals file WANT.
read_clone ()
{
    rm -f out.raw
    timeout 60 nbdcopy "$(uri c)" out.raw || fail "reading the clone"
    cmp out.raw "$1" || fail "the clone does not read as $1"
}

start_server --base-cache="$tmp/cache" c=c.qcow2
read_clone golden-1.raw
stop_server
grep -q 'discarded' server.log && fail "a new cache was 'discarded'"

# The base changes under the same URI.
stop_remote
head -c 8M /dev/urandom > golden.raw
cp golden.raw golden-2.raw
start_remote

d0=$(remote_bytes data)
start_server --base-cache="$tmp/cache" c=c.qcow2
read_clone golden-2.raw
stop_server
grep -q "cache for $(golden_uri) discarded" server.log ||
    fail "no log line says the cache was discarded"
[ "$(grep -c . server.log)" -eq 1 ] || fail "more than one line in the log"
fetched=$(( $(remote_bytes data) - d0 ))
[ "$fetched" -eq $((8 * MiB)) ] ||
    fail "the changed base: the remote sent $fetched bytes, not 8 MiB"

# The new content is what the cache holds now.
d0=$(remote_bytes data)
start_server --base-cache="$tmp/cache" c=c.qcow2
read_clone golden-2.raw
stop_server
grep -q 'discarded' server.log && fail "the new content was discarded again"
[ "$(remote_bytes data)" -eq "$d0" ] ||
    fail "the restart after the change fetched data again"

# While cowbd runs, with no client connected: an idle export holds no
# image open, so the next connection opens the remote afresh, and its
# fingerprint shows a same-size change: the cache is discarded again.
start_server --base-cache="$tmp/cache" c=c.qcow2
read_clone golden-2.raw
stop_remote
head -c 8M /dev/urandom > golden.raw
cp golden.raw golden-3.raw
start_remote
read_clone golden-3.raw
grep -q "cache for $(golden_uri) discarded" server.log ||
    fail "running cowbd: no log line says the cache was discarded"
stop_server

# While a client stays connected (the remote stays open; a fresh cache,
# half of it filled): the remote comes back with another size.  The
# cached half still reads; what needs the remote fails with EIO and the
# log names the change.  When the remote is back as it was, the rest
# reads again, without a restart.  (A same-size change goes unseen
# here: the fingerprint is checked when the remote is opened, not on
# reconnects; cowbd-formats(5).)
mkdir cache2
start_server --base-cache="$tmp/cache2" --remote-timeout=2 c=c.qcow2
hold_connection "$(uri c)"
cat > resized.py <<'EOF'
import errno, nbd, sys, time
sock, what = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.set_export_name("c")
h.connect_unix(sock)
want = open("golden-3.raw", "rb").read()
CH = 64 << 10                   # the cache's chunk
def first_half():
    assert h.pread((4 << 20) - CH, CH) == want[CH:4 << 20], \
        "cached data changed"
def second_half():
    return h.pread(1 << 20, 6 << 20)
if what == "fill":
    # Backwards, chunk by chunk, chunk 0 left out: no read follows cached
    # data, so the cache reads nothing ahead and the second half stays
    # with the remote.
    for off in range((4 << 20) - CH, 0, -CH):
        assert h.pread(CH, off) == want[off:off + CH], "fill: wrong data"
elif what == "resized":
    first_half()
    # The first read may meet a connection that died with the old remote;
    # every later one reconnects and is refused.
    for i in range(3):
        try:
            second_half()
        except nbd.Error as e:
            assert e.errnum == errno.EIO, "resized: %s, not EIO" % e
        else:
            raise AssertionError("a remote of another size was read")
elif what == "back":
    deadline = time.monotonic() + 20    # reconnects back off up to 5 s
    while True:
        try:
            data = second_half()
            break
        except nbd.Error as e:
            assert e.errnum == errno.EIO, "back: %s" % e
            assert time.monotonic() < deadline, "the remote is back, reads fail"
            time.sleep(0.2)
    assert data == want[6 << 20:7 << 20], "back: wrong data"
    first_half()
EOF
/usr/bin/python3 resized.py "$tmp/sock" fill || fail "filling half the cache"
stop_remote
head -c 12M /dev/urandom > golden.raw
start_remote
/usr/bin/python3 resized.py "$tmp/sock" resized ||
    fail "a remote that changed size while cowbd runs"
n=$(grep -c "$(golden_uri): the remote's size changed" server.log || true)
[ "$n" -eq 1 ] || fail "$n log lines name the size change, not one"
stop_remote
cp golden-3.raw golden.raw
start_remote
/usr/bin/python3 resized.py "$tmp/sock" back ||
    fail "the remote back at its size"
release_connection
kill -0 "$server_pid" || fail "cowbd is gone"
stop_server
stop_remote
exit 0
