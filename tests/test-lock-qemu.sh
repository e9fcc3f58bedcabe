#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Image locks against QEMU's, both ways.  cowbd takes the byte-range locks
# qemu-img and qemu-nbd take, so:
#  - while cowbd serves an overlay read-write, qemu-img info needs -U,
#    qemu-nbd cannot serve it, qemu-img commit cannot write it nor its
#    base (the overlay reads the base), and a second cowbd refuses to
#    start with one line naming the file;
#  - while qemu-nbd serves an image read-write, cowbd and nbdkit cowbd
#    refuse it, and while qemu-nbd serves it read-only, cowbd serves it
#    read-only but not read-write;
#  - readers share: two read-only cowbd's, or qemu-img info beside one.
# Every refused attempt leaves the files as they were.
. "${srcdir:-.}/server-functions.sh"
requires qemu-nbd --version
requires qemu-io --version
cd "$tmp"

# expect_in_use FILE CMD...: CMD (a server, bounded in time should it
# start after all) must fail with one line of error output naming FILE
# and saying it is in use.
expect_in_use ()
{
    local file=$1; shift
    expect_fail timeout 20 "$@"
    [ "$(wc -l < "$tmp/stderr")" -eq 1 ] || fail "not one line: $*"
    grep -q "$file: image is in use" "$tmp/stderr" ||
        fail "$*: does not say $file is in use"
}

# QEMU's refusals say "Failed to get ... lock".
expect_qemu_lock_error ()
{
    expect_fail timeout 20 "$@"
    grep -q 'Failed to get .*lock' "$tmp/stderr" ||
        fail "$*: not refused for a lock"
}

# make_chain FMT [BASEFMT]: a base with data (base.raw, or base.qcow2),
# two overlays of it (ov.FMT is served, ov2.FMT is not).
make_chain ()
{
    local fmt=$1 bfmt=${2:-raw}
    rm -f base.$bfmt ov.$fmt ov2.$fmt
    qemu-img create -q -f $bfmt base.$bfmt 4M
    qemu-io -f $bfmt -c 'write -P 0x11 0 4M' base.$bfmt > /dev/null
    qemu-img create -q -f $fmt -b base.$bfmt -F $bfmt ov.$fmt
    qemu-img create -q -f $fmt -b base.$bfmt -F $bfmt ov2.$fmt
    qemu-io -f $fmt -c 'write -P 0x22 1M 64k' ov2.$fmt > /dev/null
}

for fmt in qcow2 qed; do
    make_chain $fmt
    sum_base=$(sha256sum < base.raw)
    sum_ov2=$(sha256sum < ov2.$fmt)

    # cowbd serves ov read-write.
    start_server "$tmp/ov.$fmt"
    nbdsh -u "$(uri)" -c 'h.pwrite(b"\x33" * 4096, 0); h.flush()'
    hold_connection "$(uri)"    # an idle export holds no lock

    expect_qemu_lock_error qemu-img info ov.$fmt
    qemu-img info -U ov.$fmt | grep -q "^file format: $fmt" ||
        fail "$fmt: qemu-img info -U on the served overlay"
    expect_qemu_lock_error qemu-nbd -k "$tmp/q.sock" -f $fmt ov.$fmt
    # Commit writes the overlay and its base: refused on the overlay
    # itself, and on the sibling ov2 because the served ov reads base.
    expect_qemu_lock_error qemu-img commit ov.$fmt
    expect_qemu_lock_error qemu-img commit ov2.$fmt
    grep -q 'base.raw' "$tmp/stderr" || fail "commit ov2: base not named"
    expect_qemu_lock_error qemu-io -f raw -c 'write 0 4k' base.raw
    [ "$(sha256sum < base.raw)" = "$sum_base" ] || fail "base changed"
    [ "$(sha256sum < ov2.$fmt)" = "$sum_ov2" ] || fail "ov2 changed"

    # A second cowbd, read-write or read-only: refused at start.
    expect_in_use "ov.$fmt" cowbd -U "$tmp/sock2" "$tmp/ov.$fmt"
    expect_in_use "ov.$fmt" cowbd -r -U "$tmp/sock2" "$tmp/ov.$fmt"
    [ ! -S "$tmp/sock2" ] || fail "a second cowbd started"

    release_connection
    stop_server
    # Locks go with the server: everything works again.
    qemu-img info ov.$fmt > /dev/null
    qemu-img check -q ov.$fmt
    qemu-io -f $fmt -c 'read -P 0x33 0 4k' -c 'read -P 0x11 4k 4k' \
        ov.$fmt | grep -q 'verification failed' && fail "ov: data"
    qemu-img commit -q ov2.$fmt
    qemu-io -f raw -c 'read -P 0x22 1M 64k' base.raw |
        grep -q 'verification failed' && fail "commit after the server"
done

# qemu-nbd serves an image read-write: cowbd and the plugin refuse it.
# (Its base is qcow2: qemu forbids writers of a qcow2 base, not of a
# raw one, whose format node passes the overlay's "shared" through.)
make_chain qcow2 qcow2
sum=$(sha256sum < ov.qcow2)
rm -f "$tmp/q.sock"
qemu-nbd -k "$tmp/q.sock" -f qcow2 ov.qcow2 2> qemu-nbd.log &
qpid=$!
cleanup_fn "kill $qpid 2>/dev/null"
wait_for_socket "$tmp/q.sock"
wait_for_lock ov.qcow2
expect_in_use ov.qcow2 cowbd -U "$tmp/sock2" "$tmp/ov.qcow2"
expect_in_use ov.qcow2 cowbd -r -U "$tmp/sock2" "$tmp/ov.qcow2"
[ ! -S "$tmp/sock2" ] || fail "cowbd started beside qemu-nbd"
if [ -f "${COWBD_PLUGIN:-}" ] && nbdkit --version > /dev/null 2>&1; then
    expect_fail nbdkit_env timeout 60 nbdkit -U - "$COWBD_PLUGIN" \
        file="$tmp/ov.qcow2" --run 'nbdinfo "$uri"'
    grep -q "ov.qcow2: image is in use" "$tmp/stderr" ||
        fail "nbdkit cowbd: does not say ov.qcow2 is in use"
    [ "$(grep -c 'image is in use' "$tmp/stderr")" -eq 1 ] ||
        fail "nbdkit cowbd: not one line"
fi
# The base read by qemu-nbd's overlay cannot be served writable either.
expect_in_use base.qcow2 cowbd -U "$tmp/sock2" "$tmp/base.qcow2"
# qemu-nbd's writes are all there once it is gone.
qemu-io -f raw -c 'write -P 0x44 0 64k' \
    "nbd+unix:///?socket=$tmp/q.sock" > /dev/null
kill $qpid 2>/dev/null || true  # (it may have exited after its client)
wait $qpid || true
[ "$(sha256sum < ov.qcow2)" != "$sum" ] || fail "qemu-nbd wrote nothing"
qemu-img check -q ov.qcow2

# qemu-nbd serves it read-only: cowbd -r may serve it too, not cowbd.
rm -f "$tmp/q.sock"
qemu-nbd -r -k "$tmp/q.sock" -f qcow2 ov.qcow2 2> qemu-nbd.log &
qpid=$!
cleanup_fn "kill $qpid 2>/dev/null"
wait_for_socket "$tmp/q.sock"
wait_for_lock ov.qcow2
expect_in_use ov.qcow2 cowbd -U "$tmp/sock2" "$tmp/ov.qcow2"
cat > read44.py <<'EOF2'
assert h.is_read_only()
assert h.pread(64 * 1024, 0) == b"\x44" * 64 * 1024
EOF2
timeout 60 cowbd -r -U - "$tmp/ov.qcow2" --run 'nbdsh -u "$uri" -c "exec(open(\"read44.py\").read())"' ||
    fail "cowbd -r beside qemu-nbd -r"
kill $qpid 2>/dev/null || true  # (it may have exited after its client)
wait $qpid || true

# Readers share: two cowbd -r, and qemu-img info beside them.
start_server -r "$tmp/ov.qcow2"
hold_connection "$(uri)"
timeout 60 cowbd -r -U - "$tmp/ov.qcow2" \
      --run 'qemu-img info ov.qcow2 > /dev/null' ||
    fail "a second reader beside cowbd -r"
expect_qemu_lock_error qemu-io -f qcow2 -c 'write 0 4k' ov.qcow2
release_connection
stop_server
