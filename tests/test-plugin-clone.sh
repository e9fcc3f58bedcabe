#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The plugin's clones on demand (clone-from=, clone-dir=, max-exports=),
# the same registry code as cowbd --clone-from: 50 new names at once each
# get an overlay reading the base's bytes and passing qemu-img check; 20
# connections at once for one new name make one overlay; a template's
# names go to its folder; bad names are refused and touch no file; the
# cap holds; after a restart a name finds the same overlay; clone-from=
# without clone-dir= or with file= is refused.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdsh --version
requires jq --version

cd "$tmp"
qemu-img create -q -f qcow2 base.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x11 0 1M' -c 'write -P 0x22 8M 1M' \
    base.qcow2 > /dev/null
mkdir clones
connect="/usr/bin/python3 $abs_top_srcdir/tests/clone-connect.py"
clones=(clone-from=base.qcow2 clone-from=tp=base.qcow2 clone-dir=clones)

serve -- "${clones[@]}" --run "
    $connect \"\$unixsocket\" read $(echo $(seq -f 'p-%02g' 1 50)) &&
    $connect \"\$unixsocket\" read $(printf 'same %.0s' $(seq 20)) &&
    $connect \"\$unixsocket\" read tp/web-1" || fail "new names"
[ "$(ls clones/p-*.qcow2 | wc -l)" = 50 ] || fail "$(ls clones | wc -l) overlays"
[ "$(ls -A clones | grep -c same)" = 1 ] || fail "same: $(ls -A clones)"
[ -f clones/tp/web-1.qcow2 ] || fail "no clones/tp/web-1.qcow2"
for f in clones/*.qcow2 clones/tp/*.qcow2; do
    qemu-img check -q "$f" || fail "qemu-img check $f"
    qemu-img info --output=json "$f" |
        jq -e '."full-backing-filename" == "'"$tmp"'/base.qcow2"' >/dev/null ||
        fail "$f: wrong backing file"
done

# Bad names touch no file.
find "$tmp" | grep -v -e '/bad.log$' -e '/before$' -e '/after$' | sort > before
serve -- "${clones[@]}" --run "
    $connect \"\$unixsocket\" refuse '../x' '.hidden' 'a\\x01b' 'nope/x' \
        'tp/../x' 'a/b/c' '$(printf 'a%.0s' $(seq 300))'" 2> bad.log ||
    fail "bad names"
find "$tmp" | grep -v -e '/bad.log$' -e '/before$' -e '/after$' | sort > after
diff before after || fail "a bad name touched files"
grep -q "export '../x' (4 bytes): not a clone name" bad.log ||
    fail "no log line for ../x: $(cat bad.log)"

# The cap, and a restart that finds the same overlay.
serve -- "${clones[@]}" max-exports=52 --run "
    $connect \"\$unixsocket\" refuse q-1 &&
    nbdsh -u \"nbd+unix:///p-01?socket=\$unixsocket\" \
        -c 'h.pwrite(b\"\\x77\" * 4096, 12 << 20); h.flush()'" 2>/dev/null ||
    fail "max-exports=52 with 52 overlays on disk"
[ ! -e clones/q-1.qcow2 ] || fail "q-1 made past the cap"
serve -- "${clones[@]}" --run "
    nbdsh -u \"nbd+unix:///p-01?socket=\$unixsocket\" \
        -c 'assert h.pread(4096, 12 << 20) == b\"\\x77\" * 4096'" ||
    fail "p-01 after a restart"

# Parameters that do not go together.
expect_fail nbdkit_env nbdkit -U - "$COWBD_PLUGIN" clone-from=base.qcow2 --run true
grep -q 'needs clone-dir' "$tmp/stderr" || fail "clone-from= without clone-dir="
expect_fail nbdkit_env nbdkit -U - "$COWBD_PLUGIN" file=base.qcow2 \
    clone-from=base.qcow2 clone-dir=clones --run true
grep -q 'cannot be used with file=' "$tmp/stderr" || fail "clone-from= with file="
