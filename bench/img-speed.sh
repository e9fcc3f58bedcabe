#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cowbd-img against qemu-img, measured in the same run (not a test: no
# pass or fail, numbers to read).  Images live on tmpfs (/dev/shm): this
# machine drops cold page cache within seconds, and on disk we would
# measure the disk.
#
#   1. clone time does not grow with the base's size: CLONES runs of
#        cowbd-img create -f qed -b base.qed clone.qed
#      over a 1 GiB and a 1 TiB base;
#   2. CLONES clones in one loop, against CLONES
#        qemu-img create -q -f qed -b base.qed -F qed clone.qed
#      (goal: at most half qemu-img's time), over a base with 128 MiB of
#      data and over one with 2 GiB;
#   3. convert of a 4 GiB half-sparse image (1 MiB of random data, 1 MiB
#      hole, ...), raw to raw, raw to qed, qed to raw, raw to qcow2 and
#      qcow2 to raw, against qemu-img convert with its defaults (goal:
#      at most 0.8 of qemu-img's time).
#
# Each measurement is repeated ROUNDS times, interleaved with its peer's;
# the medians and their ratio are printed with the exact commands.
#
# The load average is printed before and after each part: the machine
# may be shared, and the figures only mean something next to it.
#
# Usage: bench/img-speed.sh   (cowbd-img and qemu-img found on PATH, or
#        COWBD_IMG=path/to/cowbd-img; ROUNDS=7, CLONES=1000, CONVERT_GIB=4,
#        PARTS="clones convert", PAIRS="raw:raw raw:qed qed:raw raw:qcow2
#        qcow2:raw")
set -euo pipefail

. "$(dirname "$0")/bench-lib.sh"
bench_img_tools
rounds=${ROUNDS:-7}
clones=${CLONES:-1000}
gib=${CONVERT_GIB:-4}
parts=${PARTS:-clones convert}
pairs=${PAIRS:-raw:raw raw:qed qed:raw raw:qcow2 qcow2:raw}

bench_workdir img-speed

# clone_loop TOOL BASE: seconds for $clones creates of clone.qed on BASE
# (CLONES=N in its environment overrides the count).
clone_loop ()
{
    local t0 i clones=${CLONES:-$clones}
    t0=$(now)
    if [ "$1" = cowbd ]; then
        for (( i = 0; i < clones; i++ )); do
            "$cowbd_img" create -q -f qed -b "$2" clone.qed
        done
    else
        for (( i = 0; i < clones; i++ )); do
            qemu-img create -q -f qed -b "$2" -F qed clone.qed
        done
    fi
    echo "$(now) - $t0" | bc
}

# convert_once TOOL SRCFMT DSTFMT: seconds for one convert of
# src.SRCFMT into dst.DSTFMT.
convert_once ()
{
    local t0 t
    rm -f dst.$3
    t0=$(now)
    if [ "$1" = cowbd ]; then
        "$cowbd_img" convert -f $2 -O $3 src.$2 dst.$3
    else
        qemu-img convert -f $2 -O $3 src.$2 dst.$3
    fi
    t=$(echo "$(now) - $t0" | bc)
    rm -f dst.$3
    echo "$t"
}

ratio () { echo "scale=2; $1 / $2" | bc; }

want () { case " $parts " in *" $1 "*) return 0 ;; esac; return 1; }

echo "cowbd-img: $cowbd_img ($("$cowbd_img" --version))"
echo "qemu-img:  $(qemu-img --version | head -1)"
echo "images in $dir (tmpfs); $rounds rounds, medians"
echo

# --- 1 and 2: clones ---------------------------------------------------
if want clones; then
qemu-img create -q -f qed base-1g.qed 1G
qemu-img create -q -f qed base-1t.qed 1T
# The same 128 MiB of data in both, so that only the virtual size differs.
qemu-io -c 'write -P 1 0 64M' -c 'write -P 2 512M 64M' base-1g.qed > /dev/null
qemu-io -c 'write -P 1 0 64M' -c 'write -P 2 512G 64M' base-1t.qed > /dev/null
# A golden image with real data: 2 GiB written.
qemu-img create -q -f qed base-data.qed 1T
qemu-io -c 'write -P 3 0 1G' -c 'write -P 4 1G 1G' base-data.qed > /dev/null
c1g=() c1t=() q1g=() cdata=() qdata=()
CLONES=20 clone_loop cowbd base-1g.qed > /dev/null     # warm up
CLONES=20 clone_loop qemu base-1g.qed > /dev/null
for (( r = 0; r < rounds; r++ )); do
    c1g+=("$(clone_loop cowbd base-1g.qed)")
    c1t+=("$(clone_loop cowbd base-1t.qed)")
    q1g+=("$(clone_loop qemu base-1g.qed)")
    cdata+=("$(clone_loop cowbd base-data.qed)")
    qdata+=("$(clone_loop qemu base-data.qed)")
done
m_cd=$(median "${cdata[@]}"); m_qd=$(median "${qdata[@]}")
m_c1g=$(median "${c1g[@]}"); m_c1t=$(median "${c1t[@]}"); m_q1g=$(median "${q1g[@]}")
echo "1. clone time against base size ($clones clones, seconds):"
echo "   cowbd-img create -q -f qed -b base-1g.qed clone.qed   $m_c1g"
echo "   cowbd-img create -q -f qed -b base-1t.qed clone.qed   $m_c1t"
echo "   ratio 1 TiB / 1 GiB: $(ratio "$m_c1t" "$m_c1g")"
echo "2. $clones clones, cowbd-img against qemu-img (seconds):"
echo "   cowbd-img create -q -f qed -b base-1g.qed clone.qed          $m_c1g"
echo "   qemu-img create -q -f qed -b base-1g.qed -F qed clone.qed    $m_q1g"
echo "   ratio cowbd-img / qemu-img: $(ratio "$m_c1g" "$m_q1g") (goal <= 0.5)"
echo "   per clone: cowbd-img $(echo "scale=3; $m_c1g * 1000 / $clones" | bc) ms," \
     "qemu-img $(echo "scale=3; $m_q1g * 1000 / $clones" | bc) ms"
echo "   over a base holding 2 GiB of data:"
echo "   cowbd-img create -q -f qed -b base-data.qed clone.qed          $m_cd"
echo "   qemu-img create -q -f qed -b base-data.qed -F qed clone.qed    $m_qd"
echo "   ratio cowbd-img / qemu-img: $(ratio "$m_cd" "$m_qd")"
echo "   $(loadavg)"
echo
rm -f base-1g.qed base-1t.qed base-data.qed clone.qed
fi
want convert || exit 0

# --- 3: convert ---------------------------------------------------------
/usr/bin/python3 - src.raw "$gib" <<'PY'
import os, sys
name, gib = sys.argv[1], int(sys.argv[2])
block = os.urandom(1 << 20)
with open(name, "wb") as f:
    f.truncate(gib << 30)
    for mib in range(0, gib << 10, 2):
        f.seek(mib << 20)
        f.write(block)
PY
qemu-img convert -f raw -O qed src.raw src.qed
qemu-img convert -f raw -O qcow2 src.raw src.qcow2
for pair in $pairs; do
    sf=${pair%:*} df=${pair#*:}
    ct=() qt=()
    # Warm up: the first writes into fresh tmpfs pages are slow here.
    convert_once cowbd $sf $df > /dev/null
    convert_once qemu $sf $df > /dev/null
    for (( r = 0; r < rounds; r++ )); do
        ct+=("$(convert_once cowbd $sf $df)")
        qt+=("$(convert_once qemu $sf $df)")
    done
    m_c=$(median "${ct[@]}"); m_q=$(median "${qt[@]}")
    echo "3. convert of a $gib GiB half-sparse $sf image to $df (seconds):"
    echo "   cowbd-img convert -f $sf -O $df src.$sf dst.$df   $m_c   (runs: ${ct[*]})"
    echo "   qemu-img convert -f $sf -O $df src.$sf dst.$df    $m_q   (runs: ${qt[*]})"
    echo "   ratio cowbd-img / qemu-img: $(ratio "$m_c" "$m_q") (goal <= 0.8)"
    echo "   $(loadavg)"
done
