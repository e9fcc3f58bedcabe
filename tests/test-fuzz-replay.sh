#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The image fuzz target's function over its seed corpus and over every
# input that once crashed it (fuzzing/corpus/): each file is opened as an
# image, read, checked, repaired, written.  Under the sanitizers any
# report fails the test; in a plain build, a crash does.
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
