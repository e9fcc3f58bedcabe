#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img convert`:
#  - QED images made by qemu-img (no backing file, raw and qed backing
#    files, a three-image chain, small clusters, zero clusters, ranges
#    past the backing file's end) converted to raw are identical (cmp) to
#    `qemu-img convert -O raw` of them;
#  - converted to qed they pass `qemu-img check` and `qemu-img compare`
#    against their source;
#  - zeros are never written: holes, zero clusters and all-zero blocks of
#    data stay holes in the target;
#  - -n (existing target), -m (threads), failures leave no target.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

# --- sources made by qemu-img and qemu-io -----------------------------------
qemu-img create -q -f raw base.raw 3M
qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x12 2M 4k' base.raw >/dev/null
qemu-img create -q -f qed base.qed 4M
qemu-io -f qed -c 'write -P 0x21 64k 512k' -c 'write -z 1M 64k' \
    -c 'write -P 0x22 3M 100k' base.qed > /dev/null

qemu-img create -q -f qed plain.qed 5M
qemu-io -c 'write -P 0x31 0 64k' -c 'write -P 0x32 100k 3k' \
    -c 'write -z 1M 256k' -c 'write -P 0x33 4M 1M' plain.qed > /dev/null
qemu-img create -q -f qed -b base.raw -F raw over-raw.qed 5M
qemu-io -c 'write -P 0x41 512k 64k' -c 'write -z 0 64k' \
    -c 'write -P 0x42 4M 4k' over-raw.qed > /dev/null
qemu-img create -q -f qed -b base.qed -F qed over-qed.qed 6M
qemu-io -c 'write -P 0x51 64k 4k' -c 'write -z 3M 64k' \
    -c 'write -P 0x52 5M 64k' over-qed.qed > /dev/null
qemu-img create -q -f qed -b over-qed.qed -F qed chain.qed 7M
qemu-io -c 'write -P 0x61 2M 64k' -c 'write -z 64k 64k' \
    -c 'write -P 0x62 6M 1k' chain.qed > /dev/null
qemu-img create -q -f qed -o cluster_size=4k small.qed 1M
qemu-io -c 'write -P 0x71 1k 10k' -c 'write -z 64k 8k' small.qed >/dev/null
qemu-img create -q -f qed empty.qed 2M

for f in plain over-raw over-qed chain small empty; do
    cowbd-img convert -O raw $f.qed $f.ours.raw
    qemu-img convert -O raw $f.qed $f.theirs.raw
    cmp $f.ours.raw $f.theirs.raw || fail "$f.qed: raw conversions differ"
    # To qed: a flat image qemu-img finds clean and identical.
    cowbd-img convert -f qed -O qed $f.qed $f.ours.qed
    qemu_check_clean $f.ours.qed
    qemu_same $f.qed $f.ours.qed
    [ -z "$(qemu-img info --output=json $f.ours.qed | grep backing)" ] ||
        fail "$f.ours.qed has a backing file"
done
# The raw source to qed and back.
cowbd-img convert -f raw -O qed base.raw base.ours.qed
qemu_check_clean base.ours.qed
qemu_same -f raw -F qed base.raw base.ours.qed

# --- zeros are not written ---------------------------------------------------
# A raw source with data, a hole, and allocated zeros (written, not holes).
qemu-img create -q -f raw mixed.raw 8M
qemu-io -f raw -c 'write -P 0x81 0 1M' -c 'write -P 0 1M 2M' \
    -c 'write -P 0x82 3M 4k' -c 'write -P 0 3149824 60k' mixed.raw > /dev/null
cowbd-img convert -f raw -O raw mixed.raw mixed.out.raw
cmp mixed.raw mixed.out.raw || fail "mixed.raw: content"
# Only 1M + 4k of data in the target: the written zeros became holes.
used=$(($(stat -c '%b * %B' mixed.out.raw)))
[ "$used" -le $(((1 << 20) + (64 << 10))) ] ||
    fail "mixed.out.raw uses $used bytes: zeros were written"
cowbd-img convert -f raw -O qed mixed.raw mixed.out.qed
qemu_same -f raw -F qed mixed.raw mixed.out.qed
qemu-img map --output=json mixed.out.qed > map.json
/usr/bin/python3 - map.json <<'PY' || fail "mixed.out.qed allocates zeros"
import json, sys
data = sum(e["length"] for e in json.load(open(sys.argv[1])) if e["data"])
assert data == (1 << 20) + (64 << 10), data   # 16 clusters + 1 cluster
PY
# Zero clusters of the source stay unallocated in the target.
cowbd-img map --output=json plain.ours.qed > map.json
/usr/bin/python3 - map.json <<'PY' || fail "plain.ours.qed: zeros allocated"
import json, sys
for e in json.load(open(sys.argv[1])):
    if e["start"] <= (1 << 20) < e["start"] + e["length"]:
        assert not e["data"], e
PY

# --- options ----------------------------------------------------------------
# Threads: any number gives the same image.
for m in 1 3 16; do
    cowbd-img convert -m $m -O raw chain.qed chain.m$m.raw
    cmp chain.m$m.raw chain.theirs.raw || fail "-m $m"
done
rc=0; cowbd-img convert -m 0 chain.qed x.raw 2>/dev/null || rc=$?
[ "$rc" -eq 1 ] && [ ! -e x.raw ] || fail "-m 0 accepted"

# -n: the target exists and holds garbage; zeros are then written.
qemu-img create -q -f raw garbage.raw 7M
qemu-io -f raw -c 'write -P 0xee 0 7M' garbage.raw > /dev/null
cowbd-img convert -n -O raw chain.qed garbage.raw
cmp garbage.raw chain.theirs.raw || fail "-n: content"
# -n into a qed target that has data where the source reads zeros.
cowbd-img create -q -f qed target.qed 7M
qemu-io -c 'write -P 0xdd 0 7M' target.qed > /dev/null
cowbd-img convert -n -O qed chain.qed target.qed
qemu_same chain.qed target.qed
qemu_check_clean target.qed
# -n into a smaller target is refused.
cowbd-img create -q -f raw tiny.raw 1M
expect_fail cowbd-img convert -n -O raw chain.qed tiny.raw
one_line_error "$tmp/stderr"

# -o options reach the target.
cowbd-img convert -O qed -o cluster_size=128k chain.qed big-cluster.qed
[ "$(qemu-img info --output=json big-cluster.qed | grep -c '"cluster-size": 131072')" -eq 1 ] ||
    fail "-o cluster_size"
qemu_same chain.qed big-cluster.qed

# -p on a file draws nothing; -q prints nothing.
cowbd-img convert -p -O raw plain.qed p.raw > out.txt
[ ! -s out.txt ] || fail "-p drew on a file"

# --- failures leave nothing ---------------------------------------------------
expect_fail cowbd-img convert -O raw no-such.qed out1.raw
one_line_error "$tmp/stderr"
[ ! -e out1.raw ] || fail "a failed convert left its target"
expect_fail cowbd-img convert -O nosuchformat plain.qed out2.raw
one_line_error "$tmp/stderr"
[ ! -e out2.raw ] || fail "a failed convert left its target"
make_bad_l2 "$tmp"
expect_fail cowbd-img convert -O raw l2-past-eof.qed out3.raw
one_line_error "$tmp/stderr"
[ ! -e out3.raw ] || fail "a failed convert left its target"
expect_fail cowbd-img convert -O raw -o backing_file=base.raw plain.qed out4.raw
[ ! -e out4.raw ] || fail "a refused convert left its target"
# A target refused before it was made is left as it was.
echo keep > keep.raw
expect_fail cowbd-img convert -O nosuchformat plain.qed keep.raw
expect_fail cowbd-img convert -O qed -o cluster_size=3 plain.qed keep.raw
[ "$(cat keep.raw)" = keep ] || fail "a refused convert destroyed its target"
# The source, or a file of its chain, as the target: refused, unharmed.
sum=$(sha256sum < base.qed)
expect_fail cowbd-img convert -O qed over-qed.qed base.qed
one_line_error "$tmp/stderr"
expect_fail cowbd-img convert -O raw -n over-qed.qed over-qed.qed
one_line_error "$tmp/stderr"
[ "$(sha256sum < base.qed)" = "$sum" ] || fail "convert destroyed its source"
qemu_check_clean over-qed.qed
