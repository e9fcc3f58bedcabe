#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Out of descriptors: cowbd runs with `ulimit -n 64` and 200 clients
# connect and stay.  accept() then fails with EMFILE while clients wait
# in the listen queue; the server must not spin on it: its CPU time over
# 3 s (utime + stime, /proc/PID/stat) stays under 30% of one core, and
# its log has a bounded number of lines about it.  Once the clients
# leave, a new client is served.
. "${srcdir:-.}/server-functions.sh"
requires nbdsh --version
requires getconf CLK_TCK

cd "$tmp"
truncate -s 16M img.raw

rm -f sock
(ulimit -n 64; exec cowbd -U "$tmp/sock" --format=raw "$tmp/img.raw") \
    2> server.log &
server_pid=$!
cleanup_fn "[ -n \"\$server_pid\" ] && kill \$server_pid 2>/dev/null"
wait_for_socket "$tmp/sock"

# CPU ticks the server has used.
ticks ()
{
    awk '{ print $14 + $15 }' /proc/$server_pid/stat
}

# 200 clients connect (a few may time out in a full queue) and hold on
# until $tmp/release exists.
/usr/bin/python3 - "$tmp" <<'PY' &
import os, socket, sys, time
d = sys.argv[1]
socks = []
for i in range(200):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(d + "/sock")
        socks.append(s)
    except OSError:
        s.close()
open(d + "/connected", "w").write("%d\n" % len(socks))
deadline = time.monotonic() + 60
while not os.path.exists(d + "/release") and time.monotonic() < deadline:
    time.sleep(0.05)
PY
clients=$!
cleanup_fn "touch '$tmp/release'; kill $clients 2>/dev/null"
for i in $(seq 300); do
    [ -e connected ] && break
    sleep 0.1
done
[ -e connected ] || fail "the clients never connected"
echo "clients connected: $(cat connected)"
[ "$(cat connected)" -gt 64 ] || fail "too few clients to exhaust descriptors"

t0=$(ticks)
sleep 3
t1=$(ticks)
hz=$(getconf CLK_TCK)
used=$(( (t1 - t0) * 100 / hz ))        # hundredths of a second
echo "CPU over 3 s: $used/100 s"
[ $used -lt 90 ] || fail "the server spins: $used/100 s of CPU in 3 s"
grep -q "accept: Too many open files" server.log ||
    fail "the server did not say it ran out of descriptors"
lines=$(wc -l < server.log)
[ "$lines" -le 5 ] || { head server.log; fail "$lines log lines"; }

# The clients leave: a new client is served.
touch release
wait $clients || true
timeout -k 5 60 nbdsh -u "nbd+unix:///?socket=$tmp/sock" \
    -c 'assert len(h.pread(4096, 0)) == 4096' ||
    fail "not served once the clients left"
kill -TERM $server_pid
rc=0
wait $server_pid || rc=$?
server_pid=
check_no_sanitizer server.log
[ $rc -eq 0 ] || fail "cowbd exited with $rc"
