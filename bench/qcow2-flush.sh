#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Allocating and flush-heavy writes into a fresh qcow2 overlay: cowbd
# against qemu-nbd --cache=writeback, both serving the same kind of image
# (qemu-img create -f qcow2 -o lazy_refcounts=on over a raw golden image),
# through fio's nbd engine.  Not part of make check.
#
#   bench/qcow2-flush.sh [COWBD] [DIR...]
#
# COWBD: the server binary (default: server/cowbd of the build in the
# current directory, else cowbd on PATH).  DIR: where the images go, each
# in turn (default: /dev/shm, then /var/tmp, i.e. tmpfs for CPU and
# protocol cost and the disk for real fdatasync cost).  RUNS (default 3)
# interleaved runs of RUNTIME (default 5) seconds each.  SIZE (default
# 8G) is the overlay's size; the golden image holds data in its first
# DATA (default 1G), so some writes copy on write from it and most
# allocate over its sparse rest.
#
# COWBD_ARGS (default empty) adds options to cowbd, e.g. COWBD_ARGS='-t 2'.
#
# Workloads:
#   alloc-fsync64   random 4 KiB writes, iodepth 32, a flush every 64
#   write-flush     random 4 KiB writes each followed by a flush, iodepth 1
# Prints each server's median IOPS and cowbd's ratio to qemu-nbd, and
# the median CPU time each server spent per write (user + system, all
# threads, from /proc): on a shared machine the IOPS swing with the
# neighbours' load, the CPU per write much less.
set -euo pipefail

COWBD=${1:-}
shift || true
DIRS=${*:-/dev/shm /var/tmp}
RUNS=${RUNS:-3}
RUNTIME=${RUNTIME:-5}
SIZE=${SIZE:-8G}
DATA=${DATA:-1G}
if [ -z "$COWBD" ]; then
    if [ -x server/cowbd ]; then COWBD=$PWD/server/cowbd
    else COWBD=$(command -v cowbd); fi
fi
for tool in fio qemu-img qemu-nbd jq; do
    command -v $tool >/dev/null || { echo "$0: needs $tool" >&2; exit 1; }
done

work=
server_pid=
cleanup () {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    [ -z "$work" ] || rm -rf "$work"
}
trap cleanup EXIT

start () {
    local server=$1 image=$2 sock=$work/sock i
    rm -f "$sock"
    case $server in
        cowbd) "$COWBD" ${COWBD_ARGS:-} -U "$sock" "$image" & ;;
        qemu-nbd) qemu-nbd -t -k "$sock" -f qcow2 --cache=writeback \
                      "$image" & ;;
    esac
    server_pid=$!
    for (( i = 0; i < 100; i++ )); do [ -S "$sock" ] && return; sleep 0.1; done
    echo "$server did not start" >&2
    exit 1
}

# CPU seconds the server used so far (utime + stime, all threads).
server_cpu () {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' \
        "/proc/$server_pid/stat"
}

stop () {
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

fio_args () {
    case $1 in
        alloc-fsync64) echo "--rw=randwrite --bs=4k --iodepth=32 --fsync=64" ;;
        write-flush) echo "--rw=randwrite --bs=4k --iodepth=1 --fsync=1" ;;
    esac
}

# One fio run on a fresh overlay; prints write IOPS.
run_fio () {
    local workload=$1
    fio --name="$workload" --ioengine=nbd \
        --uri="nbd+unix:///?socket=$work/sock" $(fio_args "$workload") \
        --size="$SIZE" --runtime="$RUNTIME" --time_based \
        --randrepeat=0 --output-format=json | sed -n '/^{/,$p' |
        jq '.jobs[0].write.iops'
}

median () { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

bench_dir () {
    local dir=$1 run workload server iops cpu
    local -A results cpus
    work=$(mktemp -d "$dir/cowbd-qcow2-bench.XXXXXX")
    echo "preparing images in $work" >&2
    qemu-img create -q -f raw "$work/base.raw" "$SIZE"
    fio --name=fill --filename="$work/base.raw" --rw=write --bs=1M \
        --ioengine=psync --size="$DATA" --buffer_pattern=0xa5a5a5a5 \
        --output=/dev/null
    for (( run = 1; run <= RUNS; run++ )); do
        for workload in alloc-fsync64 write-flush; do
            for server in cowbd qemu-nbd; do
                rm -f "$work/ov.qcow2"
                qemu-img create -q -f qcow2 -o lazy_refcounts=on \
                    -b base.raw -F raw "$work/ov.qcow2"
                start $server "$work/ov.qcow2"
                iops=$(run_fio $workload)
                cpu=$(server_cpu)
                stop
                qemu-img check -q "$work/ov.qcow2" ||
                    echo "warning: $server left $work/ov.qcow2 unclean" >&2
                results[$workload,$server]+="$iops "
                cpus[$workload,$server]+="$(awk -v c=$cpu -v i=$iops \
                    -v t=$RUNTIME 'BEGIN { print c * 1e6 / (i * t) }') "
                echo "run $run $workload $server: $iops IOPS," \
                     "$cpu s CPU" >&2
            done
        done
    done
    printf '%-15s %10s %10s %7s | %11s %11s %7s   (%s)\n' workload \
        cowbd qemu-nbd ratio 'cowbd us/w' 'qemu us/w' ratio "$dir"
    for workload in alloc-fsync64 write-flush; do
        local c q cc qc
        c=$(echo ${results[$workload,cowbd]} | tr ' ' '\n' | median)
        q=$(echo ${results[$workload,qemu-nbd]} | tr ' ' '\n' | median)
        cc=$(echo ${cpus[$workload,cowbd]} | tr ' ' '\n' | median)
        qc=$(echo ${cpus[$workload,qemu-nbd]} | tr ' ' '\n' | median)
        awk -v w=$workload -v c=$c -v q=$q -v cc=$cc -v qc=$qc 'BEGIN {
            printf "%-15s %10.0f %10.0f %6.2fx | %11.1f %11.1f %6.2fx\n",
                   w, c, q, c / q, cc, qc, qc / cc }'
    done
    rm -rf "$work"
    work=
}

for dir in $DIRS; do
    bench_dir "$dir"
done
echo "(write IOPS and server CPU microseconds per write, median of $RUNS" \
     "interleaved runs of ${RUNTIME}s; $SIZE overlays over $DATA of data;" \
     "lazy refcounts in both; ratio > 1: cowbd better)"
