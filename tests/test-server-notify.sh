#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# sd_notify readiness as systemd-notify's socket sees it: NOTIFY_SOCKET
# names a datagram socket this test owns; READY=1 arrives, and then the
# listening socket accepts; STATUS= counts exports and connections;
# SIGTERM sends STOPPING=1.  libsystemd is mapped only by a server that
# has a NOTIFY_SOCKET to send to.
. "${srcdir:-.}/server-functions.sh"
requires sh -c 'cowbd --version | grep -q "^features:.*sd_notify"'
requires nbdinfo --version

# The receiver: once READY=1 arrives it connects to the server's socket
# at once (no waiting for the socket file) and records whether the
# server answered; every datagram goes to notify.out.
$PYTHON - "$tmp/notify.sock" "$tmp/notify.out" "$tmp/sock" <<'PY' &
import socket, subprocess, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
with open(sys.argv[2], "a", buffering=1) as out:
    while True:
        msg = s.recv(4096).decode()
        out.write(msg.replace("\n", "|") + "\n")
        if "READY=1" in msg:
            r = subprocess.run(["nbdinfo", "--size",
                                "nbd+unix:///?socket=" + sys.argv[3]],
                               capture_output=True, text=True, timeout=30)
            out.write("after-ready: size %s rc %d\n"
                      % (r.stdout.strip(), r.returncode))
        if "STOPPING=1" in msg:
            break
PY
rx_pid=$!
cleanup_fn "kill $rx_pid 2>/dev/null"
wait_for_socket "$tmp/notify.sock"

make_image raw img.raw
make_image raw two.raw
NOTIFY_SOCKET="$tmp/notify.sock" start_server "$tmp/img.raw" "$tmp/two.raw"
for (( i=0; i<100; i++ )); do
    grep -q '^after-ready' "$tmp/notify.out" 2>/dev/null && break
    sleep 0.1
done
grep -q '/libsystemd\.so' "/proc/$server_pid/maps" ||
    fail "libsystemd not mapped with NOTIFY_SOCKET set"
# A connection held open until the STATUS= line counts it (10 s at most).
nbdsh -u "$(uri)" -c "
import time
for i in range(100):
    if ', 1 connections' in open('$tmp/notify.out').read():
        break
    time.sleep(0.1)
"
stop_server
wait $rx_pid || fail "the receiver failed (no STOPPING=1?)"
cat "$tmp/notify.out"

head -1 "$tmp/notify.out" | grep -q '^READY=1|STATUS=2 exports, 0 connections$' ||
    fail "the first message is not READY=1 with a STATUS="
grep -q "^after-ready: size $((16 << 20)) rc 0$" "$tmp/notify.out" ||
    fail "the server did not accept right after READY=1"
grep -q '^STATUS=2 exports, 1 connections$' "$tmp/notify.out" ||
    fail "no STATUS= update after a connection"
tail -1 "$tmp/notify.out" | grep -q 'STOPPING=1' ||
    fail "no STOPPING=1 at shutdown"

# Without NOTIFY_SOCKET nothing loads libsystemd.
unset NOTIFY_SOCKET
start_server "$tmp/img.raw"
nbdinfo --size "$(uri)" > /dev/null || fail "no answer without NOTIFY_SOCKET"
! grep -q '/libsystemd\.so' "/proc/$server_pid/maps" ||
    fail "libsystemd mapped without NOTIFY_SOCKET"
stop_server
