# SPDX-License-Identifier: BSD-3-Clause
# Sourced by the server's tests (not a test itself): functions.sh, then
# helpers to make images and to run cowbd on a Unix socket in $tmp.
#
#   make_image FMT NAME   $tmp/NAME: a 16 MiB image with known content:
#                         raw: the file itself; qed, qcow2: an overlay of
#                         $tmp/base-NAME.raw with some clusters of its own
#   make_clones FMT N     $tmp/c0.FMT ... c(N-1).FMT: fresh overlays of
#                         one empty 1 GiB $tmp/base.raw; clone_args holds
#                         cN=PATH for each, cowbd's export arguments
#   start_server ARGS...  cowbd -U $tmp/sock ARGS in the background,
#                         $server_pid, stderr in $tmp/server.log
#   stop_server           SIGTERM, wait: the server must exit 0 with
#                         nothing from the sanitizers in its log
#   uri [EXPORT]          nbd+unix URI of an export of that server
. "${srcdir:-.}/functions.sh"

requires cowbd --version
requires qemu-img --version

# nbdsh and the Python tests need the nbd module, which only the
# system's python3 has here: put it first on PATH for them.
if ! python3 -c 'import nbd' >/dev/null 2>&1 &&
   /usr/bin/python3 -c 'import nbd' >/dev/null 2>&1; then
    mkdir -p "$tmp/pybin"
    ln -sf /usr/bin/python3 "$tmp/pybin/python3"
    PATH="$tmp/pybin:$PATH"
fi
PYTHON=python3

# The formats every server test runs on.
FORMATS="raw qed qcow2"

make_image ()
{
    local fmt=$1 name=$2
    case "$fmt" in
        raw)
            qemu-img create -q -f raw "$tmp/$name" 16M
            qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x22 4M 2M' \
                -c 'write -P 0x33 15M 1M' "$tmp/$name" >/dev/null
            ;;
        qed|qcow2)
            qemu-img create -q -f raw "$tmp/base-$name.raw" 16M
            qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x22 4M 2M' \
                "$tmp/base-$name.raw" >/dev/null
            qemu-img create -q -f "$fmt" -b "base-$name.raw" -F raw "$tmp/$name"
            qemu-io -f "$fmt" -c 'write -P 0x44 512K 1M' \
                -c 'write -P 0x33 15M 1M' "$tmp/$name" >/dev/null
            ;;
        *) fail "make_image: unknown format $fmt" ;;
    esac
}

clone_args=()
make_clones ()
{
    local fmt=$1 n=$2 i
    qemu-img create -q -f raw "$tmp/base.raw" 1G
    clone_args=()
    for (( i = 0; i < n; i++ )); do
        qemu-img create -q -f "$fmt" -b base.raw -F raw "$tmp/c$i.$fmt"
        clone_args+=("c$i=$tmp/c$i.$fmt")
    done
}

server_pid=
start_server ()
{
    rm -f "$tmp/sock"
    cowbd -U "$tmp/sock" "$@" 2>"$tmp/server.log" &
    server_pid=$!
    cleanup_fn "[ -n \"\$server_pid\" ] && kill \$server_pid 2>/dev/null; cat '$tmp/server.log' >&2 2>/dev/null"
    wait_for_socket "$tmp/sock"
}

# Fails on a sanitizer report in file $1.
check_no_sanitizer ()
{
    if grep -q -e 'Sanitizer' -e 'runtime error' "$1"; then
        cat "$1" >&2
        fail "sanitizer report in $1"
    fi
}

stop_server ()
{
    local rc=0
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid"
    wait "$server_pid" || rc=$?
    server_pid=
    check_no_sanitizer "$tmp/server.log"
    if [ "$rc" -ne 0 ]; then
        cat "$tmp/server.log" >&2
        fail "cowbd exited with status $rc"
    fi
}

uri ()
{
    echo "nbd+unix:///${1:-}?socket=$tmp/sock"
}

# An idle export holds no descriptor (and so no lock): hold_connection
# URI keeps one client connected to it (nbdsh, in the background) until
# release_connection.
hold_connection ()
{
    local i
    rm -f "$tmp/held"
    touch "$tmp/hold"
    HOLD_DIR=$tmp nbdsh -u "$1" -c '
import os, time
d = os.environ["HOLD_DIR"]
open(d + "/held", "w").close()
while os.path.exists(d + "/hold"):
    time.sleep(0.05)' &
    hold_pid=$!
    cleanup_fn "rm -f '$tmp/hold'; kill \$hold_pid 2>/dev/null"
    for i in $(seq 200); do
        [ -e "$tmp/held" ] && return 0
        [ -d /proc/$hold_pid ] || fail "hold_connection: nbdsh exited"
        sleep 0.05
    done
    fail "hold_connection: no connection after 10 s"
}

release_connection ()
{
    rm -f "$tmp/hold"
    [ -z "$hold_pid" ] || wait "$hold_pid"
    hold_pid=
}
