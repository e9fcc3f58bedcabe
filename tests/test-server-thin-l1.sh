#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A fresh QED clone's L1 table is 256 KiB of zeros (qemu-img's default
# table size), read at open.  cowbd copies in only the pages of it that
# are not all zeros and never touches the others, not even to read them
# (formats/source.h, source_pread_sparse): on this kind of VM a read of
# an untouched anonymous page allocates it, so one scan of the table at
# open made every clone cost its whole L1 table in memory.
#  - 64 clones of one base, served together, each read through its own
#    connection (nbdsh): the server's anonymous memory grows by less
#    than three quarters of 64 L1 tables (6 MiB here, 10 under
#    AddressSanitizer; 19 MiB before, the tables and the connections);
#  - a clone qemu-io wrote past 1 TiB, whose L1 entry lies in the
#    table's second page: cowbd reads back what qemu-io wrote;
#  - a clone whose L1 entry 5000 (page 9) is not aligned: refused at
#    open, the entry named, by cowbd-img info and by the server,
#    which does not start.
. "${srcdir:-.}/server-functions.sh"
requires nbdsh --version
requires qemu-io --version

N=64
TABLE=$(( 256 << 10 ))

make_clones qed $N

# RssAnon of the server, KiB.
anon () { awk '$1 == "RssAnon:" { print $2 }' "/proc/$server_pid/status"; }

start_server "${clone_args[@]}"
before=$(anon)
SERVER_PID=$server_pid N=$N SOCK="$tmp/sock" OUT="$tmp/after" nbdsh -c '
import os
n, sock = int (os.environ["N"]), os.environ["SOCK"]
hs = []
for i in range (n):
    c = nbd.NBD ()
    c.connect_uri ("nbd+unix:///c%d?socket=%s" % (i, sock))
    assert c.pread (4096, i * 65536) == bytes (4096)
    hs.append (c)
with open ("/proc/%s/status" % os.environ["SERVER_PID"]) as f:
    kib = next (int (l.split ()[1]) for l in f if l.startswith ("RssAnon:"))
open (os.environ["OUT"], "w").write ("%d\n" % kib)
for c in hs:
    c.shutdown ()
' || fail "reading the $N clones"
after=$(cat "$tmp/after")
grew=$(( after - before ))
echo "anonymous memory: $before KiB before, $after KiB with $N clones open"
[ "$grew" -lt $(( N * TABLE * 3 / 4 / 1024 )) ] ||
    fail "$N clones open took $grew KiB (their L1 tables: $(( N * TABLE / 1024 )) KiB)"
stop_server

# Data whose L1 entry is in the second page (entry 512 on: 1 TiB on).
qemu-img create -q -f qed -b base.raw -F raw "$tmp/far.qed" 2T
qemu-io -f qed -c "write -P 0x5a $(( (1 << 40) + (3 << 20) )) 64K" \
    "$tmp/far.qed" >/dev/null
start_server "$tmp/far.qed"
OFF=$(( (1 << 40) + (3 << 20) )) nbdsh -u "$(uri)" -c '
import os
off = int (os.environ["OFF"])
assert h.pread (65536, off) == b"\x5a" * 65536
assert h.pread (4096, off + 65536) == bytes (4096)
assert h.pread (4096, 0) == bytes (4096)
' || fail "data past 1 TiB reads back wrong"
stop_server

# An unaligned L1 entry in page 9 (entry 5000): the L1 table's offset is
# the header's little-endian field at byte 40.
cp "$tmp/c0.qed" "$tmp/bad.qed"
l1=$(od -An -t u8 -j 40 -N 8 "$tmp/bad.qed" | tr -d ' ')
printf '\x39\x30\x00\x00\x00\x00\x00\x00' |
    dd of="$tmp/bad.qed" bs=1 seek=$(( l1 + 5000 * 8 )) conv=notrunc status=none
expect_fail cowbd-img info "$tmp/bad.qed"
grep -q 'L1 entry 5000' "$tmp/stderr" ||
    fail "cowbd-img info does not name L1 entry 5000"
rc=0
timeout 20 cowbd -U "$tmp/sock" "$tmp/bad.qed" 2>"$tmp/bad.log" || rc=$?
check_no_sanitizer "$tmp/bad.log"
cat "$tmp/bad.log"
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -lt 128 ] ||
    fail "cowbd started on an image with a bad L1 entry (exit $rc)"
grep -q 'L1 entry 5000' "$tmp/bad.log" ||
    fail "the server does not name L1 entry 5000"
