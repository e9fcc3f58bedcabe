#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img convert -c` (compressed qcow2 clusters), qemu-img as the
# oracle:
#  - raw, qcow2 and QED sources with holes, zero clusters and data,
#    converted with zlib and with zstd: `qemu-img compare` equal to the
#    source, `qemu-img check` clean, its JSON counting compressed
#    clusters, the header's compression type as asked, and the file
#    smaller than the uncompressed conversion;
#  - incompressible data is stored uncompressed and reads back right;
#  - an image whose size is not a multiple of the cluster size (the
#    last cluster padded) and one with 512-byte clusters;
#  - several threads (-m 4) give an equal image;
#  - served by cowbd, the compressed image reads the same (nbdcopy), and
#    a write over compressed clusters reallocates them (qemu-img check
#    clean, the data as written);
#  - -O raw / -O qed refused with one line before anything is created;
#    create -o compression_type=zstd sets the header as qemu-img does.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

requires nbdcopy --version
requires nbdsh --version

cd "$tmp"

# text N: N bytes of compressible text on stdout.
text ()
{
    /usr/bin/python3 -c '
import random, sys
random.seed(int(sys.argv[2]))
w = [b"alpha", b"beta", b"gamma", b"qcow2", b"cluster", b"zstd", b"\n"]
out = bytearray()
while len(out) < int(sys.argv[1]):
    out += random.choice(w) + b" "
sys.stdout.buffer.write(out[:int(sys.argv[1])])' "$1" "${2:-1}"
}

# compressed_clusters FILE: what qemu-img check counts.
compressed_clusters ()
{
    qemu-img check --output=json "$1" > check.json || fail "check $1"
    json_get check.json compressed-clusters
}

# --- sources ---------------------------------------------------------------
text 1048576 1 > t1
text 200000 2 > t2
head -c 262144 /dev/urandom > rnd
qemu-img create -q -f raw src.raw 8M
dd if=t1 of=src.raw bs=64k seek=1 conv=notrunc status=none
dd if=t2 of=src.raw bs=1k seek=4000 conv=notrunc status=none
dd if=rnd of=src.raw bs=64k seek=100 conv=notrunc status=none
qemu-img convert -f raw -O qcow2 src.raw src.qcow2
qemu-io -c 'write -z 5M 128k' src.qcow2 > /dev/null
qemu-img convert -f raw -O qed src.raw src.qed
qemu-io -f qed -c 'write -z 64k 64k' src.qed > /dev/null

for t in zlib zstd; do
    for s in raw qcow2 qed; do
        out=$s-$t.qcow2
        cowbd-img convert -c -f $s -O qcow2 -o compression_type=$t \
            src.$s $out
        qemu_check_clean $out
        qemu_same -f $s -F qcow2 src.$s $out
        n=$(compressed_clusters $out)
        [ "${n:-0}" -gt 0 ] || fail "$out: no compressed clusters"
        qemu-img info --output=json $out > info.json
        grep -q "\"compression-type\": \"$t\"" info.json ||
            fail "$out: compression type is not $t"
        cowbd-img convert -f $s -O qcow2 src.$s plain-$s.qcow2
        [ "$(stat -c %s $out)" -lt "$(stat -c %s plain-$s.qcow2)" ] ||
            fail "$out is not smaller than the uncompressed conversion"
    done
done

# --- incompressible data: stored as is, reads back right -----------------
qemu-img create -q -f raw rnd.raw 1M
dd if=rnd of=rnd.raw conv=notrunc status=none
cowbd-img convert -c -f raw -O qcow2 rnd.raw rnd.qcow2
qemu_check_clean rnd.qcow2
qemu_same -f raw -F qcow2 rnd.raw rnd.qcow2
[ "$(compressed_clusters rnd.qcow2)" = "" ] ||
    [ "$(compressed_clusters rnd.qcow2)" = 0 ] ||
    fail "random data was stored compressed"

# --- odd sizes and small clusters ------------------------------------------
qemu-img create -q -f raw odd.raw 200001
head -c 200001 t1 | dd of=odd.raw conv=notrunc status=none
for t in zlib zstd; do
    cowbd-img convert -c -f raw -O qcow2 -o compression_type=$t odd.raw \
        odd-$t.qcow2
    qemu_check_clean odd-$t.qcow2
    qemu_same -f raw -F qcow2 odd.raw odd-$t.qcow2
    qemu-img convert -c -f raw -O qcow2 -o compression_type=$t odd.raw \
        odd-qemu.qcow2
    qemu-img info --output=json odd-$t.qcow2 > ours.json
    qemu-img info --output=json odd-qemu.qcow2 > theirs.json
    json_same ours.json theirs.json virtual-size
    [ "$(compressed_clusters odd-$t.qcow2)" = \
      "$(compressed_clusters odd-qemu.qcow2)" ] ||
        fail "odd-$t.qcow2: not as many compressed clusters as qemu-img's"
done
cowbd-img convert -c -f raw -O qcow2 -o cluster_size=512 odd.raw small.qcow2
qemu_check_clean small.qcow2
qemu_same -f raw -F qcow2 odd.raw small.qcow2

# --- threads ---------------------------------------------------------------
cowbd-img convert -c -m 4 -f raw -O qcow2 src.raw m4.qcow2
qemu_check_clean m4.qcow2
qemu_same -f raw -F qcow2 src.raw m4.qcow2

# --- served by cowbd; a write over compressed clusters reallocates ------
timeout 60 cowbd -r -U - raw-zstd.qcow2 --run 'nbdcopy "$uri" served.raw' ||
    fail "cowbd could not serve raw-zstd.qcow2"
cmp served.raw src.raw || fail "cowbd serves other data than the source"
cp raw-zlib.qcow2 w.qcow2
timeout 60 cowbd -U - w.qcow2 --run 'nbdsh -u "$uri" -c "
h.pwrite(b\"\\x5a\" * 4096, 65536 + 1000)
h.pwrite(b\"\\xa5\" * 131072, 4000 * 1024 - 4096)
h.flush()"' || fail "cowbd could not write w.qcow2"
qemu_check_clean w.qcow2
cp src.raw expect.raw
/usr/bin/python3 -c '
import sys
f = open("expect.raw", "r+b")
f.seek(65536 + 1000); f.write(b"\x5a" * 4096)
f.seek(4000 * 1024 - 4096); f.write(b"\xa5" * 131072)'
qemu_same -f raw -F qcow2 expect.raw w.qcow2
[ "$(compressed_clusters w.qcow2)" -lt "$(compressed_clusters raw-zlib.qcow2)" ] ||
    fail "the written clusters are still compressed"

# --- refusals ----------------------------------------------------------------
for f in raw qed; do
    expect_fail cowbd-img convert -c -f raw -O $f src.raw refused.$f
    one_line_error "$tmp/stderr"
    grep -q 'compression is not supported' "$tmp/stderr" ||
        fail "-O $f: the refusal does not say why"
    [ ! -e refused.$f ] || fail "-O $f: a target was left behind"
done
expect_fail cowbd-img create -f qcow2 -o compression_type=lz4 bad.qcow2 1M
one_line_error "$tmp/stderr"
[ ! -e bad.qcow2 ] || fail "a refused create left a file"
expect_fail cowbd-img create -f qcow2 -o compat=0.10,compression_type=zstd \
    bad.qcow2 1M
one_line_error "$tmp/stderr"
expect_fail cowbd-img create -f qed -o compression_type=zlib bad.qed 1M
one_line_error "$tmp/stderr"

# create -o compression_type=zstd: the header as qemu-img writes it.
cowbd-img create -q -f qcow2 -o compression_type=zstd z.qcow2 1M
qemu-img create -q -f qcow2 -o compression_type=zstd zq.qcow2 1M
qemu-img info --output=json z.qcow2 > z.json
qemu-img info --output=json zq.qcow2 > zq.json
/usr/bin/python3 - z.json zq.json <<'PY' || fail "zstd headers differ"
import json, sys
a, b = (json.load(open(f))["format-specific"]["data"] for f in sys.argv[1:])
sys.exit(a["compression-type"] != b["compression-type"] or
         a["compression-type"] != "zstd")
PY
qemu_check_clean z.qcow2
