#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The main job, end to end (run by ./dev.sh demo after the build):
# make a golden image with some data, clone it in constant time, show the
# clone, and serve it over NBD until Ctrl-C.
#
#   dev-demo.sh BUILDDIR [PORT]
set -euo pipefail
builddir=$(cd "$1" && pwd)
port=${2:-10809}
img="$builddir/tools/cowbd-img"
srv="$builddir/server/cowbd"
demo="$builddir/demo"

mkdir -p "$demo"
cd "$demo"
rm -f golden.qed clone.qed

echo "== a 1 GiB golden image with 64 MiB of data"
"$img" create -f qed golden.qed 1G
qemu-io -f qed -c 'write -P 0x42 0 64M' golden.qed >/dev/null

echo "== a clone of it (constant time, whatever the golden image's size)"
time "$img" create -f qed -b golden.qed -F qed clone.qed

echo "== the clone"
"$img" info clone.qed
"$img" map clone.qed

echo "== a first look through the server (captive mode)"
"$srv" -U - clone.qed --run 'nbdinfo "$uri"'

echo
echo "== serving clone.qed on nbd://127.0.0.1:$port/ until Ctrl-C"
echo "   try:  nbdinfo nbd://127.0.0.1:$port/"
echo "         qemu-io -f raw nbd://127.0.0.1:$port/ -c 'read -P 0x42 0 1M'"
exec "$srv" -v -i 127.0.0.1 -p "$port" clone.qed
