#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cowbd-img's usage: --help, --version, COMMAND --help, and usage errors.
# Each command's synopsis in --help must be the line the man page's
# SYNOPSIS shows, so that the two cannot drift apart.
. "${srcdir:-.}/functions.sh"

pod="$abs_top_srcdir/man/cowbd-img.1.pod"
commands="create info check map convert compare commit rebase"

cowbd-img --help > "$tmp/help"
grep -q '^Usage: cowbd-img COMMAND' "$tmp/help" || fail "--help: no usage"
cowbd-img --version | grep -Eq '^cowbd-img [0-9]+\.[0-9]+' ||
    fail "--version"

for c in $commands; do
    cowbd-img "$c" --help > "$tmp/$c.help" || fail "$c --help failed"
    synopsis=$(sed -n 's/^Usage: cowbd-img //p' "$tmp/$c.help")
    [ -n "$synopsis" ] || fail "$c --help: no usage line"
    grep -qxF "  $synopsis" "$tmp/help" || fail "--help lacks: $synopsis"
    grep -qxF " cowbd-img $synopsis" "$pod" ||
        fail "man page SYNOPSIS lacks: cowbd-img $synopsis"
    # A usage error: exit 1 (compare: 2, as 1 means "different").
    want=1; [ "$c" = compare ] && want=2
    rc=0; cowbd-img "$c" --no-such-option 2> "$tmp/err" || rc=$?
    [ "$rc" -eq "$want" ] || fail "$c --no-such-option: exit $rc, not $want"
    grep -q "cowbd-img $c --help" "$tmp/err" || fail "$c: no hint to --help"
done

rc=0; cowbd-img no-such-command 2> "$tmp/err" || rc=$?
[ "$rc" -eq 1 ] || fail "unknown command: exit $rc"
grep -q "unknown command 'no-such-command'" "$tmp/err" || fail "message"
rc=0; cowbd-img 2>/dev/null || rc=$?
[ "$rc" -eq 1 ] || fail "no command: exit $rc"
rc=0; cowbd-img info 2>/dev/null || rc=$?
[ "$rc" -eq 1 ] || fail "info without a file: exit $rc"
cowbd-img create -o help | grep -q 'cluster_size' || fail "create -o help"
