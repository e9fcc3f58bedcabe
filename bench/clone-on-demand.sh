#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# clone-on-demand.sh [--builddir DIR] [N [ANCHOR_N]]: the time from TCP
# connect with a new export name to the first 4 KiB read returned, over
# N (default 1000) new names, each a new overlay of one 1 GiB base that
# cowbd --clone-from creates on demand; against the anchor path for the
# same thing in the same run, ANCHOR_N (default N) times: qemu-img
# create -b, start qemu-nbd on the overlay, connect (retrying until it
# listens), read 4 KiB, stop qemu-nbd.  Images on tmpfs (/dev/shm).
# Prints p50, p99, mean and max of each, and the ratio of the p99s.
# Not a test: nothing is asserted.
set -euo pipefail
builddir=$(cd "$(dirname "$0")/.." && pwd)/build
if [ "${1:-}" = --builddir ]; then builddir=$(cd "$2" && pwd); shift 2; fi
N=${1:-1000}
ANCHOR_N=${2:-$N}
cowbd=$builddir/server/cowbd
work=$(mktemp -d /dev/shm/clone-on-demand.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

qemu-img create -q -f qcow2 "$work/base.qcow2" 1G
qemu-io -f qcow2 -c 'write -P 0x5a 0 1M' "$work/base.qcow2" > /dev/null
mkdir "$work/clones" "$work/anchor"
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$cowbd" -i 127.0.0.1 -p "$port" --clone-from="$work/base.qcow2" \
    --clone-dir="$work/clones" 2> "$work/log" &
pid=$!
for i in $(seq 1000); do
    /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" \
        2>/dev/null && break
    sleep 0.01
done

/usr/bin/python3 - "$port" "$N" "$ANCHOR_N" "$work" <<'EOF2'
import os, socket, statistics, subprocess, sys, time
import nbd

port, n, anchor_n, work = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
base = work + "/base.qcow2"
want = b"\x5a" * 4096


def read_first(name, port, retry=False):
    """Connects to name, reads 4 KiB at 0; retries while refused."""
    while True:
        h = nbd.NBD()
        h.set_export_name(name)
        try:
            h.connect_tcp("127.0.0.1", str(port))
            break
        except nbd.Error:
            if not retry:
                raise
            time.sleep(0.001)
    assert h.pread(4096, 0) == want
    h.shutdown()


def cowbd_once(i):
    t0 = time.perf_counter()
    read_first("bench-%d" % i, port)
    return time.perf_counter() - t0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def anchor_once(i):
    ov = "%s/anchor/a%d.qcow2" % (work, i)
    p = free_port()
    t0 = time.perf_counter()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base,
                    "-F", "qcow2", ov], check=True)
    q = subprocess.Popen(["qemu-nbd", "-f", "qcow2", "-b", "127.0.0.1",
                          "-p", str(p), ov])
    try:
        read_first("", p, retry=True)
        t = time.perf_counter() - t0
    finally:
        q.terminate()
        q.wait()
    os.unlink(ov)
    return t


def report(what, ts):
    ts = sorted(ts)
    p = lambda q: ts[min(len(ts) - 1, int(q * len(ts)))] * 1000
    print("%-34s n=%-5d p50 %8.2f ms  p99 %8.2f ms  mean %8.2f ms  max %8.2f ms"
          % (what, len(ts), p(0.50), p(0.99), statistics.mean(ts) * 1000,
             ts[-1] * 1000))
    return p(0.99)


c = [cowbd_once(i) for i in range(n)]
a = [anchor_once(i) for i in range(anchor_n)]
print("connect with a new name -> first 4 KiB read, base 1 GiB qcow2, tmpfs")
pc = report("cowbd --clone-from (on demand)", c)
pa = report("qemu-img create + qemu-nbd + connect", a)
print("p99 ratio cowbd / anchor: %.3f" % (pc / pa))
EOF2
echo "overlays made by cowbd: $(ls "$work/clones" | wc -l)"
