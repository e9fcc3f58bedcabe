#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cowbd.service as an operator starts it, without systemd as PID 1: the
# installed unit's ExecStart line, with its Environment= and an
# EnvironmentFile= as cowbd.service(8) says to write it, run in its
# WorkingDirectory= (not as the user cowbd), serves the images it lists.
# Then socket activation: systemd-socket-activate listens where
# cowbd.socket's ListenStream= says and starts that command at the first
# connection, which it serves.
. "${srcdir:-.}/pkg-functions.sh"
requires systemd-socket-activate --version
requires nbdinfo --version
requires qemu-img --version
requires qemu-io --version

pkg_install
unit=$(unit_file cowbd.service)
envfile=$(unit_value "$unit" EnvironmentFile)
[ -n "$envfile" ] || fail "cowbd.service has no EnvironmentFile"
envfile=$(in_dest "${envfile#-}")
mkdir -p "$(dirname "$envfile")"

# The image folder, with a clone of a golden image and a raw image.
workdir=$(in_dest "$(unit_value "$unit" WorkingDirectory)")
mkdir -p "$workdir"
qemu-img create -q -f raw "$workdir/golden.raw" 8M
qemu-io -f raw -c 'write -P 0x5a 1M 1M' "$workdir/golden.raw" >/dev/null
qemu-img create -q -f qed -b golden.raw -F raw "$workdir/vm1.qed"
qemu-io -f qed -c 'write -P 0xa5 4M 64K' "$workdir/vm1.qed" >/dev/null
qemu-img create -q -f raw "$workdir/vm2.raw" 4M

# Both exports are served, with the images' contents.
check_serves ()
{
    local base=$1 query=$2
    nbdinfo --list "$base/$query" > "$tmp/list" 2>&1 ||
        { cat "$tmp/list"; fail "nbdinfo --list $base"; }
    grep -q 'export="vm1"' "$tmp/list" || fail "vm1 not listed"
    grep -q 'export="vm2"' "$tmp/list" || fail "vm2 not listed"
    qemu-img compare -U -q -f qed -F raw "$workdir/vm1.qed" "$base/vm1$query" ||
        fail "vm1 reads differently through $base"
    qemu-img compare -U -q -f raw -F raw "$workdir/vm2.raw" "$base/vm2$query" ||
        fail "vm2 reads differently through $base"
}

# SIGTERM, as systemctl stop sends it: a clean exit.
stop ()
{
    local pid=$1 rc=0
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$tmp/server.log"; fail "exit $rc after SIGTERM"; }
    if grep -q -e Sanitizer -e 'runtime error' "$tmp/server.log"; then
        cat "$tmp/server.log"; fail "sanitizer report"
    fi
}

# 1. The service's own command line, on a Unix socket.
cat > "$envfile" <<EOT
# as an operator writes it
COWBD_OPTS="-U $tmp/sock"
COWBD_IMAGES="vm1=vm1.qed vm2=vm2.raw"
EOT
unit_command "$unit"
echo "ExecStart: ${cmd[*]}"
( cd "$workdir" && exec timeout --foreground -k 10 120 "${cmd[@]}" ) 2>"$tmp/server.log" &
pid=$!
cleanup_fn "kill $pid 2>/dev/null"
wait_for_socket "$tmp/sock"
check_serves "nbd+unix://" "?socket=$tmp/sock"
stop "$pid"

# 2. Socket activation on cowbd.socket's port (on 127.0.0.1; if another
# server here holds that port, on a free one).
port=$(unit_value "$(unit_file cowbd.socket)" ListenStream)
[[ $port =~ ^[0-9]+$ ]] || fail "cowbd.socket: ListenStream=$port is not a port"
if ! /usr/bin/python3 -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null; then
    busy=$port
    port=$(/usr/bin/python3 -c '
import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    echo "port $busy is busy here: port $port instead"
fi
cat > "$envfile" <<EOT
COWBD_IMAGES="vm1=vm1.qed vm2=vm2.raw"
EOT
unit_command "$unit"
echo "ExecStart: ${cmd[*]}"
( cd "$workdir" &&
  exec timeout --foreground -k 10 120 systemd-socket-activate -l "127.0.0.1:$port" \
      -E ASAN_OPTIONS -E UBSAN_OPTIONS "${cmd[@]}" ) 2>"$tmp/server.log" &
pid=$!
cleanup_fn "kill $pid 2>/dev/null"
for (( i=0; i<100; i++ )); do
    grep -q '^Listening on' "$tmp/server.log" && break
    sleep 0.1
done
grep -q "^Listening on 127.0.0.1:$port" "$tmp/server.log" ||
    { cat "$tmp/server.log"; fail "systemd-socket-activate does not listen"; }
check_serves "nbd://127.0.0.1:$port" ""
stop "$pid"
