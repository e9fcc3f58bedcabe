#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# TLS with a pre-shared key (psktool-made): nbdinfo and nbdcopy work, the
# client's identity is logged with -v, a wrong key or an unknown user is
# refused; bad key files and contradictory options stop the start-up with
# one line.
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/tls-functions.sh"
requires nbdinfo --version
requires nbdcopy --version

make_psk "$tmp/keys.psk" alice
make_psk "$tmp/wrong.psk" alice
make_psk "$tmp/bob.psk" bob
make_image qed img.qed
psk_uri () { echo "nbds+unix://$1@/?socket=$tmp/sock&tls-psk-file=$2"; }

start_server -v --tls=require --tls-psk="$tmp/keys.psk" "$tmp/img.qed"
nbdinfo "$(psk_uri alice "$tmp/keys.psk")" | grep -q 'with TLS' ||
    fail "PSK client"
nbdcopy "$(psk_uri alice "$tmp/keys.psk")" "$tmp/copy.raw"
# -U: the server holds the image's locks (and writes nothing now).
qemu-img compare -U -q -f raw -F qed "$tmp/copy.raw" "$tmp/img.qed" ||
    fail "nbdcopy over TLS-PSK differs"
if nbdinfo "$(psk_uri alice "$tmp/wrong.psk")" > /dev/null 2>&1; then
    fail "a wrong key was accepted"
fi
if nbdinfo "$(psk_uri bob "$tmp/bob.psk")" > /dev/null 2>&1; then
    fail "an unknown user was accepted"
fi
stop_server
grep -q 'PSK identity alice' "$tmp/server.log" ||
    { cat "$tmp/server.log"; fail "-v did not log the client's identity"; }
# Where the CPU has AES instructions the default priorities pick AES-GCM,
# which costs a third of ChaCha20-Poly1305's CPU there, although libnbd
# offers ChaCha20 first; an explicit --tls-priority is taken as given.
if grep -qw aes /proc/cpuinfo && grep -qw pclmulqdq /proc/cpuinfo; then
    grep -q 'TLS1.3.*AES-[0-9]*-GCM' "$tmp/server.log" ||
        { cat "$tmp/server.log"; fail "default priorities: not AES-GCM"; }
fi
start_server -v --tls=require --tls-psk="$tmp/keys.psk" \
    --tls-priority=NORMAL:-AES-128-GCM:-AES-256-GCM "$tmp/img.qed"
nbdinfo "$(psk_uri alice "$tmp/keys.psk")" > /dev/null ||
    fail "PSK client without AES-GCM"
stop_server
grep -q 'TLS1.3.*CHACHA20-POLY1305' "$tmp/server.log" ||
    { cat "$tmp/server.log"; fail "--tls-priority without AES-GCM ignored"; }

# Start-up errors: exit 1, one line naming the problem.
bad ()
{
    local want=$1; shift
    local rc=0
    cowbd -U "$tmp/bad.sock" "$@" "$tmp/img.qed" > /dev/null 2> "$tmp/err" ||
        rc=$?
    [ "$rc" -eq 1 ] || fail "cowbd $*: exit $rc, expected 1"
    [ "$(grep -c . "$tmp/err")" -ge 1 ] && grep -q -- "$want" "$tmp/err" ||
        { cat "$tmp/err"; fail "cowbd $*: no '$want' in the error"; }
    check_no_sanitizer "$tmp/err"
    [ ! -S "$tmp/bad.sock" ] || fail "cowbd $*: listened anyway"
}
printf 'alice\n' > "$tmp/nokey.psk"
printf 'alice:xyz\n' > "$tmp/badhex.psk"
: > "$tmp/empty.psk"
bad "nokey.psk:1" --tls=require --tls-psk="$tmp/nokey.psk"
bad "badhex.psk:1" --tls=require --tls-psk="$tmp/badhex.psk"
bad "no keys" --tls=require --tls-psk="$tmp/empty.psk"
bad "missing.psk" --tls=require --tls-psk="$tmp/missing.psk"
bad "ca-cert.pem" --tls=on --tls-certificates="$tmp/nowhere"
bad "needs --tls-certificates or --tls-psk" --tls=require
bad "expected off, on or require" --tls=maybe
bad "with --tls=off" --tls-psk="$tmp/keys.psk"
bad "needs --tls-certificates" --tls=on --tls-psk="$tmp/keys.psk" \
    --tls-verify-peer
bad "tls-priority" --tls=on --tls-psk="$tmp/keys.psk" \
    --tls-priority=NOT-A-PRIORITY
