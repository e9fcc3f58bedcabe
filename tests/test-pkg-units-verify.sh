#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The installed units cowbd.service, cowbd.socket and cowbd@.service
# pass systemd-analyze verify without a single complaint (it only warns
# about unknown keys and bad values, so any output fails), their
# Documentation= pages are installed, and their ExecStart line is the
# one cowbd.service(8) documents.
. "${srcdir:-.}/pkg-functions.sh"
requires systemd-analyze --version
requires man -w man

pkg_install
mkdir "$tmp/units"
for u in cowbd.service cowbd.socket cowbd@.service; do
    f=$(unit_file "$u")
    # systemd-analyze checks that the program exists: the one under $dest.
    exe=$(unit_value "$f" ExecStart | awk '{ print $1 }')
    [ -n "$exe" ] || [ "$u" = cowbd.socket ] || fail "$u: no ExecStart"
    if [ -n "$exe" ]; then
        [ -x "$(in_dest "$exe")" ] || fail "$u: $exe is not installed"
        sed "s|^ExecStart=$exe |ExecStart=$(in_dest "$exe") |" "$f" > "$tmp/units/$u"
    else
        cp "$f" "$tmp/units/$u"
    fi
done
# A template is loaded through an instance.
cp "$tmp/units/cowbd@.service" "$tmp/units/cowbd@test.service"

# Documentation=man:... pages are looked up with man: ours, installed.
mandir=$(dirname "$(find "$dest" -name cowbd.8 -path '*/man8/*')")
export MANPATH="${mandir%/man8}:"
cd "$tmp/units"
for u in cowbd.service cowbd.socket cowbd@.service cowbd@test.service; do
    rc=0
    systemd-analyze verify "./$u" > "$tmp/verify.out" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ] || [ -s "$tmp/verify.out" ]; then
        cat "$tmp/verify.out"
        fail "systemd-analyze verify $u (exit $rc)"
    fi
done

# The hardening the units promise, in both services.
for u in cowbd.service cowbd@.service; do
    f=$(unit_file "$u")
    for kv in User=cowbd NoNewPrivileges=yes ProtectSystem=strict \
              ProtectHome=yes PrivateTmp=yes PrivateDevices=yes \
              'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' \
              CapabilityBoundingSet= SystemCallFilter=@system-service; do
        grep -qx "$kv" "$f" || fail "$u: no $kv"
    done
    [ -n "$(unit_value "$f" ReadWritePaths)" ] || fail "$u: no ReadWritePaths"
done
[ "$(unit_value "$(unit_file cowbd.socket)" ListenStream)" = 10809 ] ||
    fail "cowbd.socket does not listen on 10809"

# The command line the man page documents, with the program where this
# installation put it.
page="$abs_top_srcdir/man/cowbd.service.8.pod"
for u in cowbd.service cowbd@.service; do
    line=$(grep '^ExecStart=' "$(unit_file "$u")")
    exe=${line#ExecStart=}; exe=${exe%% *}
    documented="ExecStart=/usr/sbin/cowbd ${line#ExecStart=$exe }"
    grep -qxF " $documented" "$page" ||
        fail "$u: '$line' is not the line cowbd.service(8) shows"
done
echo "units verified: $(ls "$tmp/units" | tr '\n' ' ')"
