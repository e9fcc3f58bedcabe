#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Data written through the plugin with qemu-io (patterns, unaligned, FUA,
# write zeroes, discard) reads back the same through the plugin after an
# nbdkit restart and through qemu's own driver from the image file; what
# nbdsh reads equals what qemu-img reads; qemu-img check finds nothing
# wrong and the backing file is unchanged.  QED and qcow2 overlays over
# raw, QED and qcow2 backing files, and raw images.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires qemu-io --version
requires nbdsh --version

cd "$tmp"

cat > writes <<'EOF2'
write -P 0xa1 0 4k
write -P 0xa2 100000 3000
write -P 0xa3 2097000 1M
write -f -P 0xa4 20M 200k
write -z 8M 64k
write -P 0xa5 40M 128k
discard 40M 64k
write -P 0xa6 67108000 864
flush
EOF2
# What must read back: the writes, and the backing data around them.
# (The discarded range may read as zeros or as what was written there.)
cat > reads <<'EOF2'
read -P 0xa1 0 4k
read -P 0x11 4k 95904
read -P 0xa2 100000 3000
read -P 0x11 103000 945576
read -P 0x00 1M 1048040
read -P 0xa3 2097000 1M
read -P 0x00 3145576 1048
read -P 0x00 3M 4k
read -P 0x00 8M 64k
read -P 0x33 8454144 448k
read -P 0xa4 20M 200k
read -P 0xa5 42008576 64k
read -P 0x44 63M 1047712
read -P 0xa6 67108000 864
EOF2

# qio.sh CMDFILE QEMU-IO-ARGS...: runs the commands of CMDFILE; fails on
# any failed command or pattern mismatch.
cat > qio.sh <<'EOF2'
#!/usr/bin/env bash
cmds=()
while IFS= read -r l; do cmds+=(-c "$l"); done < "$1"
shift
out=$(qemu-io "$@" "${cmds[@]}" 2>&1)
rc=$?
if [ $rc -ne 0 ] || grep -qi -e 'verification failed' -e 'error' <<< "$out"
then
    printf '%s\n' "$out" >&2
    exit 1
fi
EOF2
chmod +x qio.sh

for o in $FORMATS; do
    for b in $(bases_for $o); do
        fresh_clone $o $b

        serve -- "$tmp/clone.$o" \
            --run "'$tmp/qio.sh' '$tmp/writes' -f raw \"\$uri\"" ||
            fail "$o/$b: qemu-io writes through the plugin failed"
        serve -- "$tmp/clone.$o" \
            --run "'$tmp/qio.sh' '$tmp/reads' -f raw \"\$uri\"" ||
            fail "$o/$b: qemu-io reads through the restarted plugin"
        ./qio.sh reads -f $o clone.$o ||
            fail "$o/$b: qemu-io reads of the overlay file"

        # nbdsh sees what qemu-img sees.
        qemu-img convert -O raw clone.$o qemu.raw
        serve -- "$tmp/clone.$o" --run "nbdsh -u \"\$uri\" -c '
want = open(\"$tmp/qemu.raw\", \"rb\").read()
assert h.pread(len(want), 0) == want, \"nbdsh and qemu-img differ\"
'" || fail "$o/$b: nbdsh reads other data than qemu-img"

        clone_intact $o $b
    done
done
