#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# What --run's command is told, as nbdkit tells it: with --tls=require an
# nbds URI a libnbd client connects with as it is (PSK user and key file,
# or the certificate directory), $tls 1 or 2; with -p 0 the port the
# kernel chose, in $port and $uri; under socket activation the real port
# in the log, $port and $uri.
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/tls-functions.sh"
requires nbdinfo --version
requires /usr/bin/python3 --version

cd "$tmp"
make_image qed img.qed
make_psk keys.psk alice
make_pki pki

# $1: what the command prints must match; the rest: cowbd's arguments.
captive ()
{
    local want=$1; shift
    timeout 60 cowbd "$@" > out 2> err || { cat out err; fail "cowbd $*"; }
    check_no_sanitizer err
    grep -q -- "$want" out || { cat out err; fail "cowbd $*: no '$want'"; }
}

show='echo "tls=${tls-unset} uri=$uri"; nbdinfo "$uri"'
captive "protocol: .* with TLS" --tls=require --tls-psk=keys.psk -U - img.qed \
    --run "$show"
grep -q '^tls=2 uri=nbds+unix://alice@/img.qed?socket=.*&tls-psk-file=keys.psk$' out ||
    fail "PSK: $(head -1 out)"
captive "protocol: .* with TLS" --tls=require --tls-certificates=pki \
    -U - img.qed --run "$show"
grep -q '^tls=2 uri=nbds+unix:///img.qed?socket=.*&tls-certificates=pki$' out ||
    fail "X.509: $(head -1 out)"
captive "protocol: .* without TLS" --tls=on --tls-psk=keys.psk -U - img.qed \
    --run "$show"
grep -q '^tls=1 uri=nbd+unix:///img.qed?socket=' out || fail "--tls=on: $(head -1 out)"
captive "protocol: .* without TLS" -U - img.qed --run "$show"
grep -q '^tls=unset ' out || fail "--tls=off: $(head -1 out)"
# Over TCP too (the address is the loopback one).
captive "protocol: .* with TLS" --tls=require --tls-psk=keys.psk \
    -i 127.0.0.1 -p 0 img.qed --run "$show"
grep -q '^tls=2 uri=nbds://alice@127.0.0.1:[1-9][0-9]*/img.qed?tls-psk-file=keys.psk$' out ||
    fail "PSK over TCP: $(head -1 out)"

# -p 0: the port the server really listens on.
captive "^ok" -i 127.0.0.1 -p 0 img.qed --run '
    echo "port=$port uri=$uri"
    [ "$uri" = "nbd://127.0.0.1:$port/img.qed" ] &&
    [ "$port" -gt 0 ] &&
    nbdinfo --size "nbd://127.0.0.1:$port" > /dev/null && echo ok'

# Socket activation on a port the kernel chose: a wrapper binds it, says
# which, and execs cowbd with the socket as descriptor 3, as systemd does.
timeout 60 /usr/bin/python3 -c '
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.execvp("cowbd", ["cowbd", "-v", "img.qed", "--run",
                    "echo port=$port uri=$uri; nbdinfo --size \"$uri\""])
' > out 2> err || { cat out err; fail "socket activation"; }
check_no_sanitizer err
port=$(head -1 out)
grep -q "^port=$port uri=nbd://127.0.0.1:$port/img.qed$" out ||
    { cat out; fail "socket activation: \$port or \$uri not port $port"; }
grep -qx 16777216 out || { cat out; fail "socket activation: nbdinfo"; }
grep -q "listening (socket activation): nbd://127.0.0.1:$port/" err ||
    { cat err; fail "socket activation: the log does not name port $port"; }
