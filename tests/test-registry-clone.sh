#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Clones on demand (cowbd --clone-from --clone-dir): 200 new names
# connected at once each get their own overlay, which reads the base's
# bytes and passes qemu-img check; 20 connections at once for one new
# name make one overlay; a template's names go to its folder; bad names
# (../x, .hidden, 5000 bytes, control characters, an unknown template)
# are refused and touch no file; --max-exports caps the count; a
# SIGKILL during a burst of creations leaves no half-made file under
# any name (the temporaries go at the next start); after a restart a
# name finds the same overlay; an overlay dropped into the folder whose
# backing file lies outside it and the bases' folders is refused.
. "${srcdir:-.}/server-functions.sh"
requires nbdsh --version

cd "$tmp"
qemu-img create -q -f qcow2 base.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x11 0 1M' -c 'write -P 0x22 8M 1M' \
    base.qcow2 > /dev/null
sum_base=$(sha256sum < base.qcow2)
mkdir clones
connect () { timeout 300 /usr/bin/python3 "$abs_top_srcdir/tests/clone-connect.py" "$tmp/sock" "$@"; }
serve () { start_server --clone-from=base.qcow2 --clone-from=tp=base.qcow2 \
               --clone-dir=clones "$@"; }
# check_overlays: every overlay in clones/ passes qemu-img check and
# names base.qcow2 as its backing file.
check_overlays ()
{
    local f
    for f in $(find clones -name '*.qcow2'); do
        qemu-img check -q "$f" || fail "qemu-img check $f"
        qemu-img info --output=json "$f" |
            jq -e '."full-backing-filename" == "'"$tmp"'/base.qcow2"' \
            >/dev/null || fail "$f: wrong backing file"
    done
}

# ---- 200 new names at once ---------------------------------------------------
serve
names=$(seq -f 'vm-%03g' 1 200)
connect read $names || fail "200 new names"
[ "$(ls clones/vm-*.qcow2 | wc -l)" = 200 ] || fail "$(ls clones | wc -l) overlays"

# ---- 20 connections for one new name -------------------------------------------
connect read $(for i in $(seq 20); do echo same; done) || fail "20 x same"
[ "$(ls -a clones | grep -c same)" = 1 ] || fail "same: $(ls -a clones | grep same)"

# ---- a template's names ----------------------------------------------------------
connect read tp/web-1 tp/web-2 || fail "template names"
[ -f clones/tp/web-1.qcow2 ] && [ -f clones/tp/web-2.qcow2 ] ||
    fail "template overlays not in clones/tp"

# ---- bad names ----------------------------------------------------------------------
find "$tmp" -path "$tmp/server.log" -prune -o -path "$tmp/before" -prune -o -path "$tmp/after" -prune -o -print | sort > before
long=$(printf 'a%.0s' $(seq 4096))
connect refuse '../x' '.hidden' 'a\x01b' 'tab\tx' 'nope/x' 'tp/../x' \
    'tp/.x' 'a/b/c' '/abs' "$long" 'sp ace' 'tp/' || fail "bad names"
# 5000 bytes: more than libnbd sends, so by hand.
/usr/bin/python3 - "$tmp/sock" <<'EOF2' || fail "a 5000-byte name"
import struct, sys
sys.path.insert(0, __import__("os").environ["abs_top_srcdir"] + "/tests")
import nbdraw
s = nbdraw.connect(sys.argv[1], 30)
nbdraw.greet(s)
name = b"b" * 5000
nbdraw.send_opt(s, 7, struct.pack(">I", len(name)) + name + b"\0\0")  # GO
opt, rep, _ = nbdraw.read_reply(s)
assert rep == 0x80000006, "5000-byte name: reply 0x%x" % rep   # ERR_UNKNOWN
EOF2
find "$tmp" -path "$tmp/server.log" -prune -o -path "$tmp/before" -prune -o -path "$tmp/after" -prune -o -print | sort > after
diff before after || fail "a bad name touched files"
for n in '../x' '.hidden' 'nope/x' 'bbbbbbbb'; do
    grep -q -F "export '$n" server.log || fail "no log line for '$n'"
done
stop_server

# ---- --max-exports ---------------------------------------------------------------------
rm -rf clones; mkdir clones
serve --max-exports=3
connect read m1 m2 m3 || fail "three clones under --max-exports=3"
connect refuse m4 || fail "a fourth clone past --max-exports=3"
[ ! -e clones/m4.qcow2 ] || fail "m4.qcow2 made past the cap"
grep -q 'limit of 3 exports' server.log || fail "the cap was not logged"
stop_server

# ---- SIGKILL during a burst of creations -------------------------------------------------
rm -rf clones; mkdir clones
serve
connect any $(seq -f 'k-%03g' 1 150) > burst.out 2>&1 & burst=$!
cleanup_fn "kill $burst 2>/dev/null"
for i in $(seq 200); do
    [ "$(ls clones | wc -l)" -ge 20 ] && break
    sleep 0.01
done
kill -KILL "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=
wait "$burst" || true
made=$(ls clones | grep -c '^k-.*\.qcow2$' || true)
echo "$test_name: $made of 150 overlays made before the kill, $(ls -A clones | grep -c tmp || true) temporaries ($(cat burst.out))"
check_overlays
# The next start removes what the kill left half-made.
serve
[ -z "$(ls -A clones | grep -v '^tp$' | grep -v '^k-[0-9]*\.qcow2$')" ] ||
    fail "left in clones/ after a restart: $(ls -A clones)"
connect read $(seq -f 'k-%03g' 1 150) || fail "names after the kill"

# ---- a restart finds the same overlay ---------------------------------------------------
ino=$(stat -c %i clones/k-001.qcow2)
nbdsh -u "$(uri k-001)" -c 'h.pwrite(b"\x77" * 4096, 12 << 20); h.flush()'
stop_server
serve
nbdsh -u "$(uri k-001)" -c 'assert h.pread(4096, 12 << 20) == b"\x77" * 4096' ||
    fail "k-001 after a restart"
[ "$(stat -c %i clones/k-001.qcow2)" = "$ino" ] || fail "k-001 was made again"
stop_server

check_overlays
[ "$(sha256sum < base.qcow2)" = "$sum_base" ] || fail "base.qcow2 changed"

# ---- an overlay dropped into the folder may not lead out of it ---------------
# (Out of the clone folder and the base's folder: here b2/ and c2/.)
mkdir b2 c2 outside
cp base.qcow2 b2/base.qcow2
echo "TOP SECRET" > outside/secret.raw
truncate -s 1M outside/secret.raw
qemu-img create -q -f qcow2 -b "$tmp/outside/secret.raw" -F raw \
    c2/evil.qcow2 1M
start_server --clone-from=b2/base.qcow2 --clone-dir=c2
if nbdsh -u "$(uri evil)" -c 'print(h.pread(512, 0))' > read.txt 2>&1 ||
        grep -q 'TOP SECRET' read.txt; then
    fail "a dropped overlay read a file outside the clone folder"
fi
nbdsh -u "$(uri fresh)" -c 'h.pread(512, 0)' ||
    fail "a new clone next to the refused one"
stop_server
grep -q "evil.qcow2: backing file .*secret.raw.* outside" "$tmp/server.log" ||
    fail "the dropped overlay was refused without a line naming it"
