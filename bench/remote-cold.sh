#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# remote-cold.sh [--builddir DIR]: one clone of a remote base, read cold
# (issue 13).
#
# The remote (remote-lib.sh: its own network namespace, a 2 ms round
# trip) serves a SIZE_MIB raw base full of data with nbdkit's file plugin
# and stats filter.  The local host has one qcow2 overlay with backing
# nbd://ADDR:PORT/golden (made by qemu-img), read once from start to end
# by fio --ioengine=nbd, sequential 1 MiB reads, QD in flight.  Three
# setups, interleaved, REPEATS times:
#   cowbd-cache  cowbd --base-cache, the cache empty at start
#   cowbd        cowbd without a base cache
#   qemu-nbd     the anchor: qemu-nbd on the same overlay
#   direct       for reference, no overlay and no local server: nbdcopy
#                (libnbd) straight from the remote to null:, one
#                connection, QD requests of 1 MiB (what the link gives
#                one client; the cpu column is 0)
# Prints for each run the throughput, the bytes and read requests the
# remote served (requests per MiB read: where the round trips go), and
# the server's CPU time and the load average; then medians and ratios to qemu-nbd (goal >= 2).
#
# Knobs (environment): SIZE_MIB (512), QD (1), REPEATS (3).
# Needs root.  Not a test: nothing is asserted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
builddir=$here/../build
if [ "${1:-}" = --builddir ]; then builddir=$(cd "$2" && pwd); shift 2; fi
SIZE_MIB=${SIZE_MIB:-512}
QD=${QD:-1}
REPEATS=${REPEATS:-3}
cowbd=$builddir/server/cowbd
[ "$(id -u)" = 0 ] || { echo "$0: needs root (ip netns)" >&2; exit 1; }

# shellcheck source=remote-lib.sh
. "$here/remote-lib.sh"
work=$(mktemp -d /dev/shm/remote-cold.XXXXXX)
spid=
trap '[ -n "$spid" ] && kill "$spid" 2> /dev/null; rl_cleanup;
      rm -rf "$work"' EXIT
trap 'exit 1' INT TERM

start_cowbd_cache ()
{
    rm -rf "$work/cache"
    mkdir "$work/cache"
    $RL_IN_LOCAL "$cowbd" -U "$work/s" --base-cache="$work/cache" \
        "$work/c.qcow2" 2>> "$work/server.log" &
    spid=$!
}

start_cowbd ()
{
    $RL_IN_LOCAL "$cowbd" -U "$work/s" "$work/c.qcow2" 2>> "$work/server.log" &
    spid=$!
}

start_qemu_nbd ()
{
    $RL_IN_LOCAL qemu-nbd -t -f qcow2 -k "$work/s" "$work/c.qcow2" \
        2>> "$work/server.log" &
    spid=$!
}

# direct: sets $bw, nbdcopy's throughput straight from the remote.
direct ()
{
    local t0 t1
    t0=$(date +%s.%N)
    rl_local nbdcopy --connections=1 --requests="$QD" \
        --request-size=1048576 "$(rl_uri)" null:
    t1=$(date +%s.%N)
    bw=$(echo "$SIZE_MIB / ($t1 - $t0)" | bc -l)
}

# run SETUP: one measurement; sets $line to "SETUP MIB_S BYTES READS
# SERVER_CPU_S LOAD".
run ()
{
    local bw remote cpu
    rm -f "$work/c.qcow2" "$work/s"
    qemu-img create -q -f qcow2 -u -b "$(rl_uri)" -F raw "$work/c.qcow2" \
        "${SIZE_MIB}M"
    rl_remote_start "$work/golden.raw" "$work/stats" > /dev/null
    if [ "$1" = direct ]; then
        direct
        rl_remote_stop
        line="$1 $bw $RL_RESULT 0 $(rl_load)"
        return
    fi
    start_"${1//-/_}"
    rl_wait_sock "$work/s"
    fio --name=cold --ioengine=nbd --uri="nbd+unix:///?socket=$work/s" \
        --rw=read --bs=1M --iodepth="$QD" --size="${SIZE_MIB}M" \
        --output-format=json --output="$work/fio.json" > /dev/null
    bw=$(jq '.jobs[0].read.bw_bytes / 1048576' "$work/fio.json")
    cpu=$(rl_cpu "$spid")
    kill "$spid"
    wait "$spid" || true
    spid=
    rl_remote_stop
    remote=$RL_RESULT
    line="$1 $bw $remote $cpu $(rl_load)"
}

rl_setup
head -c "${SIZE_MIB}M" /dev/urandom > "$work/golden.raw"
echo "remote-cold: one clone, $SIZE_MIB MiB read in 1 MiB sequential" \
     "reads at QD $QD, $REPEATS repeats; $(nproc) cores"
echo "delay: $RL_DELAY"
printf '%-12s %3s %8s %10s %8s %9s %7s  %s\n' setup rep MiB/s remote_MiB \
    reads reads/MiB cpu_s "load (1 5 15 min)"
: > "$work/results"
for rep in $(seq "$REPEATS"); do
    for setup in cowbd-cache cowbd qemu-nbd direct; do
        run "$setup"
        read -r s bw bytes ops cpu l1 l5 l15 <<< "$line"
        echo "$s $bw $bytes $ops" >> "$work/results"
        printf '%-12s %3d %8.1f %10.1f %8d %9.2f %7.2f  %s %s %s\n' "$s" \
            "$rep" "$bw" "$(echo "$bytes / 1048576" | bc -l)" "$ops" \
            "$(echo "$ops / $SIZE_MIB" | bc -l)" "$cpu" "$l1" "$l5" "$l15"
    done
done

med () { rl_median $(awk -v s="$1" '$1 == s {print $2}' "$work/results"); }
q=$(med qemu-nbd)
for s in cowbd-cache cowbd qemu-nbd direct; do
    m=$(med "$s")
    printf 'median %-12s %8.1f MiB/s  %.2fx qemu-nbd\n' "$s" "$m" \
        "$(echo "$m / $q" | bc -l)"
done
echo "goal: cowbd-cache >= 2x qemu-nbd; load now $(rl_load)"
