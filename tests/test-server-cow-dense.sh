#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A base on tmpfs whose pages all exist is known dense from its block
# count: the copy-on-write fills of a fresh overlay over it never walk it
# with SEEK_HOLE (on tmpfs that walk visits every page of the base, and
# held the base's file position lock while the server's other lseeks
# waited).  A tmpfs base with a hole is not taken for dense: the hole
# still reads as a hole through the overlay.  strace records cowbd's
# lseek calls; qemu-img compare checks the writes against qemu-io's.
. "${srcdir:-.}/server-functions.sh"
requires strace -V
requires qemu-io --version
requires nbdinfo --version
# The point is tmpfs: /dev/shm is one on every machine the project uses.
[ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] ||
    { echo "$test_name: skipped: /dev/shm is not tmpfs"; exit 77; }

shm=$(mktemp -d "/dev/shm/$test_name.XXXXXX")
cleanup_fn "rm -rf '$shm'"

K=65536
writes=()
for k in 1 5 9 14 22 30; do
    writes+=(-c "write -P $(( 0x40 + k )) $(( k * K + (k % 4) * 12288 )) 4k")
done

# cowbd serving IMG to qemu-io's writes, its lseeks in $tmp/lseek.log.
serve_writes ()
{
    local img=$1 fmt=$2
    # LeakSanitizer cannot run under ptrace (sanitizer builds).
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    strace -f -qq -e trace=lseek,copy_file_range -o "$tmp/lseek.log" \
        timeout -k 5 60 cowbd -U - "$img" --run \
        "qemu-io -f raw ${writes[*]@Q} \"\$uri\"" >"$tmp/qemu-io.out" ||
        fail "$fmt: writes through cowbd"
    if grep -q -i -e fail -e error "$tmp/qemu-io.out"; then
        cat "$tmp/qemu-io.out"
        fail "$fmt: qemu-io reported an error"
    fi
}

# The dense base: every page written.
qemu-img create -q -f raw "$shm/dense.raw" 2M
qemu-io -f raw -c 'write -P 0x11 0 2M' "$shm/dense.raw" >/dev/null

for fmt in qcow2 qed; do
    for img in top ref; do
        rm -f "$shm/$img.$fmt"
        qemu-img create -q -f $fmt -b dense.raw -F raw "$shm/$img.$fmt"
    done
    qemu-io -f $fmt "${writes[@]}" "$shm/ref.$fmt" >/dev/null
    serve_writes "$shm/top.$fmt" $fmt
    grep -q copy_file_range "$tmp/lseek.log" ||
        fail "$fmt: strace recorded no fill"
    if grep SEEK_HOLE "$tmp/lseek.log"; then
        fail "$fmt: cowbd walked a dense tmpfs base with SEEK_HOLE"
    fi
    qemu-img compare -q -f $fmt -F $fmt "$shm/top.$fmt" "$shm/ref.$fmt" ||
        fail "$fmt: cowbd's writes differ from qemu-io's"
    qemu-img check -q -f $fmt "$shm/top.$fmt" ||
        fail "$fmt: qemu-img check"
done

# The sparse base: data, a hole at [1M, 1.5M), data.
qemu-img create -q -f raw "$shm/sparse.raw" 2M
qemu-io -f raw -c 'write -P 0x22 0 1M' -c 'write -P 0x23 1536k 512k' \
    "$shm/sparse.raw" >/dev/null
qemu-img create -q -f qcow2 -b sparse.raw -F raw "$shm/sparse.qcow2"
cowbd -U - "$shm/sparse.qcow2" --run 'nbdinfo --map "$uri"' \
    >"$tmp/map" 2>"$tmp/server.log" || fail "nbdinfo --map"
cat "$tmp/map"
awk '$1 <= 1048576 && $1 + $2 >= 1572864 { found = 1 }
     END { exit !found }' <(grep 'hole,zero' "$tmp/map") ||
    fail "the sparse tmpfs base's hole is not reported as a hole"
