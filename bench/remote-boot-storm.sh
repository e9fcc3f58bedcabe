#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# remote-boot-storm.sh [--builddir DIR]: CLONES clones of one remote
# golden image boot at once on one host (issue 13).
#
# The remote (remote-lib.sh: its own network namespace, a 2 ms round
# trip) serves a BASE_MIB raw base holding DATA_MIB of data with nbdkit's
# file plugin and stats filter.  The local host has CLONES qcow2
# overlays with backing nbd://ADDR:PORT/golden (made by qemu-img), each
# read at once by boot-reader.py (sequential 64 KiB reads of all the data
# with random 4 KiB ones).  Two setups, interleaved, REPEATS times:
#   cowbd     one cowbd serving the CLONES exports, --base-cache (cold)
#   qemu-nbd  the anchor: one qemu-nbd per clone, same backing
# Prints for each run the wall time until every reader has finished, the
# bytes and read requests the remote served, the local servers' CPU time
# and the load average; then
# the medians and the ratios against the goals (remote bytes <= 1.1x the
# data, wall time <= 0.25x the anchor's).
#
# Knobs (environment): CLONES (50), DATA_MIB (256), BASE_MIB (1024),
# REPEATS (3).  A quick run: CLONES=8 DATA_MIB=64 BASE_MIB=256 REPEATS=1.
# Needs root.  Not a test: nothing is asserted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
builddir=$here/../build
if [ "${1:-}" = --builddir ]; then builddir=$(cd "$2" && pwd); shift 2; fi
CLONES=${CLONES:-50}
DATA_MIB=${DATA_MIB:-256}
BASE_MIB=${BASE_MIB:-1024}
REPEATS=${REPEATS:-3}
cowbd=$builddir/server/cowbd
py=/usr/bin/python3
[ "$(id -u)" = 0 ] || { echo "$0: needs root (ip netns)" >&2; exit 1; }
[ $((DATA_MIB % 4)) = 0 ] && [ "$DATA_MIB" -le "$BASE_MIB" ] ||
    { echo "$0: DATA_MIB must be a multiple of 4, <= BASE_MIB" >&2; exit 1; }

# shellcheck source=remote-lib.sh
. "$here/remote-lib.sh"
work=$(mktemp -d /dev/shm/remote-boot-storm.XXXXXX)
spids=()
stop_servers ()
{
    local p
    for p in "${spids[@]}"; do kill "$p" 2> /dev/null || true; done
    for p in "${spids[@]}"; do wait "$p" 2> /dev/null || true; done
    spids=()
}
trap 'stop_servers; rl_cleanup; rm -rf "$work"' EXIT
trap 'exit 1' INT TERM

# The golden image: DATA_MIB / 4 extents of 4 MiB of random bytes spread
# evenly (where boot-reader.py expects them), holes between.
make_golden ()
{
    local n=$((DATA_MIB / 4)) i
    truncate -s "${BASE_MIB}M" "$work/golden.raw"
    for i in $(seq 0 $((n - 1))); do
        head -c 4M /dev/urandom |
            dd of="$work/golden.raw" bs=1M seek=$((i * BASE_MIB / n)) \
               conv=notrunc status=none
    done
}

make_clones ()
{
    local i
    rm -f "$work"/c*.qcow2
    for i in $(seq "$CLONES"); do
        qemu-img create -q -f qcow2 -u -b "$(rl_uri)" -F raw \
            "$work/c$i.qcow2" "${BASE_MIB}M"
    done
}

# boot URI-PATTERN: every reader at once (%d in the pattern: clone
# number); prints the wall time from the go (all connected) to the end
# of the last reader.
boot ()
{
    local i t0 rpids=() bad=0
    rm -rf "$work/sync"
    mkdir "$work/sync"
    mkfifo "$work/sync/go"
    for i in $(seq "$CLONES"); do
        # shellcheck disable=SC2059
        $py "$here/boot-reader.py" "$(printf "$1" "$i")" "$BASE_MIB" \
            "$DATA_MIB" "$i" "$work/sync/go" > "$work/sync/r$i.out" &
        rpids+=($!)
    done
    for i in $(seq "$CLONES"); do
        rl_wait_file "$work/sync/go.$i.ready"
    done
    t0=$(date +%s.%N)
    : > "$work/sync/go"
    for i in "${rpids[@]}"; do wait "$i" || bad=$((bad + 1)); done
    [ "$bad" = 0 ] || { echo "$bad readers failed" >&2; return 1; }
    sort -g "$work"/sync/r*.out | tail -1 | awk -v t="$t0" '{ print $1 - t }'
}

# The CPU seconds the local servers have used, summed.
server_cpu ()
{
    local p
    for p in "${spids[@]}"; do rl_cpu "$p"; done | awk '{ s += $1 }
        END { printf "%.2f\n", s }'
}

start_cowbd ()
{
    local args=() i
    rm -rf "$work/cache" "$work/cowbd.sock"
    mkdir "$work/cache"
    for i in $(seq "$CLONES"); do args+=("c$i=$work/c$i.qcow2"); done
    $RL_IN_LOCAL "$cowbd" -U "$work/cowbd.sock" --base-cache="$work/cache" \
        "${args[@]}" 2> "$work/cowbd.log" &
    spids+=($!)
    rl_wait_sock "$work/cowbd.sock"
    pattern="nbd+unix:///c%d?socket=$work/cowbd.sock"
}

start_qemu_nbd ()
{
    local i socks=()
    for i in $(seq "$CLONES"); do
        rm -f "$work/q$i.sock"
        $RL_IN_LOCAL qemu-nbd -t -f qcow2 -k "$work/q$i.sock" "$work/c$i.qcow2" \
            2>> "$work/qemu-nbd.log" &
        spids+=($!)
        socks+=("$work/q$i.sock")
    done
    rl_wait_sock "${socks[@]}"
    pattern="nbd+unix:///?socket=$work/q%d.sock"
}

# run SETUP: one measurement; sets $line to "SETUP WALL_S BYTES READS
# SERVER_CPU_S LOAD" (not in a subshell: the servers' PIDs stay known to the trap).
run ()
{
    local pattern wall remote cpu
    make_clones
    rl_remote_start "$work/golden.raw" "$work/stats" > /dev/null
    start_"${1//-/_}"
    wall=$(boot "$pattern")
    cpu=$(server_cpu)
    stop_servers
    rl_remote_stop
    remote=$RL_RESULT
    line="$1 $wall $remote $cpu $(rl_load)"
}

rl_setup
make_golden
echo "remote-boot-storm: $CLONES clones, $DATA_MIB MiB of data in a" \
     "$BASE_MIB MiB base, $REPEATS repeats; $(nproc) cores"
echo "delay: $RL_DELAY"
printf '%-9s %3s %8s %10s %8s %7s  %s\n' setup rep wall_s remote_MiB \
    reads cpu_s "load (1 5 15 min)"
: > "$work/results"
for rep in $(seq "$REPEATS"); do
    for setup in cowbd qemu-nbd; do
        run "$setup"
        read -r s wall bytes ops cpu l1 l5 l15 <<< "$line"
        echo "$s $wall $bytes $ops" >> "$work/results"
        printf '%-9s %3d %8.2f %10.1f %8d %7.2f  %s %s %s\n' "$s" "$rep" \
            "$wall" "$(echo "$bytes / 1048576" | bc -l)" "$ops" "$cpu" \
            "$l1" "$l5" "$l15"
    done
done

med () { rl_median $(awk -v s="$1" -v f="$2" '$1 == s {print $f}' \
                        "$work/results"); }
cw=$(med cowbd 2); qw=$(med qemu-nbd 2)
cb=$(med cowbd 3); qb=$(med qemu-nbd 3)
data=$((DATA_MIB * 1048576))
printf 'medians: cowbd %.2f s, qemu-nbd %.2f s; ' "$cw" "$qw"
echo \
     "remote MiB: cowbd $(echo "$cb / 1048576" | bc), qemu-nbd" \
     "$(echo "$qb / 1048576" | bc)"
printf 'cowbd remote bytes / data: %.3f (goal <= 1.1); qemu-nbd: %.2f\n' \
    "$(echo "$cb / $data" | bc -l)" "$(echo "$qb / $data" | bc -l)"
printf 'cowbd wall / qemu-nbd wall: %.3f (goal <= 0.25); load now %s\n' \
    "$(echo "$cw / $qw" | bc -l)" "$(rl_load)"
