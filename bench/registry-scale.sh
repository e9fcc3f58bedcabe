#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# registry-scale.sh [--builddir DIR] [N]: N (default 10000) clone exports
# of one base in one cowbd process (dir= mode, a directory of N qcow2
# overlays made with cowbd-img create -b), on tmpfs.  Prints:
#   start-up   time from exec to the listening socket
#   LIST       time of one NBD_OPT_LIST of all names (nbdsh), and of
#              nbdinfo --list (which also asks NBD_OPT_INFO of each)
#   RSS        per idle export (RSS with N exports minus RSS with 1,
#              divided by N - 1)
#   fds        per idle export (likewise)
# Not a test: nothing is asserted.
set -euo pipefail
builddir=$(cd "$(dirname "$0")/.." && pwd)/build
if [ "${1:-}" = --builddir ]; then builddir=$(cd "$2" && pwd); shift 2; fi
N=${1:-10000}
cowbd=$builddir/server/cowbd
img=$builddir/tools/cowbd-img
work=$(mktemp -d /dev/shm/registry-scale.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

"$img" create -f qcow2 "$work/base.qcow2" 1G > /dev/null
mkdir "$work/one" "$work/many"
"$img" create -f qcow2 -b "$work/base.qcow2" -F qcow2 \
    "$work/one/c1.qcow2" > /dev/null
for i in $(seq "$N"); do
    "$img" create -f qcow2 -b "$work/base.qcow2" -F qcow2 \
        "$work/many/c$i.qcow2" > /dev/null
done

now () { date +%s.%N; }

# serve DIR: starts cowbd, sets $pid and $start (the start-up time).
serve ()
{
    local t0 i
    rm -f "$work/sock"
    t0=$(now)
    "$cowbd" -U "$work/sock" --backing-dir="$work" dir="$1" > /dev/null \
        2> "$work/log" &
    pid=$!
    for i in $(seq 20000); do
        [ -S "$work/sock" ] && break
        sleep 0.001
    done
    start=$(echo "$(now) - $t0" | bc)
}

measure ()
{
    local rss fds
    rss=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status)
    fds=$(ls /proc/$pid/fd | wc -l)
    echo "$rss $fds"
}

stop () { kill "$pid"; wait "$pid" || true; pid=; }

serve "$work/one"
nbdinfo --list "nbd+unix:///?socket=$work/sock" > /dev/null
read -r rss1 fds1 < <(measure)
stop

serve "$work/many"
t0=$(now)
names=$(/usr/bin/python3 -c '
import nbd, sys
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_unix(sys.argv[1])
n = []
h.opt_list(lambda name, desc: n.append(name) or 0)
print(len(n))' "$work/sock")
list=$(echo "$(now) - $t0" | bc)
read -r rssN fdsN < <(measure)
t0=$(now)
infos=$(nbdinfo --list --json "nbd+unix:///?socket=$work/sock" |
        jq '.exports | length')
info=$(echo "$(now) - $t0" | bc)
stop

echo "exports:             $names (of $N)"
echo "start-up:            ${start} s"
echo "LIST of all names:   ${list} s (one NBD_OPT_LIST)"
echo "nbdinfo --list:      ${info} s ($infos exports, LIST + INFO of each)"
echo "RSS:                 ${rss1} KiB with 1 export, ${rssN} KiB with $N"
echo "RSS per idle export: $(( (rssN - rss1) * 1024 / (N - 1) )) bytes"
echo "fds:                 ${fds1} with 1 export, ${fdsN} with $N"
echo "fds per idle export: $(echo "scale=4; ($fdsN - $fds1) / ($N - 1)" | bc)"
