#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img check`: qemu-img check's exit codes (0 clean, 2 corruptions,
# 3 leaks only, 1 could not run, 63 no check for the format), its JSON
# and human output, on a clean image, an image with leaked clusters
# (appended at the end, and in the middle), a corrupt one, the repairs
# (-r leaks, -r all) checked again by qemu-img, and images left with
# NEED_CHECK set.  A check without -r never changes the file.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

# check_rc WANT ARGS...: cowbd-img check ARGS exits WANT.
check_rc ()
{
    local want=$1 rc=0; shift
    cowbd-img check "$@" > out.txt 2> err.txt || rc=$?
    [ "$rc" -eq "$want" ] || {
        cat out.txt err.txt >&2
        fail "check $*: exit $rc, not $want"
    }
    if grep -q -e Sanitizer -e 'runtime error' err.txt; then
        fail "sanitizer report: check $*"
    fi
}

# same_as_qemu FILE: JSON and human outputs equal qemu-img check's, and so
# does the exit status.
same_as_qemu ()
{
    local qrc=0 rc=0
    qemu-img check --output=json "$1" > theirs.json 2>/dev/null || qrc=$?
    cowbd-img check --output=json "$1" > ours.json 2>/dev/null || rc=$?
    [ "$rc" -eq "$qrc" ] || fail "$1: exit $rc, qemu-img check $qrc"
    sed "s/$1/FILE/" theirs.json > a; sed "s/$1/FILE/" ours.json > b
    diff -u a b || fail "$1: JSON differs from qemu-img check's"
    qemu-img check "$1" > theirs.txt 2>/dev/null || true
    cowbd-img check "$1" > ours.txt 2>/dev/null || true
    diff -u theirs.txt ours.txt || fail "$1: output differs from qemu-img's"
}

# set_need_check FILE: sets QED_F_NEED_CHECK (bit 1 of the features at 16).
set_need_check ()
{
    /usr/bin/python3 - "$1" <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(16)
    v = struct.unpack("<Q", f.read(8))[0]
    f.seek(16)
    f.write(struct.pack("<Q", v | 2))
PY
}

# --- a clean image --------------------------------------------------------
cowbd-img create -q -f qed clean.qed 16M
qemu-io -c 'write -P 1 0 200k' -c 'write -z 1M 64k' -c 'write -P 2 5M 4k' \
    clean.qed > /dev/null
sum=$(sha256sum < clean.qed)
check_rc 0 clean.qed
grep -q '^No errors were found on the image.$' out.txt || fail "clean: text"
same_as_qemu clean.qed
check_rc 0 --output=json clean.qed
[ "$(json_get out.txt check-errors)" = 0 ] || fail "check-errors"
[ "$(json_get out.txt allocated-clusters)" = 5 ] || fail "allocated-clusters"
[ "$(json_get out.txt leaks)" = "" ] || fail "leaks shown when zero"
[ "$(sha256sum < clean.qed)" = "$sum" ] || fail "check changed the file"
check_rc 0 -q clean.qed
[ ! -s out.txt ] || fail "-q printed something"

# --- leaked clusters at the end of the file ---------------------------------
cp clean.qed leaky.qed
truncate -s +192k leaky.qed
sum=$(sha256sum < leaky.qed)
check_rc 3 leaky.qed
grep -q '^3 leaked clusters were found on the image.$' out.txt ||
    fail "leaks: text"
same_as_qemu leaky.qed
[ "$(sha256sum < leaky.qed)" = "$sum" ] || fail "check changed the file"

cp leaky.qed fixed.qed
check_rc 0 -r leaks --output=json fixed.qed
[ "$(json_get out.txt leaks-fixed)" = 3 ] || fail "leaks-fixed"
[ "$(json_get out.txt leaks)" = "" ] || fail "leaks left"
[ "$(stat -c %s fixed.qed)" -eq "$(stat -c %s clean.qed)" ] ||
    fail "-r leaks did not cut the leaked clusters off"
qemu_check_clean fixed.qed
qemu_same clean.qed fixed.qed

cp leaky.qed fixed2.qed
check_rc 0 -r leaks fixed2.qed
grep -q 'The following inconsistencies were found and repaired' out.txt ||
    fail "-r leaks: no repair report"
grep -q '^    3 leaked clusters$' out.txt || fail "-r leaks: count"
grep -q '^No errors were found on the image.$' out.txt || fail "recheck"

# --- a leak in the middle: the L2 entry of a data cluster dropped ---------
# (clusters: 0 header, 1-4 L1, 5-8 L2, 9.. data in write order)
cp clean.qed middle.qed
/usr/bin/python3 - middle.qed <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(40); l1 = struct.unpack("<Q", f.read(8))[0]
    f.seek(l1); l2 = struct.unpack("<Q", f.read(8))[0]
    f.seek(l2 + 8); f.write(struct.pack("<Q", 0))   # guest cluster 1
PY
check_rc 3 middle.qed
same_as_qemu middle.qed

# --- corruption: two L2 entries pointing at the same cluster --------------
cp clean.qed corrupt.qed
/usr/bin/python3 - corrupt.qed <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(40); l1 = struct.unpack("<Q", f.read(8))[0]
    f.seek(l1); l2 = struct.unpack("<Q", f.read(8))[0]
    f.seek(l2); first = f.read(8)
    f.seek(l2 + 8 * 100); f.write(first)            # cluster 100 = cluster 0
PY
sum=$(sha256sum < corrupt.qed)
check_rc 2 corrupt.qed
grep -q 'errors were found on the image' out.txt || fail "corruption: text"
qrc=0; qemu-img check corrupt.qed > /dev/null 2>&1 || qrc=$?
[ "$qrc" -eq 2 ] || fail "qemu-img check finds no corruption ($qrc)"
[ "$(sha256sum < corrupt.qed)" = "$sum" ] || fail "check changed the file"
check_rc 0 -r all --output=json corrupt.qed
[ "$(json_get out.txt corruptions-fixed)" -ge 1 ] || fail "corruptions-fixed"
qemu_check_clean corrupt.qed
check_rc 0 corrupt.qed

# --- NEED_CHECK set ---------------------------------------------------------
cp clean.qed dirty.qed
set_need_check dirty.qed
sum=$(sha256sum < dirty.qed)
cowbd-img info dirty.qed | grep -q '^cleanly shut down: no$' ||
    fail "info does not show NEED_CHECK"
cowbd-img info --output=json dirty.qed > info.json
[ "$(json_get info.json dirty-flag)" = True ] || fail "dirty-flag"
check_rc 0 dirty.qed
check_rc 0 --output=json dirty.qed
[ "$(sha256sum < dirty.qed)" = "$sum" ] || fail "check changed the file"
check_rc 0 -r leaks dirty.qed
cowbd-img info --output=json dirty.qed > info.json
[ "$(json_get info.json dirty-flag)" = False ] ||
    fail "check -r did not clear NEED_CHECK"
qemu_check_clean dirty.qed

# NEED_CHECK and leaks: reported as they are, then repaired.
cp leaky.qed dirty-leaky.qed
set_need_check dirty-leaky.qed
check_rc 3 --output=json dirty-leaky.qed
[ "$(json_get out.txt leaks)" = 3 ] || fail "dirty-leaky: leaks"
check_rc 0 -r leaks dirty-leaky.qed
qemu_check_clean dirty-leaky.qed
cowbd-img info dirty-leaky.qed | grep -q 'cleanly shut down' &&
    fail "dirty-leaky: NEED_CHECK left"

# A read-write open by another command repairs it automatically.
cp leaky.qed auto.qed
set_need_check auto.qed
cowbd-img rebase -q -u -b '' auto.qed
check_rc 0 auto.qed
cowbd-img info auto.qed | grep -q 'cleanly shut down' &&
    fail "auto: NEED_CHECK left after a read-write open"
qemu_check_clean auto.qed

# --- could not run, no check ------------------------------------------------
check_rc 1 no-such-file.qed
one_line_error err.txt
cowbd-img create -q -f raw plain.raw 1M
check_rc 63 plain.raw
one_line_error err.txt
check_rc 63 --output=json plain.raw
qrc=0; qemu-img check plain.raw > /dev/null 2>&1 || qrc=$?
[ "$qrc" -eq 63 ] || fail "qemu-img check raw: $qrc"
rc=0; cowbd-img check -r nothing clean.qed 2>/dev/null || rc=$?
[ "$rc" -eq 1 ] || fail "-r nothing: exit $rc"
