#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The fuzz targets' functions over their seed corpora and every input
# that once crashed them: fuzzing/corpus/ (each file opened as an image,
# read, checked, repaired, written) and fuzzing/corpus-nbd/ (each file a
# client's byte stream into the server).  Under the sanitizers any report
# fails the test; in a plain build, a crash does.
. "${srcdir:-.}/functions.sh"

replay="$abs_top_builddir/fuzzing/fuzz-image-replay"
requires test -x "$replay"
corpus=("$abs_top_srcdir"/fuzzing/corpus/*)
[ -e "${corpus[0]}" ] || fail "empty corpus"

# The target works on memory files; it writes nothing else.
"$replay" "${corpus[@]}" > "$tmp/out" 2>&1 || { cat "$tmp/out"; fail "replay"; }
if grep -q -e Sanitizer -e 'runtime error' "$tmp/out"; then
    cat "$tmp/out"
    fail "sanitizer report"
fi
grep "inputs" "$tmp/out"

nbd_replay="$abs_top_builddir/fuzzing/fuzz-nbd-replay"
if [ -x "$nbd_replay" ]; then
    "$nbd_replay" "$abs_top_srcdir"/fuzzing/corpus-nbd/* > "$tmp/out" 2>&1 ||
        { cat "$tmp/out"; fail "nbd replay"; }
    if grep -q -e Sanitizer -e 'runtime error' "$tmp/out"; then
        cat "$tmp/out"
        fail "sanitizer report (nbd)"
    fi
    grep "inputs" "$tmp/out"
fi
