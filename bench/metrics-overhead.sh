#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# What --metrics costs: W1 (1 MiB sequential reads, iodepth 8) and W3
# (4 KiB random overwrites, iodepth 32) through fio's nbd engine against
# an older cowbd, this cowbd without --metrics, and this cowbd with
# --metrics scraped every second, interleaved in one run; then the time
# and size of one scrape of 10,000 exports.  Not part of make check.
#
#   bench/metrics-overhead.sh OLD_COWBD NEW_COWBD [DIR]
#
# DIR (default /dev/shm): where images go.  RUNS (default 5) interleaved
# runs of RUNTIME (default 5) seconds; SIZE (default 1G).
set -euo pipefail

OLD=$1 NEW=$2 DIR=${3:-/dev/shm}
RUNS=${RUNS:-5} RUNTIME=${RUNTIME:-5} SIZE=${SIZE:-1G}
IMG=$(dirname "$NEW")/../tools/cowbd-img
work=$(mktemp -d "$DIR/cowbd-metrics.XXXXXX")
server_pid= scraper_pid=
cleanup () {
    [ -n "$scraper_pid" ] && kill "$scraper_pid" 2>/dev/null
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
sock=$work/sock

echo "preparing $SIZE images in $work" >&2
qemu-img create -q -f raw "$work/base.raw" "$SIZE"
fio --name=fill --filename="$work/base.raw" --rw=write --bs=1M \
    --ioengine=psync --size="$SIZE" --buffer_pattern=0xa5a5a5a5 \
    --output=/dev/null
qemu-img create -q -f qed -b base.raw -F raw "$work/full.qed"
qemu-io -f qed -c "write -P 0x5a 0 $SIZE" "$work/full.qed" >/dev/null

start () {                      # BINARY ARGS...
    local i
    rm -f "$sock"
    "$@" -U "$sock" -f qed "$work/full.qed" 2>"$work/server.log" &
    server_pid=$!
    for (( i=0; i<100; i++ )); do [ -S "$sock" ] && break; sleep 0.1; done
}
stop () {
    [ -n "$scraper_pid" ] && kill "$scraper_pid" && wait "$scraper_pid" 2>/dev/null || true
    scraper_pid=
    kill "$server_pid"; wait "$server_pid" || true
    server_pid=
}
scrape_every_second () {        # URL
    while sleep 1; do curl -s -o /dev/null "$1" || true; done &
    scraper_pid=$!
}
fio_run () {                    # RW BS IODEPTH -> MiB/s
    fio --name=w --ioengine=nbd --uri="nbd+unix:///?socket=$sock" \
        --rw="$1" --bs="$2" --iodepth="$3" --size="$SIZE" \
        --time_based --runtime="$RUNTIME" --output-format=json | sed -n '/^{/,$p' |
        jq '.jobs[0].read.bw_bytes + .jobs[0].write.bw_bytes | . / 1048576'
}

declare -A res
for (( r=1; r<=RUNS; r++ )); do
    for v in old new metrics; do
        case $v in
            old) start "$OLD" ;;
            new) start "$NEW" ;;
            metrics)
                start "$NEW" -v --metrics=127.0.0.1:0
                sleep 0.3
                url=$(sed -n 's|.*cowbd: metrics: ||p' "$work/server.log")
                scrape_every_second "$url" ;;
        esac
        w1=$(fio_run read 1M 8)
        w3=$(fio_run randwrite 4k 32)
        stop
        res[$v-w1]+="$w1 " res[$v-w3]+="$w3 "
        echo "run $r $v: W1 $w1 MiB/s, W3 $w3 MiB/s" >&2
    done
done

median () { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for w in w1 w3; do
    o=$(echo ${res[old-$w]} | median) n=$(echo ${res[new-$w]} | median)
    m=$(echo ${res[metrics-$w]} | median)
    printf '%s median MiB/s: old %s, new %s, new+metrics %s; new/old %.3f, metrics/old %.3f, metrics/new %.3f\n' \
        "${w^^}" "$o" "$n" "$m" "$(echo "$n / $o" | bc -l)" \
        "$(echo "$m / $o" | bc -l)" "$(echo "$m / $n" | bc -l)"
done

# One scrape of 10,000 exports (sparse raw files).
mkdir "$work/many"
args=()
for (( i=0; i<10000; i++ )); do
    truncate -s 1M "$work/many/clone-$i.raw"
    args+=("clone-$i=$work/many/clone-$i.raw")
done
ulimit -n 20000
rm -f "$sock"
"$NEW" -v -f raw --metrics=127.0.0.1:0 -U "$sock" "${args[@]}" 2>"$work/server.log" &
server_pid=$!
for (( i=0; i<600; i++ )); do grep -q 'cowbd: metrics: ' "$work/server.log" && break; sleep 0.1; done
url=$(sed -n 's|.*cowbd: metrics: ||p' "$work/server.log")
for i in 1 2 3 4 5; do
    curl -s -o "$work/scrape" -w '%{time_total}\n' "$url"
done | sort -g | awk '{a[NR]=$1} END {printf "10000 exports: scrape median %.1f ms, ", a[3]*1000}'
echo "$(stat -c %s "$work/scrape") bytes"
stop
