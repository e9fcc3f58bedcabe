#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# make install puts nbdkit-cowbd-plugin.so (and no libtool archive) in
# the plugin folder configure chose ($NBDKIT_PLUGINDIR: LIBDIR/nbdkit/
# plugins, as nbdkit's own plugins, or --with-nbdkit-plugindir), where
# nbdkit loads it and serves an image with it; make uninstall removes
# it.  Installed under DESTDIR, so nothing outside $tmp changes.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires make --version
requires nbdinfo --version

plugindir=${NBDKIT_PLUGINDIR:?the test harness sets NBDKIT_PLUGINDIR}
dest="$tmp/root"
installed="$dest$plugindir/nbdkit-cowbd-plugin.so"

# A make of its own, not a job of the make running the tests.
mk () { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
            make -s -C "$abs_top_builddir/plugins/cowbd" DESTDIR="$dest" "$@"; }

mk install > "$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "make install"; }
[ -f "$installed" ] || fail "not installed as $installed"
[ ! -e "${installed%.so}.la" ] || fail "the libtool archive was installed"

nbdkit_env nbdkit "$installed" --dump-plugin | grep -qx name=cowbd ||
    fail "nbdkit cannot load the installed plugin"
qemu-img create -q -f qed "$tmp/disk.qed" 1M
nbdkit_env timeout -k 10 60 nbdkit -U - "$installed" "$tmp/disk.qed" \
    --run 'unset LD_PRELOAD; nbdinfo --size "$uri"' > "$tmp/size"
[ "$(cat "$tmp/size")" = 1048576 ] || fail "the installed plugin serves badly"

mk uninstall > "$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "make uninstall"; }
[ ! -e "$installed" ] || fail "make uninstall left $installed"
