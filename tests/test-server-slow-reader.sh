#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A client that stops reading while many large reads are in flight
# costs the server no memory per reply: N reads of 256 KiB, all served
# from the image's file (sendfile), wait while the socket is full for
# longer than a worker waits for it (1 s); the writer gives up, and the
# replies still waiting are sent from the file once the client reads
# again, not read into their buffers of fresh memory meanwhile.  Every
# reply carries the file's data, and the server's peak RSS grows by no
# more than the rest of the reply being written when the writer gave up
# (one buffer, twice for good measure) and a page per buffer allocated
# (malloc's header).  Reading the waiting replies into memory grew it
# by 4 MiB here.
. "${srcdir:-.}/server-functions.sh"
requires $PYTHON -c 'import nbd'

script=$(cd "$srcdir" && pwd)/test-server-slow-reader.py
# The check measures memory touched: malloc must not fill what it hands
# out (tests/Makefile.am sets this for every test).
unset MALLOC_PERTURB_
N=48 SIZE=262144 PAUSE=2.5

head -c $(( N * SIZE )) /dev/urandom > "$tmp/img.raw"
start_server --format=raw "$tmp/img.raw"
out=$(timeout -k 5 60 $PYTHON "$script" "$(uri)" "$server_pid" \
          "$tmp/img.raw" $N $SIZE $PAUSE) ||
    fail "the slow reader was not served: $out"
stop_server
grew=$(sed -n 's/^grew //p' <<< "$out")
echo "peak RSS grew by $grew KiB for $N replies of $SIZE bytes" >&2
[ -n "$grew" ] || fail "no figure: $out"
bound=$(( 2 * SIZE + N * 4096 ))
# AddressSanitizer poisons a buffer's shadow (an eighth of its size)
# when it is allocated.
[ "${ENABLE_SANITIZERS:-no}" = yes ] && bound=$(( bound + N * SIZE / 8 ))
[ "$grew" -le $(( bound / 1024 )) ] ||
    fail "peak RSS grew by $grew KiB for $N replies of $SIZE bytes"
