#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The file's tail, ahead of its last cluster (formats/hostfile.c, "Zeros
# or a hole for the file's new tail"): an image on a disk that a client
# flushes between growths grows by written zeros, so that the sync after
# an allocating write finds its blocks allocated; on tmpfs, or with no
# flush, it grows by a hole as before.  Either way, QED and qcow2 with
# lazy refcounts:
#   - cowbd killed after the flushes (the tail still there): what was
#     flushed reads back through qemu-img, and qemu-img check finds no
#     corruption (QED: leaks at most, the slack past the last cluster);
#   - served again and stopped cleanly: the tail is cut, qemu-img check
#     is clean, the data still reads back.
. "${srcdir:-.}/functions.sh"
requires cowbd --version
requires qemu-img --version
requires qemu-io --version
requires nbdsh --version

# The tail matters only where a sync commits block allocations.
case $(stat -f -c %T "$tmp") in
    tmpfs|ramfs) echo "$test_name: skipped: $tmp is not on a disk"; exit 77 ;;
esac
[ -d /dev/shm ] || { echo "$test_name: skipped: no /dev/shm"; exit 77; }
shm=$(mktemp -d /dev/shm/test-engine-zero-tail.XXXXXX)
cleanup_fn "rm -rf '$shm'"

pid=
stop_server ()
{
    [ -n "$pid" ] || return 0
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || :
    pid=
}
cleanup_fn stop_server

# The client: 48 writes of 4 KiB, each into a cluster of its own past the
# 1 MiB base (no fill: the one-sync flush), each followed by a flush if
# FLUSH=1; then it says whether the last 512 KiB of the file hold a hole.
cat > "$tmp/client.py" <<'EOF'
import os
flush = os.environ["FLUSH"] == "1"
for k in range(48):
    h.pwrite(bytes([k + 1]) * 4096, (16 + k) * 65536 + 4096)
    if flush:
        h.flush()
fd = os.open(os.environ["IMG"], os.O_RDONLY)
size = os.fstat(fd).st_size
hole = os.lseek(fd, size - 512 * 1024, os.SEEK_HOLE)
os.close(fd)
with open(os.environ["TAIL"], "w") as f:
    f.write("hole\n" if hole < size else "zeros\n")
EOF

# check_data FMT IMG: every write reads back.
check_data ()
{
    local k
    for k in $(seq 0 47); do
        qemu-io -r -f "$1" -c "read -P $((k + 1)) $(( (16 + k) * 65536 + 4096 )) 4k" \
            "$2" >/dev/null || fail "$2: write $k lost"
    done
    qemu-io -r -f "$1" -c "read -P 0x5a 0 1M" "$2" >/dev/null ||
        fail "$2: the base no longer reads through"
}

# run DIR FMT FLUSH WANT: one round (WANT: what the tail must be).
run ()
{
    local dir=$1 fmt=$2 flush=$3 want=$4 img=$1/img.$2 rc opts=
    [ "$fmt" = qcow2 ] && opts="-o lazy_refcounts=on"
    qemu-img create -q -f "$fmt" $opts -b "$tmp/base.raw" -F raw "$img" 64M
    rm -f "$tmp/sock" "$tmp/tail"
    cowbd -U "$tmp/sock" -f "$fmt" "$img" 2>>"$tmp/server.log" &
    pid=$!
    wait_for_socket "$tmp/sock"
    IMG=$img TAIL=$tmp/tail FLUSH=$flush \
        nbdsh -u "nbd+unix:///?socket=$tmp/sock" -c "exec(open('$tmp/client.py').read())" ||
        fail "$img: the client"
    [ "$(cat "$tmp/tail")" = "$want" ] ||
        fail "$img (flush=$flush): the tail holds $(cat "$tmp/tail"), not $want"
    # A crash with the tail there.
    stop_server
    if [ "$flush" = 1 ]; then
        check_data "$fmt" "$img"
        rc=0
        qemu-img check -q -f "$fmt" "$img" >/dev/null 2>&1 || rc=$?
        case $fmt:$rc in
            qed:0|qed:3|qcow2:*) ;;
            *) qemu-img check -f "$fmt" "$img"
               fail "$img: qemu-img check after the crash exited $rc" ;;
        esac
    fi
    # Open (repairs), stop cleanly: the tail is cut.
    cowbd -U - -f "$fmt" "$img" --run 'nbdinfo "$uri" >/dev/null' \
        2>>"$tmp/server.log" || fail "$img: serving it again"
    qemu-img check -q -f "$fmt" "$img" || fail "$img: qemu-img check after a clean stop"
    if [ "$fmt" = qcow2 ]; then
        end=$(qemu-img check --output=json -f qcow2 "$img" | jq '."image-end-offset"')
        [ "$end" -eq "$(stat -c %s "$img")" ] ||
            fail "$img: $(stat -c %s "$img") bytes long, its clusters end at $end"
    fi
    [ "$flush" = 1 ] && check_data "$fmt" "$img"
    echo "$img, flush=$flush: the tail held $want; data and check fine"
    rm -f "$img"
}

qemu-img create -q -f raw "$tmp/base.raw" 1M
qemu-io -f raw -c 'write -P 0x5a 0 1M' "$tmp/base.raw" >/dev/null
for fmt in qed qcow2; do
    run "$tmp" $fmt 1 zeros
    run "$tmp" $fmt 0 hole
    run "$shm" $fmt 1 hole
done
if grep -q -e 'Sanitizer' -e 'runtime error' "$tmp/server.log"; then
    cat "$tmp/server.log" >&2
    fail "sanitizer report"
fi
