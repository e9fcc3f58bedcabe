# SPDX-License-Identifier: BSD-3-Clause
# Sourced by the cowbd-img benchmarks (img-speed.sh, img-compress.sh,
# img-resize.sh): finding the programs, a scratch folder on tmpfs, and
# the arithmetic of the figures.
#
#   bench_img_tools   cowbd_img: COWBD_IMG, or cowbd-img on PATH, as an
#                     absolute path (the scripts cd to their folder);
#                     exits 1 when it or qemu-img is missing
#   bench_workdir NAME
#                     dir: a fresh folder NAME.XXXXXX on tmpfs (/dev/shm:
#                     this machine drops cold page cache within seconds,
#                     so on disk we would measure the disk), or under
#                     $DIR (e.g. DIR=/var/tmp to see the cost of syncs);
#                     removed at exit; the current folder
#   now               seconds since the epoch, to the nanosecond
#   median VALUES...  their median (the mean of the middle two when even)
#   loadavg           "load average: 1, 5 and 15 minutes"

bench_img_tools ()
{
    cowbd_img=${COWBD_IMG:-$(command -v cowbd-img || true)}
    [ -n "$cowbd_img" ] && [ -x "$cowbd_img" ] ||
        { echo "$0: cowbd-img not found (set COWBD_IMG)" >&2; exit 1; }
    cowbd_img=$(realpath "$cowbd_img")
    command -v qemu-img > /dev/null ||
        { echo "$0: qemu-img not found" >&2; exit 1; }
}

bench_workdir ()
{
    dir=$(mktemp -d "${DIR:-/dev/shm}/$1.XXXXXX")
    trap 'rm -rf "$dir"' EXIT
    cd "$dir"
}

now () { date +%s.%N; }

median ()
{
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

loadavg () { echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"; }
