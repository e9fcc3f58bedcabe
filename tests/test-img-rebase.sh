#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img rebase`: in safe mode the overlay reads exactly as before
# (`qemu-img compare` against a flat copy) on its new backing file (qed or
# raw, smaller or larger, or none), copies only what differs, and passes
# `qemu-img check`; `qemu-img info` names the new backing file.  With -u
# only the header changes, as `qemu-img rebase -u` does it.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

# backing_of FILE: the backing file name qemu-img info shows.
backing_of ()
{
    qemu-img info --output=json "$1" > info.json
    json_get info.json backing-filename
}

# The old backing file, and new ones sharing its first MiB.
qemu-img create -q -f qed old.qed 4M
qemu-io -c 'write -P 0x11 0 1M' -c 'write -P 0x12 2M 1M' old.qed > /dev/null
qemu-img create -q -f qed new.qed 4M
qemu-io -c 'write -P 0x11 0 1M' -c 'write -P 0x99 2560k 64k' new.qed >/dev/null
qemu-img create -q -f raw new.raw 2M
qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x77 1M 1M' new.raw >/dev/null
qemu-img create -q -f qed new-big.qed 8M
qemu-io -c 'write -P 0x55 5M 1M' new-big.qed > /dev/null

# setup: over.qed on old.qed, 5M (1M past old.qed's end), written.
setup ()
{
    cowbd-img create -q -f qed -b old.qed over.qed 5M
    qemu-io -c 'write -P 0x21 64k 64k' -c 'write -z 2M 64k' \
        -c 'write -P 0x22 4608k 4k' over.qed > /dev/null
    qemu-img convert -O raw over.qed expect.raw
}

for target in "new.qed qed" "new.raw raw" "new-big.qed qed"; do
    set -- $target
    setup
    cowbd-img rebase -b $1 -F $2 over.qed
    qemu_same -F raw over.qed expect.raw
    qemu_check_clean over.qed
    [ "$(backing_of over.qed)" = $1 ] || fail "backing file: $(backing_of over.qed)"
done

# Only what differs is copied: the first MiB is the same in old and new.
setup
before=$(own_bytes over.qed)
cowbd-img rebase -b new.qed over.qed          # format probed and stored
qemu-img map --output=json over.qed | /usr/bin/python3 -c '
import json, sys
for e in json.load(sys.stdin):
    if e["start"] < (1 << 20) and e["depth"] == 0 and e["present"]:
        assert 65536 <= e["start"] and e["start"] + e["length"] <= 131072, e
' || fail "rebase copied ranges that read the same"
[ "$(own_bytes over.qed)" -gt "$before" ] || fail "rebase copied nothing"
qemu_same -F raw over.qed expect.raw

# No backing file at all.
setup
cowbd-img rebase -b "" over.qed
qemu_same -F raw over.qed expect.raw
[ -z "$(backing_of over.qed)" ] || fail "backing file left"
qemu_check_clean over.qed

# A backing file in another directory, named relative to the overlay.
mkdir sub
setup
mv over.qed sub/over.qed
cowbd-img rebase -u -b ../old.qed sub/over.qed      # the file moved
qemu_same -F raw sub/over.qed expect.raw
cp new.qed sub/new.qed
cowbd-img rebase -b new.qed sub/over.qed
qemu_same -F raw sub/over.qed expect.raw
[ "$(backing_of sub/over.qed)" = new.qed ] || fail "relative backing"

# Unsafe: the header only, as qemu-img rebase -u makes it.
setup
cp over.qed qemu-over.qed
qemu-img rebase -q -u -b new.qed -F qed qemu-over.qed
cowbd-img rebase -u -b new.qed -F qed over.qed
qemu_same over.qed qemu-over.qed
[ "$(backing_of over.qed)" = new.qed ] || fail "-u: backing file"
qemu_check_clean over.qed
# -u to a file that does not exist (yet) is allowed.
cowbd-img rebase -u -b later.qed over.qed
[ "$(backing_of over.qed)" = later.qed ] || fail "-u: missing backing file"

# Refused: the new backing file is missing; nothing changes.
setup
sum=$(sha256sum < over.qed)
expect_fail cowbd-img rebase -b no-such.qed over.qed
one_line_error "$tmp/stderr"
[ "$(sha256sum < over.qed)" = "$sum" ] || fail "refused rebase changed it"
# Loops: itself, or a file whose chain holds it.
cowbd-img create -q -b over.qed above.qed
for b in over.qed above.qed; do
    expect_fail cowbd-img rebase -b $b over.qed
    one_line_error "$tmp/stderr"
    grep -q loop "$tmp/stderr" || fail "rebase -b $b: no loop said"
done
expect_fail cowbd-img rebase -u -b over.qed over.qed
one_line_error "$tmp/stderr"
[ "$(sha256sum < over.qed)" = "$sum" ] || fail "refused rebase changed it"
rc=0; cowbd-img rebase over.qed 2>/dev/null || rc=$?
[ "$rc" -eq 1 ] || fail "no -b: exit $rc"
