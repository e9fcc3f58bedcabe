#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Memory of cowbd with 100 exports (QED overlays of one base) and 100
# idle connections (each through the handshake to the transmission
# phase, one per export).  Prints the server's VmRSS.  Not part of make
# check.   bench/server-rss.sh [COWBD] [DIR]
set -euo pipefail
COWBD=${1:-$PWD/server/cowbd}
DIR=${2:-/dev/shm}
N=${N:-100}
work=$(mktemp -d "$DIR/cowbd-rss.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
qemu-img create -q -f raw "$work/base.raw" 10G
args=()
for (( i = 0; i < N; i++ )); do
    qemu-img create -q -f qed -b base.raw -F raw "$work/vm$i.qed"
    args+=("vm$i=$work/vm$i.qed")
done
"$COWBD" -U "$work/sock" "${args[@]}" &
pid=$!
for (( i = 0; i < 100; i++ )); do [ -S "$work/sock" ] && break; sleep 0.1; done
echo "after start: $(grep VmRSS /proc/$pid/status)"
/usr/bin/python3 - "$work/sock" "$N" "$pid" <<'PY'
import sys, nbd
sock, n, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
hs = []
for i in range(n):
    h = nbd.NBD()
    h.connect_uri("nbd+unix:///vm%d?socket=%s" % (i, sock))
    h.pread(4096, i * 65536)
    hs.append(h)
rss = [l for l in open("/proc/%s/status" % pid) if l.startswith("VmRSS")][0]
print("with %d idle connections: %s" % (n, rss.strip()))
PY
