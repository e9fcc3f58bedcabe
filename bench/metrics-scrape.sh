#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# metrics-scrape.sh [N] [BUILDDIR...]: the cost of one GET /metrics with
# N (default 10000) exports in one cowbd (each a 64 KiB raw file on
# tmpfs), for each build directory given (default: build).  Prints, per
# build, the median wall time of a scrape by curl over 3 rounds of 7, the
# server's CPU time per scrape (utime+stime over 20 scrapes), and the
# size of the text.  Servers are interleaved round by round.  Not a
# test: nothing is asserted.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-10000}
shift || true
[ $# -gt 0 ] || set -- "$top/build"
work=$(mktemp -d /dev/shm/metrics-scrape.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
ulimit -n $((N + 1000)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"

args=()
for i in $(seq "$N"); do
    truncate -s 64K "$work/e$i.raw"
    args+=("e$i=$work/e$i.raw")
done
ports=()
builds=("$@")
for b in "${builds[@]}"; do
    port=$(/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$b/server/cowbd" -f raw -U "$work/sock-$port" --metrics="127.0.0.1:$port" \
        "${args[@]}" 2>/dev/null &
    pids+=($!)
    ports+=("$port")
    for _ in $(seq 300); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/metrics" && break
        sleep 0.2
    done
done

cpu_ticks () { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
for round in 1 2 3; do
    for k in "${!ports[@]}"; do
        port=${ports[$k]} pid=${pids[$k]}
        wall=$(for _ in 1 2 3 4 5 6 7; do
                   curl -s -o /dev/null -w '%{time_total}\n' \
                       "http://127.0.0.1:$port/metrics"
               done | sort -n | sed -n 4p)
        a=$(cpu_ticks "$pid")
        for _ in $(seq 20); do
            curl -s -o /dev/null "http://127.0.0.1:$port/metrics"
        done
        b=$(cpu_ticks "$pid")
        size=$(curl -s "http://127.0.0.1:$port/metrics" | wc -c)
        awk -v b="${builds[$k]}" -v r="$round" -v n="$N" -v w="$wall" \
            -v t="$((b - a))" -v hz="$(getconf CLK_TCK)" -v s="$size" 'BEGIN {
            printf "%s round %d: %d exports: scrape %.1f ms (median of 7), " \
                   "CPU %.1f ms, %d bytes\n", b, r, n, w * 1000,
                   t * 1000 / hz / 20, s }' 
    done
done
