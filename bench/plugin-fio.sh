#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Random 4K I/O at iodepth 32 (fio --ioengine=nbd) against three servers
# of the same data, in one run, reported as medians and ratios:
#
#   plugin   nbdkit with nbdkit-cowbd-plugin.so serving a QED overlay
#   file     nbdkit's file plugin serving a raw copy of the same data
#   qemu     qemu-nbd serving the same QED overlay
#
# Workloads:
#   read-alloc   random reads of clusters allocated in the overlay
#   read-back    random reads that fall through to the backing file
#   write-alloc  random writes, each into a cluster not yet allocated (a
#                fresh overlay each run; one write per 64K cluster, all
#                clusters of the data set once, replayed from an iolog)
#   write-over   random writes into allocated clusters
#
# Goals (issue 3): write-alloc >= 1.5x qemu-nbd; read-alloc >= 0.9x
# nbdkit's file plugin.
#
# Images live on /dev/shm: this VM drops cold page cache within seconds,
# so images on the disk would measure the disk (DESIGN.md).  Runs are
# interleaved (run 1 of every server, then run 2...) so that drift in the
# machine hits all servers alike.  Not part of make check.
#
# Usage: bench/plugin-fio.sh [PLUGIN.so]
#   PLUGIN.so defaults to $COWBD_PLUGIN, else build/plugins/cowbd/.libs/.
#   RUNS (3), RUNTIME (seconds per job, 10), SIZE (the data set, 1G),
#   WORKLOADS (a subset, space-separated) and WORKDIR (where the images
#   go, /dev/shm; a directory on the disk to see the filesystem's cost)
#   can be set in the environment.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
plugin=${1:-${COWBD_PLUGIN:-$top/build/plugins/cowbd/.libs/nbdkit-cowbd-plugin.so}}
runs=${RUNS:-3}
runtime=${RUNTIME:-10}
size=${SIZE:-1G}

for t in fio nbdkit qemu-nbd qemu-img qemu-io python3; do
    command -v "$t" > /dev/null || { echo "$0: needs $t" >&2; exit 1; }
done
[ -f "$plugin" ] || { echo "$0: no plugin at $plugin" >&2; exit 1; }
plugin=$(realpath "$plugin")
fio --enghelp=nbd > /dev/null 2>&1 ||
    { echo "$0: this fio has no nbd engine" >&2; exit 1; }

work=$(mktemp -d "${WORKDIR:-/dev/shm}/cowbd-bench.XXXXXX")
server_pid=
cleanup ()
{
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$work"

# ---- the images ----------------------------------------------------------

echo "# preparing $size of data in $work"
qemu-img create -q -f raw base.raw "$size"
# Random data in the backing file, so that copy on write copies something.
python3 - base.raw <<'PY'
import os, sys
size = os.path.getsize(sys.argv[1])
chunk = os.urandom(1 << 20)
with open(sys.argv[1], "r+b") as f:
    for off in range(0, size, 1 << 20):
        f.write(chunk[off % 4096:] + chunk[:off % 4096])
PY
# full.qed: every cluster allocated in the overlay (for read-alloc and
# write-over); full.raw: the same data, raw (for nbdkit's file plugin).
qemu-img create -q -f qed -b base.raw -F raw full.qed
qemu-io -f qed -c "write -P 0x5a 0 $size" full.qed > /dev/null
qemu-img convert -O raw full.qed full.raw
cp base.raw back.raw              # what read-back reads, raw

# alloc.iolog: one 4K write into each 64K cluster, clusters in random
# order, replayed by fio at full speed: every write allocates a cluster
# (and copies the other 60K from the backing file).  fio's own random
# offsets cannot do this: with blockalign=64k it drops its random map and
# repeats clusters.
python3 - "$(stat -c %s base.raw)" > alloc.iolog <<'PY'
import random, sys
r = random.Random(1)
clusters = list(range(int(sys.argv[1]) // 65536))
r.shuffle(clusters)
print("fio version 2 iolog\njob.0.0 add\njob.0.0 open")
for c in clusters:
    print("job.0.0 write %d 4096" % (c * 65536 + r.randrange(16) * 4096))
print("job.0.0 close")
PY

fresh_overlay ()
{
    rm -f "$1"
    qemu-img create -q -f qed -b base.raw -F raw "$1"
}

# ---- the servers ----------------------------------------------------------

wait_socket ()
{
    local i
    for (( i=0; i<100; i++ )); do [ -S "$1" ] && return 0; sleep 0.05; done
    echo "$0: server socket $1 never appeared" >&2
    tail -5 "$work/server.log" >&2
    exit 1
}

# start SERVER IMAGE: serves IMAGE (raw for file, QED otherwise).
start ()
{
    rm -f sock
    case "$1" in
        plugin) nbdkit -f -U "$work/sock" "$plugin" "$work/$2" & ;;
        file)   nbdkit -f -U "$work/sock" file "$work/$2" & ;;
        qemu)   qemu-nbd -t -f qed -k "$work/sock" --cache=writeback \
                    --aio=threads "$work/$2" & ;;
    esac 2>> "$work/server.log"
    server_pid=$!
    wait_socket "$work/sock"
}

# nbdkit 1.32.5 sometimes aborts (connections.c: raw_send_socket:
# Assertion `sock >= 0') when fio ends an iolog replay with requests in
# flight, with its own file plugin too; the IOPS fio measured stand.
stop ()
{
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

# fio_iops RW EXTRA-ARGS...: IOPS of one fio job against the server.
fio_iops ()
{
    local rw=$1; shift
    fio --name=job --ioengine=nbd --uri="nbd+unix:///?socket=$work/sock" \
        --rw="$rw" --bs=4k --iodepth=32 --numjobs=1 --size="$size" \
        --output-format=json "$@" > fio.json
    # fio's nbd engine says "connected" on stdout before the JSON.
    python3 -c 'import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]
print("%.0f" % (j["read"]["iops"] + j["write"]["iops"]))' fio.json
}

# image SERVER WORKLOAD: the image a server serves for a workload.
image ()
{
    case "$1:$2" in
        file:read-back) echo back.raw ;;
        file:*)         echo full.raw ;;
        *:read-back|*:write-alloc) echo fresh.qed ;;
        *)              echo full.qed ;;
    esac
}

# run_one SERVER WORKLOAD: prints the IOPS.
run_one ()
{
    local server=$1 workload=$2 img
    img=$(image "$server" "$workload")
    if [ "$img" = fresh.qed ]; then fresh_overlay fresh.qed; fi
    if [ "$server" = file ] && [ "$workload" = write-alloc ]; then
        cp full.raw alloc.raw; img=alloc.raw
    fi
    start "$server" "$img"
    case "$workload" in
        read-alloc|read-back)
            fio_iops randread --time_based --runtime="$runtime" ;;
        write-over)
            fio_iops randwrite --time_based --runtime="$runtime" ;;
        write-alloc)
            fio_iops write --read_iolog="$work/alloc.iolog" --runtime="$runtime" \
                --replay_no_stall=1 ;;
    esac
    stop
}

# ---- the runs ----------------------------------------------------------------

servers=(plugin file qemu)
read -r -a workloads <<< "${WORKLOADS:-read-alloc read-back write-alloc write-over}"
declare -A results

echo "# fio $(fio --version), nbdkit $(nbdkit --version | head -1 | cut -d' ' -f2)," \
     "$(qemu-nbd --version | head -1), $(nproc) CPUs"
for (( r=1; r<=runs; r++ )); do
    for w in "${workloads[@]}"; do
        for s in "${servers[@]}"; do
            iops=$(run_one "$s" "$w")
            results[$s:$w]+="$iops "
            printf '# run %d %-11s %-6s %8s IOPS\n' "$r" "$w" "$s" "$iops"
        done
    done
done

median ()
{
    printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# ratios "A1 A2..." "B1 B2...": the per-run ratios A/B.
ratios ()
{
    paste -d' ' <(printf '%s\n' $1) <(printf '%s\n' $2) |
        awk '{ printf "%.2f ", ($2 > 0 ? $1 / $2 : 0) }'
}

# The medians of the IOPS, and the median of the per-run ratios (the
# servers of one run met the same machine state; runs vary a lot here).
echo
printf '%-11s %9s %9s %9s %12s %12s\n' workload plugin file qemu-nbd \
    plugin/file plugin/qemu
for w in "${workloads[@]}"; do
    p=${results[plugin:$w]} f=${results[file:$w]} q=${results[qemu:$w]}
    printf '%-11s %9s %9s %9s %12s %12s\n' "$w" "$(median "$p")" \
        "$(median "$f")" "$(median "$q")" \
        "$(median "$(ratios "$p" "$f")")" "$(median "$(ratios "$p" "$q")")"
done
echo "(medians of $runs interleaved runs: IOPS, and per-run ratios; 4K random,"
echo " iodepth 32, one connection, ${runtime}s per job, images in ${WORKDIR:-/dev/shm})"
