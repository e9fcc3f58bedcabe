#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cowbd against qemu-nbd (same QED overlay) and nbdkit's file plugin (a
# raw copy of the same data), through fio's nbd engine.  Not part of
# make check.
#
#   bench/server-fio.sh [COWBD] [DIR]
#
# COWBD: the server binary (default: server/cowbd of the build in the
# current directory, else cowbd on PATH).  DIR: where the images go
# (default /dev/shm: this VM drops cold page cache within seconds, so a
# benchmark on the disk measures the disk).  RUNS (default 3) interleaved
# runs of RUNTIME (default 5) seconds each; SIZE (default 1G) images.
#
# Workloads:
#   seqread     1 MiB sequential reads, iodepth 8, allocated data
#   randread    4 KiB random reads, iodepth 32, allocated data
#   randwrite-alloc  4 KiB random writes, iodepth 32, fresh overlay
#   randwrite-over   4 KiB random writes, iodepth 32, preconditioned
#   write-flush      4 KiB random writes each followed by a flush, iodepth 1
# Prints the median of each server and cowbd's ratio to the others.
set -euo pipefail

COWBD=${1:-}
DIR=${2:-/dev/shm}
RUNS=${RUNS:-3}
RUNTIME=${RUNTIME:-5}
SIZE=${SIZE:-1G}
if [ -z "$COWBD" ]; then
    if [ -x server/cowbd ]; then COWBD=$PWD/server/cowbd
    else COWBD=$(command -v cowbd); fi
fi
for tool in fio qemu-img qemu-nbd nbdkit jq; do
    command -v $tool >/dev/null || { echo "$0: needs $tool" >&2; exit 1; }
done

work=$(mktemp -d "$DIR/cowbd-bench.XXXXXX")
server_pid=
cleanup () {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
sock=$work/sock

# The golden image: every byte data, so reads never meet a hole.
echo "preparing $SIZE images in $work" >&2
qemu-img create -q -f raw "$work/base.raw" "$SIZE"
fio --name=fill --filename="$work/base.raw" --rw=write --bs=1M \
    --ioengine=psync --size="$SIZE" --buffer_pattern=0xa5a5a5a5 \
    --output=/dev/null
# A preconditioned overlay: every cluster allocated in the overlay.
qemu-img create -q -f qed -b base.raw -F raw "$work/full.qed"
qemu-img rebase -q -u -f qed -b base.raw -F raw "$work/full.qed"
qemu-io -f qed -c "write -P 0x5a 0 $SIZE" "$work/full.qed" >/dev/null
qemu-img convert -f qed -O raw "$work/full.qed" "$work/full.raw"

start () {
    local server=$1 image=$2
    rm -f "$sock"
    case $server in
        cowbd) "$COWBD" -U "$sock" "$image" & ;;
        qemu-nbd) qemu-nbd -t -k "$sock" -f qed "$image" & ;;
        nbdkit) nbdkit -f -U "$sock" file "$image" & ;;
    esac
    server_pid=$!
    for (( i = 0; i < 100; i++ )); do [ -S "$sock" ] && return; sleep 0.1; done
    echo "$server did not start" >&2
    exit 1
}

stop () {
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

# The image each server uses for a workload: QED overlays for cowbd and
# qemu-nbd, the equivalent raw file for nbdkit.
image_for () {
    local server=$1 workload=$2
    case $workload in
        randwrite-alloc|write-flush)
            if [ $server = nbdkit ]; then
                cp --sparse=always "$work/base.raw" "$work/run.raw"
                echo "$work/run.raw"
            else
                rm -f "$work/run.qed"
                qemu-img create -q -f qed -b base.raw -F raw "$work/run.qed"
                echo "$work/run.qed"
            fi ;;
        *)
            if [ $server = nbdkit ]; then echo "$work/full.raw"
            else echo "$work/full.qed"; fi ;;
    esac
}

fio_args () {
    case $1 in
        seqread) echo "--rw=read --bs=1M --iodepth=8" ;;
        randread) echo "--rw=randread --bs=4k --iodepth=32" ;;
        randwrite-alloc|randwrite-over)
            echo "--rw=randwrite --bs=4k --iodepth=32" ;;
        write-flush) echo "--rw=randwrite --bs=4k --iodepth=1 --fsync=1" ;;
    esac
}

# One fio run; prints IOPS (reads + writes).
run_fio () {
    local workload=$1
    fio --name="$workload" --ioengine=nbd \
        --uri="nbd+unix:///?socket=$sock" $(fio_args "$workload") \
        --size="$SIZE" --runtime="$RUNTIME" --time_based --ramp_time=1 \
        --randrepeat=0 --output-format=json | sed -n '/^{/,$p' |
        jq '.jobs[0].read.iops + .jobs[0].write.iops'
}

median () { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

workloads="seqread randread randwrite-alloc randwrite-over write-flush"
servers="cowbd qemu-nbd nbdkit"
declare -A results
for (( run = 1; run <= RUNS; run++ )); do
    for workload in $workloads; do
        for server in $servers; do
            image=$(image_for $server $workload)
            start $server "$image"
            iops=$(run_fio $workload)
            stop
            results[$workload,$server]+="$iops "
            echo "run $run $workload $server: $iops IOPS" >&2
        done
    done
done

printf '%-17s %12s %12s %12s %10s %10s\n' workload cowbd qemu-nbd nbdkit \
    vs-qemu vs-nbdkit
for workload in $workloads; do
    declare -A med
    for server in $servers; do
        med[$server]=$(echo ${results[$workload,$server]} | tr ' ' '\n' | median)
    done
    awk -v w=$workload -v c=${med[cowbd]} -v q=${med[qemu-nbd]} \
        -v n=${med[nbdkit]} 'BEGIN {
            printf "%-17s %12.0f %12.0f %12.0f %9.2fx %9.2fx\n",
                   w, c, q, n, c / q, c / n }'
done
echo "(IOPS, median of $RUNS interleaved runs of ${RUNTIME}s; $SIZE images in $DIR)"
