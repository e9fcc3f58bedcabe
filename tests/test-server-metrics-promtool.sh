#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The exposition stays valid for promtool with export names that need
# escaping in a label (quotes, backslash, newline, bytes that are not
# UTF-8), with 1000 exports, and while a client is connected; the
# escaped names come back as they were.
. "${srcdir:-.}/metrics-functions.sh"
requires promtool --version
requires nbdsh --version

ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 1100 ] || fail "cannot open 1100 files (ulimit -n)"

odd=$'q"uo\\te\nnl'
bad=$'lat\xe9in'
args=("$odd=$tmp/odd.raw" "$bad=$tmp/bad.raw")
truncate -s 1M "$tmp/odd.raw" "$tmp/bad.raw"
for i in $(seq 1 998); do
    truncate -s 64K "$tmp/e$i.raw"
    args+=("e$i=$tmp/e$i.raw")
done
start_metrics_server -f raw "${args[@]}"

scrape "$tmp/idle.txt"
promtool check metrics < "$tmp/idle.txt" || fail "1000 exports: promtool"
[ "$(metric "$tmp/idle.txt" cowbd_exports)" = 1000 ] || fail "exports"

# A client connected (and writing) during the scrape.
nbdsh -u "nbd+unix:///e5?socket=$tmp/sock" -c "
import os, subprocess, sys
h.pwrite(b'x' * 512, 0)
subprocess.run(['bash', '-c', '. \"\$0\"; metrics_url=\$1; scrape \$2',
                '$srcdir/metrics-functions.sh', '$metrics_url',
                '$tmp/busy.txt'], check=True)
"
promtool check metrics < "$tmp/busy.txt" || fail "busy: promtool"
[ "$(metric "$tmp/busy.txt" cowbd_connections)" = 1 ] ||
    fail "the connection was not counted"
[ "$(metric "$tmp/busy.txt" 'cowbd_export_connections{export="e5"}')" = 1 ] ||
    fail "the export's connection was not counted"

# Names with quotes, backslash and newline, escaped as the format asks;
# a byte that is not UTF-8 as U+FFFD.
grep -qF 'cowbd_export_connections{export="q\"uo\\te\nnl"} 0' "$tmp/busy.txt" ||
    fail "odd name not escaped"
grep -qF "cowbd_export_connections{export=\"lat"$'\xef\xbf\xbd'"in\"} 0" \
    "$tmp/busy.txt" || fail "non-UTF-8 name not replaced"

# The odd export's traffic is labelled with its name.
nbdsh -u "nbd+unix:///q%22uo%5Cte%0Anl?socket=$tmp/sock" \
    -c 'h.pread(512, 0)'
scrape "$tmp/odd.txt"
promtool check metrics < "$tmp/odd.txt" || fail "after traffic: promtool"
grep -qF 'cowbd_export_requests_total{export="q\"uo\\te\nnl",op="read"} 1' \
    "$tmp/odd.txt" || fail "odd export's read not counted under its name"

# OpenMetrics, when asked for: the same samples; counter families named
# without "_total"; "# EOF" last.
scrape "$tmp/odd.om" openmetrics
diff <(grep -v '^#' "$tmp/odd.txt") <(grep -v '^#' "$tmp/odd.om") ||
    fail "OpenMetrics and text format differ in their samples"
[ "$(tail -n 1 "$tmp/odd.om")" = "# EOF" ] || fail "OpenMetrics: no # EOF"
[ "$(grep -c '^# EOF' "$tmp/odd.om")" = 1 ] || fail "OpenMetrics: # EOF twice"
grep -q '^# TYPE cowbd_export_requests counter$' "$tmp/odd.om" ||
    fail "OpenMetrics: counter family named with _total"
! grep -E '^# (TYPE|HELP) [a-z_]+_total ' "$tmp/odd.om" ||
    fail "OpenMetrics: a family named with _total"
stop_server
