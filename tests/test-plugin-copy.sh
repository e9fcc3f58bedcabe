#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdcopy from the plugin to a raw file gives the same bytes as qemu-img
# convert -O raw of the same overlay, and the copy stays sparse where the
# image has holes: it takes no more disk space than qemu-img's copy, and
# far less than its length.  QED and qcow2 overlays, each over a raw, a QED
# and a qcow2 backing file, and raw images.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdcopy --version
requires qemu-io --version

cd "$tmp"

for o in $FORMATS; do
    for b in $(bases_for $o); do
        rm -f out.raw ref.raw
        fresh_clone $o $b
        qemu-io -f $o -c 'write -P 0x55 200k 300k' -c 'write -z 8M 64k' \
            -c 'write -P 0x66 30M 1M' -c 'write -P 0x77 4095k 2k' \
            clone.$o > /dev/null

        serve -- "$tmp/clone.$o" --run "nbdcopy \"\$uri\" '$tmp/out.raw'" ||
            fail "$o/$b: nbdcopy failed"
        qemu-img convert -O raw clone.$o ref.raw
        cmp out.raw ref.raw || fail "$o/$b: nbdcopy and qemu-img convert differ"

        size=$(stat -c %s out.raw)
        used=$(du -k out.raw | cut -f1)
        ref=$(du -k ref.raw | cut -f1)
        echo "$o/$b: nbdcopy's copy uses $used KiB, qemu-img's $ref KiB," \
             "length $((size / 1024)) KiB"
        [ "$used" -le $((ref + 256)) ] ||
            fail "$o/$b: nbdcopy's copy is less sparse than qemu-img's"
        [ $((used * 8)) -lt $((size / 1024)) ] ||
            fail "$o/$b: nbdcopy's copy is not sparse"
    done
done
