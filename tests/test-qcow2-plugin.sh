#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# qcow2 overlays served by nbdkit with the cowbd plugin in captive mode on
# a private Unix socket: qemu-io and nbdcopy round trips (see
# test-qcow2-serve-lib.sh).
. "${srcdir:-.}/functions.sh"
requires nbdkit --version
requires test -f "${COWBD_PLUGIN:-}"

serve ()
{
    local img=$1; shift
    nbdkit_env nbdkit -U - "$COWBD_PLUGIN" file="$img" --run "$*" \
        2>>"$tmp/server.log"
}

. "${srcdir:-.}/test-qcow2-serve-lib.sh"
qcow2_round_trips
