#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Aliases of one file share one engine image, through the server and
# through the plugin: two names, a symbolic link and ./x of c1.qcow2.  A
# write through one is read at once through the others (two engine
# images would each cache their own tables: the second would not see
# it, and its close could lose it), survives a restart, and the file
# passes qemu-img check.
. "${srcdir:-.}/server-functions.sh"
requires nbdsh --version

cd "$tmp"
qemu-img create -q -f qcow2 golden.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x11 0 16M' golden.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b golden.qcow2 -F qcow2 c1.qcow2
ln -s c1.qcow2 link.qcow2

# Each alias writes its own 64 KiB; every alias then reads them all,
# while all four connections are open.
cat > aliases.py <<'EOF2'
import nbd, sys
sock, names = sys.argv[1], sys.argv[2:]
hs = []
for n in names:
    h = nbd.NBD()
    h.set_export_name(n)
    h.connect_unix(sock)
    hs.append(h)
for i, h in enumerate(hs):
    h.pwrite(bytes([0xa0 + i]) * 65536, i * 65536)
for h, n in zip(hs, names):
    for i in range(len(hs)):
        got = h.pread(65536, i * 65536)
        assert got == bytes([0xa0 + i]) * 65536, \
            "%s does not see the write through %s" % (n, names[i])
    assert h.pread(4096, 1 << 20) == b"\x11" * 4096, n + ": backing data"
for h in hs:
    h.flush()
    h.shutdown()
EOF2

check_written ()           # check_written LABEL FILE
{
    local i
    for i in 0 1 2 3; do
        qemu-io -f qcow2 -c "read -P $((0xa0 + i)) $((i * 65536)) 64k" \
            "$2" | grep -q 'verification failed' &&
            fail "$1: write $i lost after the server stopped"
    done
    qemu-img check -q "$2" || fail "$1: qemu-img check"
}

# The server: two names, the symlink and ./c1.qcow2.
start_server a=c1.qcow2 b=c1.qcow2 l=link.qcow2 d=./c1.qcow2
/usr/bin/python3 aliases.py "$tmp/sock" a b l d || fail "server aliases"
# One descriptor for c1.qcow2 and one for golden.qcow2.
n=$(ls -l /proc/$server_pid/fd | grep -c '/c1.qcow2$' || true)
[ "$n" -le 1 ] || fail "server: c1.qcow2 open $n times"
stop_server
check_written server c1.qcow2
# After a restart, through another alias.
start_server l=link.qcow2
nbdsh -u "$(uri l)" -c '
for i in range(4):
    assert h.pread(65536, i * 65536) == bytes([0xa0 + i]) * 65536, i' ||
    fail "server: the writes are not there after a restart"
stop_server

# Through the plugin: a directory with the file and a link to it; the
# link and the file are aliases.  The golden image lies outside the
# directory, so backing-dir= allows its folder.
mkdir dir
qemu-img create -q -f qcow2 golden2.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x11 0 16M' golden2.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b "$tmp/golden2.qcow2" -F qcow2 dir/c1.qcow2
ln -s c1.qcow2 dir/link.qcow2
ln -s ./c1.qcow2 dir/dot.qcow2
if [ -f "${COWBD_PLUGIN:-}" ] && nbdkit --version > /dev/null 2>&1; then
    nbdkit_env timeout -k 10 120 nbdkit -U - "$COWBD_PLUGIN" dir="$tmp/dir" \
        backing-dir="$tmp" \
        --run "/usr/bin/python3 '$tmp/aliases.py' \"\$unixsocket\" \
               c1.qcow2 link.qcow2 dot.qcow2 link.qcow2" ||
        fail "plugin aliases"
    check_written plugin dir/c1.qcow2
fi
