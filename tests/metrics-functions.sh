# SPDX-License-Identifier: BSD-3-Clause
# Sourced by the metrics tests (not a test itself): server-functions.sh,
# then helpers for cowbd's --metrics endpoint.
#
#   start_metrics_server ARGS...  cowbd -v --metrics=127.0.0.1:0 -U
#                                 $tmp/sock ARGS; $metrics_url is read
#                                 back from its log
#   scrape FILE                   GET $metrics_url into FILE
#   free_port                     a TCP port on 127.0.0.1 free right now
. "${srcdir:-.}/server-functions.sh"

requires sh -c 'cowbd --version | grep -q "^features:.*metrics"'

start_metrics_server ()
{
    local i
    start_server -v --metrics=127.0.0.1:0 "$@"
    for (( i=0; i<100; i++ )); do
        metrics_url=$(sed -n 's|.*cowbd: metrics: \(http://.*\)$|\1|p' \
                          "$tmp/server.log")
        [ -n "$metrics_url" ] && return 0
        sleep 0.1
    done
    fail "the server never said where its metrics are"
}

# scrape FILE [openmetrics]: GET /metrics into FILE, in the text format
# or, asked with the Accept header Prometheus sends, in OpenMetrics.
scrape ()
{
    $PYTHON - "$metrics_url" "$1" "${2:-text}" <<'PY'
import sys, urllib.request
om = sys.argv[3] == "openmetrics"
req = urllib.request.Request(sys.argv[1])
if om:
    req.add_header("Accept", "application/openmetrics-text;version=1.0.0,"
                   "application/openmetrics-text;version=0.0.1;q=0.75,"
                   "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
with urllib.request.urlopen(req, timeout=30) as r:
    ctype = r.headers["Content-Type"]
    body = r.read()
want = ("application/openmetrics-text; version=1.0.0" if om
        else "text/plain; version=0.0.4")
assert ctype.startswith(want), ctype
open(sys.argv[2], "wb").write(body)
PY
}

free_port ()
{
    $PYTHON -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# metric FILE NAME{LABELS}: the value of that exact series in FILE.
metric ()
{
    awk -v s="$2" '$1 == s { print $2; found=1 } END { exit !found }' "$1" ||
        fail "no series $2 in $1"
}
