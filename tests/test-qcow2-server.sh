#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# qcow2 overlays served by cowbd in captive mode on a private Unix socket:
# qemu-io and nbdcopy round trips (see test-qcow2-serve-lib.sh).
. "${srcdir:-.}/functions.sh"
requires cowbd --version

serve ()
{
    local img=$1; shift
    cowbd -U - "$img" --run "$*" 2>>"$tmp/server.log"
}

. "${srcdir:-.}/test-qcow2-serve-lib.sh"
qcow2_round_trips
