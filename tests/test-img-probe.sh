#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Probing safety in cowbd-img.  `commit` into a raw backing file whose
# format the overlay does not record (so it is probed) warns that probing
# raw is unsafe and refuses to write a qcow2 header into its first
# sector, changing nothing; with the format recorded as raw the same
# commit works.  An overlay that records no backing format is not
# followed into a backing file that probes as a format with a backing
# file of its own (`info` fails in one line); `-f raw` reads a file with
# a forged header as the bytes it is.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

printf 'TOP SECRET %.0s' $(seq 1000) > secret.txt
truncate -s 1M secret.txt
qemu-img create -q -f qcow2 -b "$tmp/secret.txt" -F raw hdr.qcow2 1M
n=$(stat -c %s hdr.qcow2)

qemu-img create -q -f raw base.raw 1M
qemu-io -f raw -c 'write -P 0x5a 0 1M' base.raw > /dev/null
cp base.raw orig.raw

# The guest of the overlay writes a qcow2 header at its offset 0.
cowbd-img create -q -f qcow2 -u -b base.raw over.qcow2 1M
qemu-img info --output=json over.qcow2 > info.json
[ -z "$(json_get info.json backing-filename-format)" ] ||
    fail "over.qcow2 records a backing format"
qemu-io -f qcow2 -c "write -s hdr.qcow2 0 $n" over.qcow2 > /dev/null

expect_fail cowbd-img commit over.qcow2
grep -q "warning: .*base.raw.*probing guessed raw" "$tmp/stderr" ||
    fail "commit: no warning that probing raw is unsafe"
grep -q "refused: the first sector would then probe as qcow2" "$tmp/stderr" ||
    fail "commit: no reason for the refusal"
cmp base.raw orig.raw || fail "the refused commit changed base.raw"
[ "$(qemu-img info --output=json base.raw | json_get /dev/stdin format)" = raw ] ||
    fail "base.raw no longer probes as raw"

# Recorded as raw: no probing, no warning, the commit goes through.
cowbd-img rebase -q -u -b base.raw -F raw over.qcow2
cowbd-img commit -q over.qcow2 2> commit.err || { cat commit.err >&2; fail "commit -F raw"; }
! grep -q "probing guessed raw" commit.err || fail "warning with -F raw"
cmp -n $n base.raw hdr.qcow2 || fail "commit did not write the header bytes"

# base.raw now carries a real qcow2 header naming the secret.  An overlay
# that records no format for it does not follow it.
cowbd-img create -q -f qcow2 -u -b base.raw top.qcow2 1M
# (info shows the overlay itself with the refusal as a warning; with
# --backing-chain it fails.)
expect_fail cowbd-img info --backing-chain top.qcow2
grep -q "backing file .*base.raw probes as qcow2 with a backing file of its own" \
    "$tmp/stderr" || fail "info: no reason given"
[ "$(grep -c . "$tmp/stderr")" -eq 1 ] || fail "info: more than one line"
cowbd-img info top.qcow2 2> err.txt > out.txt || fail "info top.qcow2"
grep -q "warning: .*base.raw probes as qcow2" err.txt || fail "info: no warning"
grep -q secret out.txt && fail "info shows the secret's name"
# A QED overlay (which can record raw only) is refused the same way.
cowbd-img create -q -f qed -u -b base.raw top.qed 1M
expect_fail cowbd-img info --backing-chain top.qed

# -f raw reads the file as the bytes it is.
cowbd-img info -f raw --output=json base.raw > info.json
[ "$(json_get info.json format)" = raw ] || fail "-f raw: not raw"
[ -z "$(json_get info.json backing-filename)" ] || fail "-f raw: a backing file"
# With the format recorded as raw, the overlay reads those bytes too.
cowbd-img rebase -q -u -b base.raw -F raw top.qcow2
qemu-img compare -f qcow2 -F raw top.qcow2 base.raw > /dev/null ||
    fail "top.qcow2 does not read base.raw's bytes"
cowbd-img compare -f qcow2 -F raw top.qcow2 base.raw > /dev/null ||
    fail "cowbd-img compare: top.qcow2 does not read base.raw's bytes"

# A chain of QED clones, found only by probing, still opens.
qemu-img create -q -f qed -b base.raw -F raw c1.qed
qemu-img create -q -f qed -b c1.qed -F qed c2.qed
cowbd-img info --output=json --backing-chain c2.qed > chain.json ||
    fail "QED chain refused"
