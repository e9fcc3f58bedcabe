#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The ways a server is started by its client: -s under nbdcopy, systemd
# socket activation as libnbd does it, and captive --run with -U -.
. "${srcdir:-.}/server-functions.sh"
requires nbdcopy --version
requires $PYTHON -c 'import nbd'

cd "$tmp"
for fmt in $FORMATS; do
    make_image $fmt clone.$fmt
    qemu-img convert -f $fmt -O raw clone.$fmt expected.raw

    # nbdcopy's [ CMD ] (libnbd passes a socket as with socket activation).
    nbdcopy -- [ cowbd -s clone.$fmt ] out.raw 2>stderr
    check_no_sanitizer stderr
    cmp out.raw expected.raw || fail "$fmt: nbdcopy -- [ cowbd -s ] differs"
    rm -f out.raw

    # -s proper: one connection on stdin/stdout (libnbd's connect_command).
    nbdsh -c "h.connect_command(['cowbd', '-s', 'clone.$fmt'])" \
        -c "assert h.pread(4096, 15 * 1024 * 1024) == b'\x33' * 4096" \
        2>stderr
    check_no_sanitizer stderr

    # Socket activation: libnbd makes the socket and passes it as fd 3.
    nbdsh -c "h.connect_systemd_socket_activation(['cowbd', 'clone.$fmt'])" \
        -c "
assert h.get_size() == 16 * 1024 * 1024
assert h.pread(4096, 15 * 1024 * 1024) == b'\x33' * 4096
h.pwrite(b'\x77' * 4096, 8 * 1024 * 1024)
h.flush()
assert h.pread(4096, 8 * 1024 * 1024) == b'\x77' * 4096
h.shutdown()
" 2>stderr
    check_no_sanitizer stderr
    qemu-io -f $fmt -c 'read -P 0x77 8M 4k' clone.$fmt > /dev/null ||
        fail "$fmt: socket activation write lost"
    qemu-io -f raw -c 'write -P 0x77 8M 4k' expected.raw >/dev/null

    # Captive: the command's view of the server, and its exit status.
    cowbd -U - clone.$fmt --run 'nbdcopy "$uri" out.raw' 2>stderr
    check_no_sanitizer stderr
    cmp out.raw expected.raw || fail "$fmt: --run nbdcopy differs"
    rm -f out.raw expected.raw
done

rc=0
cowbd -U - clone.raw --run 'exit 3' 2>stderr || rc=$?
[ $rc -eq 3 ] || fail "--run exit status $rc, expected 3"
check_no_sanitizer stderr
cowbd -U - vm=clone.raw --run \
    'echo "$uri|$exportname|$unixsocket|${port-unset}"' > vars 2>stderr
check_no_sanitizer stderr
IFS='|' read -r u e s p < vars
[ "$e" = vm ] || fail "\$exportname=$e"
[ -S "$s" ] || [ -n "$s" ] || fail "\$unixsocket=$s"
[ "$u" = "nbd+unix:///vm?socket=$s" ] || fail "\$uri=$u"
[ "$p" = unset ] || fail "\$port set with -U: $p"
[ ! -e "$s" ] || fail "the private socket was left behind: $s"
