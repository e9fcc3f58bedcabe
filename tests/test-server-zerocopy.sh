#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Reads sent straight from the host file (sendfile): raw, QED and qcow2,
# clusters contiguous in the file and not, ranges that cross allocated,
# unallocated, zero and backing data, compressed clusters (read into
# memory instead), reads racing writes and trims of the same clusters
# (old or new bytes only), and TLS (never from the file).  What nbdcopy
# and nbdsh read must be what qemu-img reads; -vv says which reads went
# out from the file.
. "${srcdir:-.}/server-functions.sh"
requires nbdcopy --version
requires nbdsh --version
requires qemu-io --version

cd "$tmp"
zc_lines () { grep -c 'from the host file' server.log || true; }

# base: 8 MiB, data in [2M, 6M).  The overlay: 1 MiB at 0 written in one
# go (contiguous clusters), 64 KiB clusters at 1M..2M written backwards
# (each next one lies before the last in the file), a zero range, the
# rest falls through to the base.
make_clone ()
{
    local fmt=$1
    qemu-img create -q -f raw base.raw 8M
    qemu-io -f raw -c 'write -P 0x21 2M 4M' base.raw >/dev/null
    if [ $fmt = raw ]; then
        cp base.raw img.raw
    else
        qemu-img create -q -f $fmt -o cluster_size=65536 -b base.raw \
            -F raw img.$fmt
    fi
    local cmds=(-c 'write -P 0x41 0 1M')
    for ((i = 15; i >= 0; i--)); do
        cmds+=(-c "write -P $((0x50 + i)) $((1048576 + i * 65536)) 64k")
    done
    cmds+=(-c 'write -z 3M 512k' -c 'write -P 0x61 5M 128k')
    qemu-io -f $fmt "${cmds[@]}" img.$fmt >/dev/null
    qemu-img convert -f $fmt -O raw img.$fmt want.raw
}

# Reads at offsets and lengths that cross every boundary, through one
# connection with structured replies and one without.
read_ranges ()
{
    WANT=want.raw nbdsh -u "$(uri)" -c '
import os
want = open(os.environ["WANT"], "rb").read()
h2 = nbd.NBD()
h2.set_request_structured_replies(False)
h2.connect_uri(h.get_uri())
K = 1024
for off, n in [(0, 1024 * K), (512 * K, 1024 * K), (960 * K, 256 * K),
               (1024 * K + 4097, 300 * K), (1536 * K, 1024 * K),
               (2 * 1024 * K - 64 * K, 128 * K), (3 * 1024 * K - 4 * K, 1024 * K),
               (5 * 1024 * K, 1024 * K), (7 * 1024 * K, 1024 * K),
               (0, 8 * 1024 * K)]:
    for hh in (h, h2):
        assert hh.pread(n, off) == want[off:off + n], (off, n)
'
}

for fmt in raw qed qcow2; do
    make_clone $fmt
    start_server -vv "$tmp/img.$fmt"
    nbdcopy --connections=4 --request-size=262144 "$(uri)" out.raw
    cmp out.raw want.raw || fail "$fmt: nbdcopy read other bytes"
    read_ranges
    stop_server
    [ "$(zc_lines)" -gt 0 ] || fail "$fmt: no read went out from the file"
    rm -f out.raw
done

# Compressed clusters are read into memory: nothing from the file.
qemu-img convert -c -f raw -O qcow2 want.raw comp.qcow2
start_server -vv "$tmp/comp.qcow2"
nbdcopy --connections=4 "$(uri)" out.raw
cmp out.raw want.raw || fail "compressed: nbdcopy read other bytes"
read_ranges
stop_server
[ "$(zc_lines)" -eq 0 ] || fail "compressed clusters went out from the file"
rm -f out.raw

# Reads racing writes and trims of the same clusters, on two connections:
# every byte read is old or new content of its own MiB (the high nibble
# names the MiB), or zeros after a trim.  No backing file, so that a
# trimmed cluster reads as zeros.
for fmt in raw qcow2 qed; do
    rm -f race.$fmt
    qemu-img create -q -f $fmt race.$fmt 4M
    qemu-io -f $fmt -c 'write -P 0x10 0 1M' -c 'write -P 0x20 1M 1M' \
        -c 'write -P 0x30 2M 1M' -c 'write -P 0x40 3M 1M' \
        race.$fmt >/dev/null
    start_server -vv "$tmp/race.$fmt"
    nbdsh -u "$(uri)" -c '
import threading
M = 1 << 20
w = nbd.NBD()
w.connect_uri(h.get_uri())
done = threading.Event()
def change():
    for r in range(60):
        for i in range(4):
            if r % 3 == 2:
                w.trim(M // 2, i * M + (r % 2) * (M // 2))
            else:
                w.pwrite(bytes([0x10 * (i + 1) + r % 16]) * M, i * M)
    done.set()
t = threading.Thread(target=change)
t.start()
n = 0
while not done.is_set() or n < 8:
    off = (n % 7) * (M // 2)
    buf = h.pread(M, off)
    for k in range(0, M, 4096):
        i = (off + k) // M
        for b in set(buf[k:k + 4096]):
            assert b == 0 or b >> 4 == i + 1, (off, k, b)
    n += 1
t.join()
' || fail "$fmt: a read racing writes and trims returned other bytes"
    stop_server
    [ "$(zc_lines)" -gt 0 ] || fail "$fmt race: no read went out from the file"
    qemu-img check -q -f $fmt race.$fmt 2>/dev/null || [ $fmt = raw ] ||
        fail "$fmt race: check"
done

# TLS: the data goes through GnuTLS, never from the file.
if [ -e "${srcdir:-.}/tls-functions.sh" ] && command -v psktool >/dev/null
then
    . "${srcdir:-.}/tls-functions.sh"
    make_psk "$tmp/keys.psk" alice
    make_clone qcow2
    start_server -vv --tls=require --tls-psk="$tmp/keys.psk" "$tmp/img.qcow2"
    nbdcopy --connections=4 \
        "nbds+unix://alice@/?socket=$tmp/sock&tls-psk-file=$tmp/keys.psk" \
        out.raw
    cmp out.raw want.raw || fail "TLS: nbdcopy read other bytes"
    stop_server
    [ "$(zc_lines)" -eq 0 ] || fail "TLS: a read went out from the file"
fi
