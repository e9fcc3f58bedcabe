# SPDX-License-Identifier: BSD-3-Clause
# Sourced by test-qcow2-server.sh and test-qcow2-plugin.sh (not a test
# itself).  They define `serve IMAGE CMD`, which serves IMAGE and runs CMD
# with $uri set to its export, exiting with CMD's status, then call
# qcow2_round_trips:
#
# qcow2 overlays over raw, qed and qcow2 backing files, lazy refcounts on
# and off:
#
#  - qemu-io writes patterns (partial clusters, across clusters and L2
#    tables, zeroes, discards) through the front end, then reads them back
#    through a second one on the same file;
#  - nbdcopy copies the export out (4 connections) and the copy equals
#    the overlay read locally by qemu-img;
#  - nbdcopy copies a file into a fresh overlay (4 connections, --flush),
#    which then equals the file;
#  - after each, qemu-img check finds nothing and the overlay is marked
#    clean.

requires qemu-img --version
requires qemu-io --version
requires nbdcopy --version

cd "$tmp"

check_clean ()
{
    qemu-img check -q -f qcow2 "$1" || fail "$1: qemu-img check"
    qemu-img info --output=json "$1" | grep -q '"dirty-flag": false' ||
        fail "$1: still marked dirty"
    if grep -q -e 'Sanitizer' -e 'runtime error' "$tmp/server.log" 2>/dev/null
    then
        cat "$tmp/server.log" >&2
        fail "sanitizer report"
    fi
}

make_backing ()
{
    local fmt=$1
    qemu-img create -q -f raw base.raw 16M
    qemu-io -f raw -c 'write -P 0x11 0 16M' base.raw >/dev/null
    case $fmt in
        raw) ;;
        qed|qcow2)
            qemu-img create -q -f $fmt -b base.raw -F raw base.$fmt
            qemu-io -f $fmt -c 'write -P 0x22 4M 2M' base.$fmt >/dev/null ;;
    esac
}

qemu_io_ok ()
{
    local out=$1
    if grep -q -i -e fail -e error -e mismatch "$out"; then
        cat "$out"
        fail "qemu-io: $out"
    fi
}

qcow2_round_trips ()
{
    for fmt in raw qed qcow2; do
        for lazy in on off; do
            rm -f base.* ov.qcow2 fresh.qcow2 out.raw in.raw ref.raw
            make_backing $fmt
            qemu-img create -q -f qcow2 -o lazy_refcounts=$lazy \
                -b base.$fmt -F $fmt ov.qcow2

            # Writes through the server...
            serve ov.qcow2 'qemu-io -f raw -c "write -P 0xa5 100k 300k" \
                -c "write -P 0x5a 8M 64k" -c "write -P 0x77 511k 2k" \
                -c "write -z 12M 1M" -c "write -P 0x66 12587008 512" \
                -c "discard 14M 1M" -c "write -P 0x44 15728740 7000" \
                -c flush "$uri"' > qemu-io-w.out ||
                fail "$fmt lazy=$lazy: writes"
            qemu_io_ok qemu-io-w.out
            check_clean ov.qcow2
            # ...read back through a new one.
            serve ov.qcow2 'qemu-io -f raw -r -c "read -P 0xa5 100k 300k" \
                -c "read -P 0x5a 8M 64k" -c "read -P 0x77 511k 2k" \
                -c "read -P 0 12M 4k" -c "read -P 0x66 12587008 512" \
                -c "read -P 0x11 0 100k" -c "read -P 0x44 15728740 7000" \
                "$uri"' > qemu-io-r.out || fail "$fmt lazy=$lazy: reads"
            qemu_io_ok qemu-io-r.out

            # nbdcopy out of the export.
            serve ov.qcow2 'nbdcopy --connections=4 "$uri" out.raw' ||
                fail "$fmt lazy=$lazy: nbdcopy out"
            qemu-img convert -f qcow2 -O raw ov.qcow2 ref.raw
            cmp out.raw ref.raw || fail "$fmt lazy=$lazy: nbdcopy out differs"
            check_clean ov.qcow2

            # nbdcopy into a fresh overlay.
            head -c 4M /dev/urandom > in.raw
            truncate -s 16M in.raw
            qemu-io -f raw -c 'write -P 0x33 9M 3M' in.raw >/dev/null
            qemu-img create -q -f qcow2 -o lazy_refcounts=$lazy \
                -b base.$fmt -F $fmt fresh.qcow2
            serve fresh.qcow2 \
                'nbdcopy --connections=4 --flush in.raw "$uri"' ||
                fail "$fmt lazy=$lazy: nbdcopy in"
            qemu-img compare -q -f raw -F qcow2 in.raw fresh.qcow2 ||
                fail "$fmt lazy=$lazy: nbdcopy in differs"
            check_clean fresh.qcow2
        done
    done
}
