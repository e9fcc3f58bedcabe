#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cowbd opens every image named on its command line once at start, to
# refuse a bad one before it listens (server/exports.c, validate), and
# closes them again until a client comes.  What those opens freed must
# not stay resident: 64 qcow2 clones, served, hold under 3 MiB of
# anonymous memory before the first client (6.6 MiB before the heap was
# trimmed after them: a header cluster, tables and caches per image).
# glibc's heap only: a sanitizer build has its own allocator, and the
# test is skipped there.
. "${srcdir:-.}/server-functions.sh"

if ldd "$(command -v cowbd)" | grep -q -e libasan -e libubsan; then
    echo "$test_name: skipped: cowbd is built with a sanitizer's allocator"
    exit 77
fi

N=64
make_clones qcow2 $N

start_server "${clone_args[@]}"
kib=$(awk '$1 == "RssAnon:" { print $2 }' "/proc/$server_pid/status")
echo "anonymous memory with $N qcow2 exports and no client: $kib KiB"
[ "$kib" -lt $(( 3 << 10 )) ] ||
    fail "$kib KiB resident for $N exports nobody has opened yet"
# And they serve.
nbdsh -u "$(uri c$(( N - 1 )))" -c 'assert h.pread (4096, 0) == bytes (4096)' ||
    fail "reading export c$(( N - 1 ))"
stop_server
