#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A real Prometheus scrapes cowbd's --metrics endpoint: after a known
# workload (N writes to export A, M reads from export B, one request
# refused with EINVAL), the figures Prometheus stored equal it (it
# negotiates OpenMetrics), and promtool finds nothing wrong with the
# text-format exposition.
. "${srcdir:-.}/metrics-functions.sh"
requires prometheus --version
requires promtool --version
requires nbdsh --version

N=7 WSIZE=4096 M=5 RSIZE=65536

qemu-img create -q -f qcow2 "$tmp/a.qcow2" 16M
make_image raw b.raw
start_metrics_server "A=$tmp/a.qcow2" "B=$tmp/b.raw"
target=${metrics_url#http://}
target=${target%/metrics}

# Prometheus on its own port and scratch storage, scraping every second.
pport=$(free_port)
cat > "$tmp/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: cowbd
    static_configs:
      - targets: ['$target']
YML
promtool check config "$tmp/prometheus.yml" >/dev/null
prometheus --config.file="$tmp/prometheus.yml" \
    --storage.tsdb.path="$tmp/tsdb" \
    --web.listen-address="127.0.0.1:$pport" \
    > "$tmp/prometheus.log" 2>&1 &
prom_pid=$!
cleanup_fn "kill $prom_pid 2>/dev/null; wait $prom_pid 2>/dev/null"

# The workload.
nbdsh -u "$(uri A)" -c "
for i in range($N):
    h.pwrite(bytes([i + 1]) * $WSIZE, i * $WSIZE)
h.set_strict_mode(0)       # let the bad request reach the server
try:
    h.pread(4096, h.get_size())
    raise SystemExit('a read past the end succeeded')
except nbd.Error as e:
    assert e.errno == 'EINVAL', e.errno
"
nbdsh -u "$(uri B)" -c "
for i in range($M):
    h.pread($RSIZE, i * $RSIZE)
"
done_at=$(date +%s.%N)

scrape "$tmp/scrape.txt"
promtool check metrics < "$tmp/scrape.txt" ||
    fail "promtool check metrics found problems"

# Asks Prometheus, once it holds a sample scraped after the workload.
$PYTHON - "127.0.0.1:$pport" "$done_at" $N $WSIZE $M $RSIZE <<'PY'
import json, sys, time, urllib.parse, urllib.request
base, done_at = sys.argv[1], float(sys.argv[2])
n, wsize, m, rsize = map(int, sys.argv[3:])

def query(expr):
    url = "http://%s/api/v1/query?%s" % (
        base, urllib.parse.urlencode({"query": expr}))
    with urllib.request.urlopen(url, timeout=10) as r:
        res = json.load(r)["data"]["result"]
    return [float(x["value"][1]) for x in res]

deadline = time.time() + 90
while True:
    try:
        ts = query('timestamp(cowbd_exports)')
    except OSError:
        ts = []
    if ts and ts[0] > done_at:
        break
    if time.time() > deadline:
        sys.exit("Prometheus stored no scrape made after the workload")
    time.sleep(0.5)

def one(expr, want):
    got = query(expr)
    if got != [float(want)]:
        sys.exit("%s: Prometheus has %s, expected %s" % (expr, got, want))

one('cowbd_export_requests_total{export="A",op="write"}', n)
one('cowbd_export_bytes_total{export="A",op="write"}', n * wsize)
one('cowbd_export_requests_total{export="B",op="read"}', m)
one('cowbd_export_bytes_total{export="B",op="read"}', m * rsize)
one('sum(cowbd_export_errors_total)', 1)
one('cowbd_export_errors_total{export="A",op="read",error="EINVAL"}', 1)
one('cowbd_export_requests_total{export="A",op="read"}', 1)
one('cowbd_export_request_duration_seconds_count{export="A",op="write"}', n)
one('cowbd_handshakes_total{outcome="ok"}', 2)
one('cowbd_exports', 2)
one('cowbd_export_connections{export="A"}', 0)
one('up{job="cowbd"}', 1)

# Prometheus asks for OpenMetrics first: then a counter's family is
# named without "_total" in the metadata it kept.
url = "http://%s/api/v1/metadata?metric=cowbd_export_requests" % base
with urllib.request.urlopen(url, timeout=10) as r:
    meta = json.load(r)["data"]
if [x["type"] for x in meta.get("cowbd_export_requests", [])] != ["counter"]:
    sys.exit("not scraped as OpenMetrics: metadata %s" % meta)
PY
stop_server
