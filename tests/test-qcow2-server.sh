#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# qcow2 overlays served by cowbd in captive mode on a private Unix socket:
# qemu-io and nbdcopy round trips (see qcow2-serve-functions.sh).
. "${srcdir:-.}/functions.sh"
requires cowbd --version

serve ()
{
    local img=$1; shift
    cowbd -U - "$img" --run "$*" 2>>"$tmp/server.log"
}

. "${srcdir:-.}/qcow2-serve-functions.sh"
qcow2_round_trips
