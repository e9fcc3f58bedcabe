#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cowbd SIGKILLed while it fills its --base-cache, then started again on
# the same cache folder: every read of every clone equals the remote's
# data.  Ten rounds, each on a fresh cache, kill cowbd at different
# moments (after 0.625, 1.25, ... MiB asked of a slow remote, while two
# clones read); even rounds kill it a second time while the restarted
# cowbd goes on filling the torn cache.  The cache may keep what was
# durably recorded: the rounds that kept data are counted (the remote's
# log tells what the check's reads had to fetch again).
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/remote-functions.sh"
requires nbdkit --filter=delay null --version
cd "$tmp"

MiB=$((1 << 20))
SIZE=$((8 * MiB))
head -c $SIZE /dev/urandom > golden.raw
# Each read of the remote takes 20 ms: a fill takes long enough to be
# caught in the middle.
start_remote --filter=delay rdelay=20ms
for c in c1 c2; do
    qemu-img create -q -f qcow2 -b "$(golden_uri)" -F raw $c.qcow2
done

# Both clones read whole, in the background ($readers).
start_reads ()
{
    local c
    readers=()
    for c in c1 c2; do
        rm -f out-$c.raw
        timeout 60 nbdcopy "$(uri $c)" out-$c.raw 2> /dev/null &
        readers+=($!)
    done
}

# kill_after BYTES: SIGKILL cowbd once the remote was asked for BYTES
# more data, or the readers are done (bounded: 30 s), then reap the
# readers, which fail; $midfill says whether they were still reading.
kill_after ()
{
    local want=$(( $(remote_bytes data) + $1 )) i
    midfill=no
    for (( i=0; i<1500; i++ )); do
        kill -0 "$server_pid" || fail "cowbd died by itself"
        kill -0 "${readers[0]}" 2>/dev/null ||
            kill -0 "${readers[1]}" 2>/dev/null || break
        if [ "$(remote_bytes data)" -ge "$want" ]; then
            midfill=yes
            break
        fi
        sleep 0.02
    done
    kill -KILL "$server_pid"
    wait "$server_pid" 2>/dev/null || :
    server_pid=
    for i in "${readers[@]}"; do wait "$i" 2>/dev/null || :; done
    kills="$kills $midfill"
}

kept_rounds=0 all_kills=
for round in $(seq 10); do
    rm -rf cache && mkdir cache
    kills=
    start_server --base-cache="$tmp/cache" c1=c1.qcow2 c2=c2.qcow2
    start_reads
    kill_after $((round * 5 * MiB / 8))
    if [ $((round % 2)) -eq 0 ]; then
        start_server --base-cache="$tmp/cache" c1=c1.qcow2 c2=c2.qcow2
        start_reads
        kill_after $((MiB / 2))
    fi
    # The check: a clean cowbd on the torn cache, both clones read whole.
    d0=$(remote_bytes data)
    start_server --base-cache="$tmp/cache" c1=c1.qcow2 c2=c2.qcow2
    start_reads
    for c in 0 1; do
        wait "${readers[$c]}" || fail "round $round: reading clone $((c + 1))"
    done
    stop_server
    for c in c1 c2; do
        cmp out-$c.raw golden.raw ||
            fail "round $round: $c differs from the remote after the crash"
    done
    fetched=$(( $(remote_bytes data) - d0 ))
    [ "$fetched" -le "$SIZE" ] ||
        fail "round $round: the check fetched $fetched bytes, more than once"
    kept=$(( (SIZE - fetched) / MiB ))
    echo "$test_name: round $round: killed mid-fill:$kills;" \
        "the cache kept $kept MiB ($((SIZE - fetched)) bytes)"
    [ "$fetched" -lt "$SIZE" ] && kept_rounds=$((kept_rounds + 1))
    all_kills="$all_kills$kills"
done
echo "$test_name: $kept_rounds rounds of 10 kept data across the kill"
# Kills that came after the readers were done test little: most must not.
[ "$(grep -o yes <<<"$all_kills" | wc -l)" -ge 5 ] ||
    fail "too few kills came in the middle of a fill:$all_kills"
stop_remote
exit 0
