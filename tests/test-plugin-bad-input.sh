#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Bad input: a missing file, corrupt images (truncated header, bad cluster
# size, L1 table or an L2 table past the end of the file, unknown
# incompatible feature, missing backing file, backing loop), an unknown
# format value, file= and dir= together, neither, an unknown parameter, a
# bad cache-size, a bad dir=: nbdkit exits non-zero with one line naming
# the problem, does not crash, and leaves every file as it was.  A corrupt
# L2 entry, found only when serving, fails that request with EIO and
# nothing else.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdsh --version
requires qemu-io --version

cd "$tmp"
qemu-img create -q -f qed good.qed 64M
qemu-io -f qed -c 'write -P 0x11 0 1M' good.qed > /dev/null

# patch FILE OFFSET FORMAT VALUE: overwrite a header field (struct
# format, little-endian) of a copy of good.qed.
patch ()
{
    cp good.qed "$1"
    python3 -c 'import struct, sys
f = open(sys.argv[1], "r+b")
f.seek(int(sys.argv[2]))
f.write(struct.pack("<" + sys.argv[3], int(sys.argv[4], 0)))' "$@"
}
printf 'QED\0this header is cut short' > truncated.qed
patch bad-cluster.qed 4 I 1000
patch l1-past-eof.qed 40 Q 0x40000000
patch feature.qed 16 Q 0x80
cp good.qed l2-past-eof.qed         # L1 entry 0 -> an L2 table past EOF
python3 -c 'import struct
f = open("l2-past-eof.qed", "r+b")
f.seek(40); l1 = struct.unpack("<Q", f.read(8))[0]
f.seek(l1); f.write(struct.pack("<Q", 0x40000000))'
qemu-img create -q -f qed -u -b nowhere.raw -F raw no-backing.qed 64M
qemu-img create -q -f qed loop-a.qed 64M
qemu-img create -q -f qed -b loop-a.qed -F qed loop-b.qed
qemu-img rebase -q -u -f qed -b loop-b.qed -F qed loop-a.qed
printf 'not a directory' > plain-file

sha256sum ./*.qed plain-file > sums

# bad WHAT-STDERR-MUST-MATCH PLUGIN-PARAMS...: nbdkit must fail at
# start-up with exactly one line, matching the pattern.
bad ()
{
    local pattern=$1; shift
    expect_fail nbdkit_env timeout -k 10 60 nbdkit -U - "$COWBD_PLUGIN" "$@" \
        --run 'echo served; exit 0'
    [ "$(wc -l < "$tmp/stderr")" -eq 1 ] ||
        fail "$*: expected one line of error"
    grep -q -e "$pattern" "$tmp/stderr" ||
        fail "$*: the message does not say '$pattern'"
}

bad 'missing.qed: No such file or directory' missing.qed
bad 'truncated.qed: truncated header' truncated.qed
bad 'bad-cluster.qed: invalid header: cluster_size' bad-cluster.qed
bad 'l1-past-eof.qed: L1 table .* past end of file' l1-past-eof.qed
bad 'feature.qed: unknown incompatible feature' feature.qed
bad 'l2-past-eof.qed: L2 table at 0x40000000 .*past end of file' l2-past-eof.qed
bad 'no-backing.qed: backing file .*nowhere.raw: No such file' no-backing.qed
bad 'loop.*backing chain loop' loop-a.qed
bad 'format=vmdk: unknown format' good.qed format=vmdk
bad "not a qcow2 image" good.qed format=qcow2
bad 'file= and dir= cannot be used together' good.qed dir="$tmp"
bad 'file= and dir= cannot be used together' dir="$tmp" file=good.qed
bad 'file=IMAGE) or a directory (dir=DIR) is required' format=qed
bad 'file=.*given twice' good.qed good.qed
bad "unknown parameter 'colour'" good.qed colour=blue
bad 'cache-size=lots: not a size' good.qed cache-size=lots
bad 'dir=.*/missing-dir: No such file or directory' dir=missing-dir
bad 'dir=.*/plain-file: not a directory' dir=plain-file
bad 'file=: empty path' file=

sha256sum -c --quiet sums || fail "a refused image changed"

# A corrupt L2 table entry (a data cluster past the end of the file) is
# only found when a request reaches it: that request fails with EIO, and
# the server goes on (and the file stays as it was).
cp good.qed l2-entry.qed
python3 -c 'import struct
f = open("l2-entry.qed", "r+b")
f.seek(40); l1 = struct.unpack("<Q", f.read(8))[0]
f.seek(l1); l2 = struct.unpack("<Q", f.read(8))[0]
f.seek(l2); f.write(struct.pack("<Q", 0x40000000))'
entry_sum=$(sum l2-entry.qed)
serve -- "$tmp/l2-entry.qed" --run 'nbdsh -u "$uri" -c "
import errno
for op in (lambda: h.pread(512, 0), lambda: h.pwrite(bytes(512), 4096)):
    try:
        op()
        raise SystemExit(\"a request over a corrupt L2 entry succeeded\")
    except nbd.Error as e:
        assert e.errnum == errno.EIO, e
assert h.pread(512, 1 << 20) == bytes(512)
"' 2> nbdkit.err || { cat nbdkit.err; fail "corrupt L2 entry"; }
grep -q 'l2-entry.qed: .*0x40000000' nbdkit.err ||
    { cat nbdkit.err; fail "no message for the corrupt L2 entry"; }
[ "$(sum l2-entry.qed)" = "$entry_sum" ] || fail "l2-entry.qed changed"
