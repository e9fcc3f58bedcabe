#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# qcow2 overlays served by nbdkit with the cowbd plugin in captive mode on
# a private Unix socket: qemu-io and nbdcopy round trips (see
# qcow2-serve-functions.sh).
. "${srcdir:-.}/functions.sh"
requires nbdkit --version
requires test -f "${COWBD_PLUGIN:-}"

serve ()
{
    local img=$1; shift
    nbdkit_env nbdkit -U - "$COWBD_PLUGIN" file="$img" --run "$*" \
        2>>"$tmp/server.log"
}

. "${srcdir:-.}/qcow2-serve-functions.sh"
qcow2_round_trips
