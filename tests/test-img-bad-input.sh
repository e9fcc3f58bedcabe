#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The bad input table: QED files made by qemu-img, then damaged one header
# field at a time (the layout is in docs/interop/qed_spec.txt of QEMU's
# tree, and drawn in formats/qed.h).  For each, `cowbd-img info`, `check`
# and `map` exit 1 with exactly one line on stderr that names the file
# and the fault, no sanitizer report, and the file unchanged.
#
# Damaged L2 table offsets (L1 entries) are found when a read reaches
# them: map and convert refuse them here; that info and check also refuse
# them at once is test-img-bad-l2.sh (expected to fail until the engine
# validates L1 entries at open).
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

qemu-img create -q -f qed good.qed 16M
qemu-io -c 'write -P 1 0 128k' good.qed > /dev/null

# patch NAME OFFSET FORMAT VALUE: NAME.qed is good.qed with the struct
# FORMAT (little-endian) at OFFSET replaced by VALUE.
patch ()
{
    cp good.qed "$1.qed"
    /usr/bin/python3 - "$1.qed" "$2" "$3" "$4" <<'PY'
import struct, sys
name, off, fmt, val = sys.argv[1], int(sys.argv[2], 0), sys.argv[3], int(sys.argv[4], 0)
with open(name, "r+b") as f:
    f.seek(off)
    f.write(struct.pack("<" + fmt, val))
PY
}

# refused NAME FAULT [OPTIONS]: info, check and map of NAME.qed each exit
# 1 with one line naming NAME.qed and matching FAULT (an extended regular
# expression); the file is unchanged.
refused ()
{
    local f=$1.qed fault=$2 cmd rc sum IFS=,; shift 2
    sum=$(sha256sum < "$f")
    for cmd in ${REFUSED_BY:-info,check,map}; do
        rc=0
        IFS=' '
        cowbd-img $cmd "$@" "$f" > out.txt 2> err.txt || rc=$?
        [ "$rc" -eq 1 ] || { cat err.txt >&2; fail "$cmd $f: exit $rc, not 1"; }
        [ ! -s out.txt ] || fail "$cmd $f: printed $(cat out.txt)"
        one_line_error err.txt
        grep -q "$f" err.txt || fail "$cmd $f: the error does not name the file"
        grep -Eq "$fault" err.txt ||
            fail "$cmd $f: '$(cat err.txt)' does not say /$fault/"
        [ "$(sha256sum < "$f")" = "$sum" ] || fail "$cmd changed $f"
    done
}

# Header fields (qed.h): 0 magic, 4 cluster_size, 8 table_size,
# 12 header_size, 16 features, 40 l1_table_offset, 48 image_size,
# 56 backing_filename_offset, 60 backing_filename_size.
head -c 40 good.qed > truncated.qed
refused truncated 'truncated header'

patch magic 0 I 0x00444552                       # "RED\0"
refused magic 'bad magic' -f qed

patch cluster-npot 4 I 65537
refused cluster-npot 'cluster_size'
patch cluster-small 4 I 512
refused cluster-small 'cluster_size'
patch table-npot 8 I 3
refused table-npot 'table_size'

patch l1-past-eof 40 Q 0x10000000
refused l1-past-eof 'L1 table at 0x10000000 lies past end of file'
patch l1-misaligned 40 Q 0x10200
refused l1-misaligned 'L1 table at 0x10200 is not aligned'
patch l1-in-header 40 Q 0
refused l1-in-header 'L1 table at 0x0 overlaps the header'

patch size-overflow 48 Q 0xfffffffffffffe00
refused size-overflow 'image_size'
patch size-unaligned 48 Q 1000
refused size-unaligned 'image_size'

patch header-size 12 I 0x10000000
refused header-size 'header_size'

patch feature 16 Q 0x100
refused feature 'unknown incompatible feature'

# A backing file name outside the header.
cp good.qed name.qed
/usr/bin/python3 - name.qed <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(16); f.write(struct.pack("<Q", 1))             # BACKING_FILE
    f.seek(56); f.write(struct.pack("<II", 65000, 4096))  # past cluster 0
PY
refused name 'backing file name'

# Backing chains: a loop a -> b -> a, an image that is its own backing
# file, and a missing backing file.
qemu-img create -q -f qed b.qed 16M
qemu-img create -q -f qed -b b.qed -F qed a.qed
qemu-img rebase -u -b a.qed -F qed b.qed
# info shows such an image's own fields with a warning, exit 0 (as
# qemu-img info, which does not open the chain, shows them); info
# --backing-chain refuses it.
chain_refused ()
{
    REFUSED_BY='info --backing-chain,check,map' refused "$@"
    cowbd-img info "$1.qed" > out.txt 2> err.txt ||
        fail "info $1.qed: exit $?, not 0"
    grep -q "^image: $1.qed" out.txt || fail "info $1.qed: no image shown"
    grep -Eq "warning: .*$2" err.txt || fail "info $1.qed: no warning"
}
chain_refused a 'loop'
chain_refused b 'loop'
qemu-img create -q -f qed self.qed 16M
qemu-img rebase -u -b self.qed -F qed self.qed
chain_refused self 'loop'
qemu-img create -q -f qed -u -b no-such-base.qed -F qed missing.qed 16M
chain_refused missing 'no-such-base.qed: No such file or directory'

# L1 entries (L2 table offsets) past the end of the file, misaligned, in
# the header (an image with a two-cluster header) or on the L1 table.
make_bad_l2 "$tmp"
for f in l2-past-eof l2-misaligned l2-in-header l2-on-l1; do
    sum=$(sha256sum < $f.qed)
    for cmd in map "convert -O raw"; do
        rc=0
        cowbd-img $cmd $f.qed $([ "$cmd" = map ] || echo out.raw) \
            > /dev/null 2> err.txt || rc=$?
        [ "$rc" -eq 1 ] || fail "$cmd $f.qed: exit $rc"
        one_line_error err.txt
        grep -q "$f.qed: L2 table at 0x" err.txt ||
            fail "$cmd $f.qed: '$(cat err.txt)'"
        [ ! -e out.raw ] || fail "convert left out.raw behind"
    done
    # check finds the fault (exit 2, as qemu-img check does, or 1).
    rc=0; cowbd-img check $f.qed > /dev/null 2> err.txt || rc=$?
    [ "$rc" -eq 1 ] || [ "$rc" -eq 2 ] || fail "check $f.qed: exit $rc"
    if grep -q -e Sanitizer -e 'runtime error' err.txt; then
        fail "sanitizer report: check $f.qed"
    fi
    [ "$(sha256sum < $f.qed)" = "$sum" ] || fail "$f.qed changed"
done

# The untouched image is fine, of course.
cowbd-img info good.qed > /dev/null
cowbd-img check good.qed > /dev/null
