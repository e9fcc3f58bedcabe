#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Where the server listens, and the files it refuses:
#  - a Unix socket left by a killed server is replaced; one a live server
#    listens on is refused in one line, and that server goes on serving;
#    a file that is not a socket is refused and left alone; so is a
#    socket activation descriptor that is not a listening socket;
#  - an image that cannot be opened for writing is an error without -r,
#    naming the file and suggesting -r; with -r it is served read-only;
#  - a listen on every address that binds one family but not the other
#    (the port taken on 127.0.0.1, or on ::1) is an error naming the
#    address and port.  This one has to bind the wildcard addresses: the
#    server exits before it would accept anything.
. "${srcdir:-.}/server-functions.sh"
requires nbdinfo --version
requires /usr/bin/python3 --version

cd "$tmp"
make_image qed img.qed
make_image qed other.qed   # a second server must not meet the first's image lock

# One start-up error: the command exits 1 with one line matching $1.
bad ()
{
    local want=$1; shift
    local rc=0
    timeout 60 "$@" > /dev/null 2> err || rc=$?
    [ $rc -eq 1 ] || { cat err; fail "$*: exit $rc, expected 1"; }
    check_no_sanitizer err
    [ "$(wc -l < err)" -eq 1 ] || { cat err; fail "$*: not one line"; }
    grep -q -- "$want" err || { cat err; fail "$*: no '$want'"; }
}

# ---- Unix sockets ----
# A stale socket: a server killed with SIGKILL leaves its socket file.
start_server img.qed
kill -KILL $server_pid
wait $server_pid 2>/dev/null || true
server_pid=
[ -S sock ] || fail "SIGKILL did not leave a socket file behind"
cowbd -U sock img.qed 2> server.log &
server_pid=$!
for (( i = 0; i < 100; i++ )); do
    nbdinfo --size "$(uri)" > size 2>/dev/null && break
    sleep 0.1
done
[ "$(cat size)" = 16777216 ] || fail "the stale socket was not replaced"
# A live one: refused, and the server that owns it is not disturbed.
bad "sock: another server is listening" cowbd -U sock other.qed
[ -S sock ] || fail "the live server's socket was removed"
nbdinfo --size "$(uri)" > /dev/null || fail "the live server was disturbed"
stop_server
# Not a socket: refused and left alone.
echo keep > notsock
bad "notsock: exists and is not a socket" cowbd -U notsock img.qed
[ "$(cat notsock)" = keep ] || fail "a file that is not a socket was changed"

# Socket activation whose descriptor was not inherited: refused (fd 3
# would otherwise be the image itself, accepted on in a busy loop).
bad "LISTEN_FDS: descriptor 3 is not a listening socket" /usr/bin/python3 -c '
import os
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.execvp("cowbd", ["cowbd", "img.qed"])'

# ---- read-only image files ----
cp img.qed ro.qed
chmod 444 ro.qed
cp ro.qed ro-before.qed
# root writes any file unless it lacks CAP_DAC_OVERRIDE: drop it.
drop=()
if [ "$(id -u)" -eq 0 ]; then
    drop=(setpriv --bounding-set=-dac_override,-dac_read_search --)
    "${drop[@]}" sh -c 'echo x >> ro.qed' 2>/dev/null &&
        fail "setpriv did not take away root's write permission"
fi
bad "ro.qed: .*add -r" "${drop[@]}" cowbd -U - ro.qed --run 'touch ran'
[ ! -e ran ] || fail "--run ran although the image is not writable"
"${drop[@]}" cowbd -r -U - ro.qed \
    --run 'nbdinfo --json "$uri"' > info.json 2> err
check_no_sanitizer err
[ "$(jq -r '.exports[0].is_read_only' info.json)" = true ] ||
    fail "-r: not served read-only"
cmp ro.qed ro-before.qed || fail "ro.qed changed"

# ---- a listen on every address that half succeeds ----
# $1: the address a Python listener takes (family 4 or 6); cowbd -p on
# that port must fail naming the wildcard address of the other's family.
half_listen ()
{
    /usr/bin/python3 -c '
import socket, subprocess, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam)
if fam == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind((sys.argv[1], 0))
s.listen(1)
port = s.getsockname()[1]
r = subprocess.run(["timeout", "60", "cowbd", "-p", str(port), "img.qed"],
                   stderr=subprocess.PIPE, text=True)
print(port, r.returncode)
sys.stderr.write(r.stderr)
' "$1" > half.out 2> err
    read -r port rc < half.out
    check_no_sanitizer err
    [ "$rc" -eq 1 ] || { cat err; fail "port $port taken on $1: exit $rc"; }
    [ "$(wc -l < err)" -eq 1 ] || { cat err; fail "$1: not one line"; }
    grep -q "cannot listen on $2:$port: Address already in use" err ||
        { cat err; fail "$1: the error does not name $2:$port"; }
}
half_listen 127.0.0.1 0.0.0.0
if /usr/bin/python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
    half_listen ::1 '\[::\]'
else
    echo "$test_name: no IPv6 here: only the IPv4 half tested"
fi
