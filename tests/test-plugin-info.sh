#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdinfo --json on QED and qcow2 overlays (over raw, QED and qcow2
# backing files), on a raw image and under -r: size, the flags the issue
# lists, base:allocation, block sizes and the export description.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdinfo --version

cd "$tmp"
for b in $BASES; do make_base base.$b $b; done

# check_info JSON-FILE KEY=VALUE...: the first export's fields (JSON
# values: true, 67108864, "text").
check_info ()
{
    local json=$1; shift
    python3 - "$json" "$@" <<'PY' || fail "nbdinfo --json: see above"
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
bad = 0
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    if k == "contexts":
        ok = v in e.get("contexts", [])
    else:
        ok = e.get(k) == json.loads(v)
    if not ok:
        print("%s: expected %s, got %r" % (k, v, e.get(k)), file=sys.stderr)
        bad = 1
sys.exit(bad)
PY
}

writable='is_read_only=false can_multi_conn=true can_fua=true can_flush=true
          can_zero=true can_fast_zero=true can_trim=true can_cache=true
          contexts=base:allocation block_size_minimum=1
          block_size_maximum=33554432'

for o in qed qcow2; do
    for b in $BASES; do
        make_clone clone-$b.$o base.$b $b
        serve -- clone-$b.$o --run 'nbdinfo --json "$uri"' > info-$b.json
        check_info info-$b.json $writable export-size=67108864 \
            block_size_preferred=65536 \
            "description=\"$o, 64 MiB, backing base.$b\""
    done

    qemu-img create -q -f $o -o cluster_size=4096 small.$o 10G
    serve -- small.$o --run 'nbdinfo --json "$uri"' > info-small.json
    check_info info-small.json $writable export-size=10737418240 \
        block_size_preferred=4096 "description=\"$o, 10 GiB\""
done

serve -- base.raw format=raw --run 'nbdinfo --json "$uri"' > info-raw.json
check_info info-raw.json $writable export-size=67108864 \
    block_size_preferred=4096 'description="raw, 64 MiB"'

# -r: read-only, and so no write flags; multi-conn and cache stay.
for f in clone-qed.qed clone-qed.qcow2 base.raw; do
    serve -r -- $f --run 'nbdinfo --json "$uri"' > info-ro.json
    check_info info-ro.json is_read_only=true can_multi_conn=true \
        can_cache=true can_trim=false can_zero=false can_fua=false \
        contexts=base:allocation export-size=67108864
done
