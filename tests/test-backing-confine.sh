#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Backing file confinement.  A directory holds images whose backing file
# leads out of it to a host file (secret.txt, made by the test): by an
# absolute path, by ../, through a symbolic link, and a probed image
# (an image header as a guest would write it) naming it; and a symbolic
# link out of it as an image of its own.  Served as a directory (cowbd
# dir=, the plugin's dir=) none of them is listed, described or served,
# and -v logs one line naming each with the path it asked for; with
# --backing-dir (backing-dir=) the same images named on the command
# line are refused at start-up; named without a policy they are served
# (the user named them), and a wider --backing-dir lets the directory's
# images through.  An image whose backing file is an NBD URI is refused
# wherever a policy applies, before any connection.
. "${srcdir:-.}/server-functions.sh"
requires nbdinfo --version
requires nbdsh --version
requires qemu-io --version

cd "$tmp"
probe_fixtures                  # secret.txt, and hdr.qed naming it
mkdir d
qemu-img create -q -f raw d/base.raw 1M
qemu-io -f raw -c 'write -P 0x77 0 1M' d/base.raw > /dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw d/good.qcow2
qemu-img create -q -f qcow2 -b "$tmp/secret.txt" -F raw d/abs.qcow2
qemu-img create -q -f qcow2 -b ../secret.txt -F raw d/dotdot.qcow2
ln -s ../secret.txt d/link.raw
qemu-img create -q -f qcow2 -b link.raw -F raw d/sym.qcow2
cp hdr.qed d/probed.img
# A remote backing image: the server would connect where the file says.
qemu-img create -q -f qcow2 -u -b "nbd+unix:///x?socket=$tmp/remote.sock" \
    -F raw d/remote.qcow2 1M
BAD="abs.qcow2 dotdot.qcow2 sym.qcow2 probed.img"

# The directory as served: only base.raw and good.qcow2, no description
# naming the secret.
check_list ()
{
    local list=$1
    grep -q 'secret' "$list" && fail "$2: a description names the secret"
    [ "$(grep '^export=' "$list" | tr '\n' ' ')" = \
      'export="base.raw": export="good.qcow2": ' ] ||
        { cat "$list"; fail "$2: the exports listed are not the confined ones"; }
}

# No export of the directory reads the secret.
check_no_secret ()
{
    local name
    for name in $BAD link.raw; do
        ! nbdsh -u "$(uri $name)" -c 'print(h.pread(1024, 0))' \
            > read.txt 2>&1 || fail "$1: export $name is served"
        ! grep -q 'TOP SECRET' read.txt || fail "$1: $name served the secret"
    done
    nbdsh -u "$(uri good.qcow2)" \
        -c 'assert h.pread(4096, 0) == b"\x77" * 4096' ||
        fail "$1: good.qcow2 does not read its backing file"
}

# Server, dir=: the default confinement is the directory.
start_server -v dir="$tmp/d"
nbdinfo --list "$(uri)" > list.txt
check_list list.txt "cowbd dir="
check_no_secret "cowbd dir="
stop_server
for name in $BAD; do
    grep -q "$name: backing file [^ ]*secret.txt" server.log ||
        grep -q "$name: backing file link.raw resolves to $tmp/secret.txt" \
            server.log || fail "cowbd dir=: no line about $name"
done
grep -q "link.raw resolves to $tmp/secret.txt" server.log ||
    fail "cowbd dir=: no line about link.raw"
grep -q "remote.qcow2: backing file nbd+unix:///x?socket=$tmp/remote.sock is a remote image, not allowed" \
    server.log || fail "cowbd dir=: no line refusing remote.qcow2"

# Server, command line with --backing-dir: refused at start-up, one line
# naming the image and the path.
for name in $BAD; do
    rc=0
    timeout -k 1 30 cowbd --backing-dir="$tmp/d" -U "$tmp/sock" "d/$name" \
        2> err.txt || rc=$?
    check_no_sanitizer err.txt
    [ $rc -eq 1 ] || fail "--backing-dir: d/$name: exit $rc"
    [ "$(wc -l < err.txt)" -eq 1 ] &&
        grep -q "d/$name: backing file .*outside" err.txt ||
        { cat err.txt; fail "--backing-dir: d/$name: not one line naming it"; }
done
rc=0
timeout -k 1 30 cowbd --backing-dir="$tmp/d" -U "$tmp/sock" d/remote.qcow2 \
    2> err.txt || rc=$?
[ $rc -eq 1 ] && [ "$(wc -l < err.txt)" -eq 1 ] &&
    grep -q "d/remote.qcow2: backing file nbd+unix:.* is a remote image" \
        err.txt || { cat err.txt; fail "--backing-dir: d/remote.qcow2"; }
start_server --backing-dir="$tmp/d" d/good.qcow2
nbdsh -u "$(uri good.qcow2)" -c 'assert h.pread(512, 0) == b"\x77" * 512' ||
    fail "--backing-dir: good.qcow2 refused"
stop_server

# Named on the command line without a policy: trusted, as before.
start_server -r d/abs.qcow2 d/dotdot.qcow2 d/sym.qcow2
for name in abs.qcow2 dotdot.qcow2 sym.qcow2; do
    nbdsh -u "$(uri $name)" -c 'assert b"TOP SECRET" in h.pread(4096, 0)' ||
        fail "no policy: $name is not served as named"
done
stop_server

# A wider --backing-dir lets the directory's images through; another
# one leaves the directory itself allowed.
start_server --backing-dir="$tmp" dir="$tmp/d"
nbdinfo --list "$(uri)" > list.txt
grep -q '^export="abs.qcow2"' list.txt ||
    fail "--backing-dir=$tmp: abs.qcow2 not listed"
stop_server
mkdir other
start_server --backing-dir="$tmp/other" dir="$tmp/d"
nbdinfo --list "$(uri)" > list.txt
check_list list.txt "--backing-dir=other dir="
stop_server

if [ -f "${COWBD_PLUGIN:-}" ] && nbdkit --version > /dev/null 2>&1; then
    plugin ()
    {
        nbdkit_env timeout -k 10 120 nbdkit -U - "$COWBD_PLUGIN" "$@"
    }
    plugin dir="$tmp/d" --run 'nbdinfo --list "$uri"' > list.txt ||
        fail "plugin dir=: nbdkit failed"
    check_list list.txt "plugin dir="
    for name in $BAD link.raw; do
        ! plugin dir="$tmp/d" --run "nbdsh -u \"nbd+unix:///$name?socket=\$unixsocket\" -c 'print(h.pread(1024, 0))'" \
            > read.txt 2>&1 || fail "plugin dir=: $name is served"
        ! grep -q 'TOP SECRET' read.txt || fail "plugin dir=: $name served the secret"
    done
    for name in $BAD; do
        ! plugin file="d/$name" backing-dir="$tmp/d" --run true 2> err.txt ||
            fail "plugin backing-dir=: $name not refused"
        grep -q "d/$name: backing file .*outside" err.txt ||
            { cat err.txt; fail "plugin backing-dir=: no line naming $name"; }
    done
    ! plugin file=d/remote.qcow2 backing-dir="$tmp/d" --run true 2> err.txt ||
        fail "plugin backing-dir=: remote.qcow2 not refused"
    grep -q "d/remote.qcow2: backing file nbd+unix:.* is a remote image" \
        err.txt || { cat err.txt; fail "plugin backing-dir=: remote.qcow2"; }
    plugin -r file=d/abs.qcow2 --run 'nbdsh -u "$uri" -c "assert b\"TOP SECRET\" in h.pread(4096, 0)"' ||
        fail "plugin, no policy: abs.qcow2 is not served as named"
fi
