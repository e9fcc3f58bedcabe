#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cowbd-img convert -c against qemu-img convert -c, measured in the same
# run (not a test: numbers to read).  Issue 16's goal: raw to qcow2 with
# zstd in at most 0.8x qemu-img's time.
#
# The source is a CONVERT_GIB (4) GiB raw image on tmpfs (/dev/shm: this
# machine drops cold page cache within seconds), half sparse: 1 MiB of
# text-like data (words of a made-up vocabulary, compresses about 3x),
# 1 MiB hole, and so on.  Each round runs
#     cowbd-img convert -c -O qcow2 -o compression_type=zstd src.raw c.qcow2
#     qemu-img convert -c -O qcow2 -o compression_type=zstd src.raw q.qcow2
# in alternating order; the medians of ROUNDS (5) rounds (wall-clock and
# CPU time, user + system), their ratios, the output sizes and the load
# average are printed.  Under load the wall-clock ratio says more about
# the scheduler than about either program; read the CPU ratio beside it.  COMPRESSION=zlib
# measures zlib instead; COWBD_OPTS adds options to cowbd-img (e.g. -m 8).
#
# Usage: bench/img-compress.sh   (cowbd-img and qemu-img on PATH, or
#        COWBD_IMG=path/to/cowbd-img)
set -euo pipefail

. "$(dirname "$0")/bench-lib.sh"
bench_img_tools
rounds=${ROUNDS:-5}
gib=${CONVERT_GIB:-4}
comp=${COMPRESSION:-zstd}
read -r -a cowbd_opts <<< "${COWBD_OPTS:-}"

bench_workdir img-compress

/usr/bin/python3 - src.raw "$gib" <<'PY'
import random, sys
path, gib = sys.argv[1], int(sys.argv[2])
random.seed(16)
letters = b'abcdefghijklmnopqrstuvwxyz'
words = [bytes(random.choice(letters) for _ in range(random.randint(2, 9)))
         for _ in range(2000)]
def text(n):
    out = bytearray()
    while len(out) < n:
        out += b' '.join(random.choice(words) for _ in range(12)) + b'\n'
    return bytes(out[:n])
blocks = [text(1 << 20) for _ in range(16)]
with open(path, 'wb') as f:
    f.truncate(gib << 30)
    for i in range(0, gib << 10, 2):
        f.seek(i << 20)
        f.write(blocks[(i // 2) % 16])
PY

ours=() theirs=() ours_cpu=() theirs_cpu=()
# timed ARRAY CPU_ARRAY CMD...: appends CMD's wall-clock and CPU (user +
# system) seconds.
timed ()
{
    local -n wall=$1 cpu=$2
    shift 2
    /usr/bin/time -f '%e %U %S' -o time.out "$@"
    wall+=("$(awk '{ print $1 }' time.out)")
    cpu+=("$(awk '{ print $2 + $3 }' time.out)")
}
run_ours ()
{
    timed ours ours_cpu "$cowbd_img" convert -c "${cowbd_opts[@]}" \
        -O qcow2 -o compression_type="$comp" src.raw c.qcow2
}
run_theirs ()
{
    timed theirs theirs_cpu qemu-img convert -c -O qcow2 \
        -o compression_type="$comp" src.raw q.qcow2
}

echo "convert -c, $gib GiB half-sparse text-like raw -> qcow2 ($comp), $rounds rounds"
echo "before: $(loadavg)"
for (( r = 0; r < rounds; r++ )); do
    if (( r % 2 )); then run_theirs; run_ours; else run_ours; run_theirs; fi
    echo "  round $((r + 1)): cowbd-img ${ours[-1]} s (cpu ${ours_cpu[-1]} s)," \
         "qemu-img ${theirs[-1]} s (cpu ${theirs_cpu[-1]} s)" \
         "(load $(cut -d' ' -f1 /proc/loadavg))"
done
qemu-img compare -q src.raw c.qcow2 || echo "WARNING: c.qcow2 differs from src.raw"
mo=$(median "${ours[@]}") mt=$(median "${theirs[@]}")
co=$(median "${ours_cpu[@]}") ct=$(median "${theirs_cpu[@]}")
echo "  cowbd-img convert -c ${cowbd_opts[*]} -O qcow2 -o compression_type=$comp: median $mo s, $(stat -c %s c.qcow2) bytes"
echo "  qemu-img convert -c -O qcow2 -o compression_type=$comp: median $mt s, $(stat -c %s q.qcow2) bytes"
echo "  ratio cowbd/qemu: $(echo "scale=2; $mo / $mt" | bc) of the time," \
     "$(echo "scale=2; $co / $ct" | bc) of the CPU (median cpu $co s vs $ct s)"
echo "after: $(loadavg)"
