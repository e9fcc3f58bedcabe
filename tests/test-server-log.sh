#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Logs an operator can use: ISO-8601 timestamps on stderr; syslog
# priority prefixes instead when stderr is the journal (JOURNAL_STREAM);
# --log=syslog reaches a syslog socket (the same datagrams logger(1)
# sends); a repair at open and a lock conflict are logged without -v;
# -v lines about a connection carry its id and peer, -vv names every
# request's command; lines about unknown export names are budgeted.
. "${srcdir:-.}/server-functions.sh"
requires nbdsh --version
requires logger --version
requires od --version

ts='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z'

# An image left needing a check: QED NEED_CHECK is bit 1 of the features
# (64 bits, little-endian) at byte 16.
needs_check ()
{
    qemu-img create -q -f qed "$1" 16M
    printf '\x02' | dd of="$1" bs=1 seek=16 conv=notrunc status=none
}

# A repair at open, without -v, timestamped.
needs_check "$tmp/r.qed"
start_server "$tmp/r.qed"
grep -Eq "^$ts cowbd: warning: .*r\.qed: .*repaired at open" \
    "$tmp/server.log" || fail "the repair at open was not logged"

# A lock conflict, without -v: a second server on the same image, while
# a client holds it open on the first (an idle export holds no lock).
hold_connection "$(uri)"
: > "$tmp/conflict.log"
# (Bounded: a server that wrongly starts must not hang the test.)
expect_fail timeout 60 cowbd -U "$tmp/sock2" "$tmp/r.qed" 2>"$tmp/conflict.log"
grep -Eq "^$ts cowbd: .*r\.qed: .*in use" "$tmp/conflict.log" ||
    fail "the lock conflict was not logged with a timestamp"

# stderr is the journal: priority prefixes, no timestamps.
: > "$tmp/journal.log"
rc=0
JOURNAL_STREAM=$(stat -c '%d:%i' "$tmp/journal.log") \
    timeout 60 cowbd -U "$tmp/sock2" "$tmp/r.qed" 2>>"$tmp/journal.log" || rc=$?
[ $rc -ne 0 ] || fail "second server on a locked image started"
grep -Eq '^<3>cowbd: .*r\.qed: .*in use' "$tmp/journal.log" ||
    fail "no <3> prefix for the journal"
! grep -Eq "$ts" "$tmp/journal.log" || fail "timestamps for the journal"
# JOURNAL_STREAM naming another file: stderr is not the journal.
: > "$tmp/other.log"
rc=0
JOURNAL_STREAM=$(stat -c '%d:%i' "$tmp/journal.log") \
    timeout 60 cowbd -U "$tmp/sock2" "$tmp/r.qed" 2>>"$tmp/other.log" || rc=$?
grep -Eq "^$ts cowbd: " "$tmp/other.log" ||
    fail "JOURNAL_STREAM of another file changed the format"
stop_server

# -v and -vv: lifecycle with id and peer, requests by command name.
start_server -vv "$tmp/r.qed"
nbdsh -u "$(uri)" -c 'h.pwrite(b"a" * 512, 0)' -c 'h.flush()'
stop_server
grep -Eq "^$ts cowbd: connection 1 \(unix socket\): opened" \
    "$tmp/server.log" || fail "-v: no 'opened' line with id and peer"
grep -Eq "connection 1 \(unix socket\): option NBD_OPT_GO" \
    "$tmp/server.log" || fail "-vv: options not named"
grep -Eq "connection 1 \(unix socket\): write flags 0x0 offset 0 length 512" \
    "$tmp/server.log" || fail "-vv: the write was not logged by name"
grep -Eq "connection 1 \(unix socket\): flush" "$tmp/server.log" ||
    fail "-vv: the flush was not logged by name"

# Unknown export names, asked for as fast as a client can: a budget of
# lines, then one line saying how many were held back.
start_server "$tmp/r.qed"
nbdsh --opt-mode -u "$(uri)" -c '
for i in range(300):
    h.set_export_name("nosuch%d" % i)
    try:
        h.opt_info()
        raise SystemExit("nosuch%d was found" % i)
    except nbd.Error:
        pass
'
n=$(grep -c "no export named 'nosuch" "$tmp/server.log" || true)
[ "$n" -ge 20 ] && [ "$n" -le 40 ] ||
    fail "300 unknown names made $n log lines (expected 20 to 40)"
sleep 1
nbdsh --opt-mode -u "$(uri)" -c '
h.set_export_name("nosuch-last")
try:
    h.opt_info()
except nbd.Error:
    pass
'
grep -Eq "^$ts cowbd: [0-9]+ more lines about unknown exports were not logged" \
    "$tmp/server.log" || fail "no line counting the unknown names not logged"
grep -q "nosuch-last" "$tmp/server.log" ||
    fail "an unknown name after a pause was not logged"
stop_server

# --log=syslog: datagrams to a socket of ours, as logger sends them.
$PYTHON - "$tmp/syslog.sock" "$tmp/syslog.out" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(65536).replace(b"\n", b"\\n") + b"\n")
PY
rx_pid=$!
cleanup_fn "kill $rx_pid 2>/dev/null"
wait_for_socket "$tmp/syslog.sock"
logger -u "$tmp/syslog.sock" --rfc3164 -p daemon.warning -t logger-check hello
needs_check "$tmp/s.qed"
rm -f "$tmp/sock"
cowbd --log=syslog:"$tmp/syslog.sock" -U "$tmp/sock" "$tmp/s.qed" \
    2>"$tmp/server.log" &
server_pid=$!
wait_for_socket "$tmp/sock"
for (( i=0; i<100; i++ )); do
    grep -q 'cowbd\[' "$tmp/syslog.out" 2>/dev/null && break
    sleep 0.1
done
stop_server
kill $rx_pid
cat "$tmp/syslog.out"
grep -Eq '^<28>.*logger-check: hello' "$tmp/syslog.out" ||
    fail "logger's own message did not arrive"
grep -Eq "^<28>[A-Z][a-z]{2} [ 0-9]{2} [0-9:]{8} cowbd\[[0-9]+\]: warning: .*s\.qed: .*repaired at open" \
    "$tmp/syslog.out" || fail "--log=syslog: the repair did not arrive"
[ ! -s "$tmp/server.log" ] || fail "--log=syslog still wrote to stderr"

# A bad --log is refused with one line.
expect_fail cowbd --log=nowhere "$tmp/s.qed"
grep -q -- '--log=nowhere' "$tmp/stderr" || fail "--log=nowhere: no message"
