# SPDX-License-Identifier: BSD-3-Clause
# Sourced by the fault tests (not a test itself), after functions.sh:
# the fault shim (faultshim.c) preloaded into cowbd or nbdkit, and the
# images the tests run on.
#
#   fault_cowbd ENV... -- COWBD-ARGS...   cowbd on $tmp/sock in the
#                          background with the shim and ENV (FAULT_*),
#                          $server_pid, stderr in $tmp/server.log
#   fault_nbdkit ENV... -- PLUGIN-ARGS... the same with nbdkit and the
#                          plugin
#   fault_stop             SIGTERM, wait; $server_rc is the exit status
#   fault_image KIND FILE [SIZE]  raw, qed, qcow2-lazy, qcow2 (lazy
#                          off): an image of SIZE (32M), its first MiB
#                          0x11 (overlays: in a raw base, FILE.base)

requires test -f "$FAULTSHIM"
requires cowbd --version
requires qemu-img --version
requires qemu-io --version

# nbdsh and the Python scripts need the nbd module, which only the
# system's python3 has here.
PYTHON=/usr/bin/python3
requires $PYTHON -c 'import nbd'

# The preload for cowbd: the shim, after the ASan runtime in sanitizer
# builds (cowbd links it; it must come first).
fault_preload ()
{
    if [ "${ENABLE_SANITIZERS:-no}" = yes ]; then
        echo "$ASAN_RUNTIME:$FAULTSHIM"
    else
        echo "$FAULTSHIM"
    fi
}

# The same for nbdkit, as functions.sh's nbdkit_env runs it (the ASan
# runtime and its shim first in sanitizer builds; nbdkit's leaks are not
# ours).
fault_nbdkit_env ()
{
    if [ "${ENABLE_SANITIZERS:-no}" = yes ]; then
        local p="$ASAN_RUNTIME"
        [ -f "${NBDKIT_ASAN_SHIM:-}" ] && p="$p:$NBDKIT_ASAN_SHIM"
        echo "LD_PRELOAD=$p:$FAULTSHIM ASAN_OPTIONS=detect_leaks=0"
    else
        echo "LD_PRELOAD=$FAULTSHIM"
    fi
}

server_pid=
server_rc=
_fault_cleanup_set=
_fault_cleanup ()
{
    [ -z "$_fault_cleanup_set" ] || return 0
    _fault_cleanup_set=1
    cleanup_fn '[ -n "$server_pid" ] && kill -9 $server_pid 2>/dev/null'
}

fault_cowbd ()
{
    local envs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    rm -f "$tmp/sock"
    _fault_cleanup
    env "${envs[@]}" LD_PRELOAD="$(fault_preload)" \
        timeout -k 5 120 cowbd -U "$tmp/sock" "$@" 2>"$tmp/server.log" &
    server_pid=$!
    wait_for_socket "$tmp/sock"
}

fault_nbdkit ()
{
    local envs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    rm -f "$tmp/sock"
    _fault_cleanup
    env "${envs[@]}" $(fault_nbdkit_env) \
        timeout -k 5 120 nbdkit -f -U "$tmp/sock" "$COWBD_PLUGIN" "$@" \
        2>"$tmp/server.log" &
    server_pid=$!
    wait_for_socket "$tmp/sock"
}

fault_stop ()
{
    server_rc=0
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" || server_rc=$?
    server_pid=
    if grep -q -e 'Sanitizer' -e 'runtime error' "$tmp/server.log"; then
        cat "$tmp/server.log" >&2
        fail "sanitizer report in the server's log"
    fi
}

fault_image ()
{
    local kind=$1 file=$2 size=${3:-32M}
    rm -f "$file" "$file.base"
    case $kind in
        raw)
            qemu-img create -q -f raw "$file" $size
            qemu-io -f raw -c 'write -P 0x11 0 1M' "$file" >/dev/null ;;
        qed|qcow2|qcow2-lazy)
            qemu-img create -q -f raw "$file.base" $size
            qemu-io -f raw -c 'write -P 0x11 0 1M' "$file.base" >/dev/null
            local f=${kind%-lazy} o=
            [ $f = qcow2 ] && o="-o lazy_refcounts=$([ $kind = qcow2-lazy ] && echo on || echo off)"
            qemu-img create -q -f $f $o -b "$file.base" -F raw "$file" ;;
        *) fail "fault_image: unknown kind $kind" ;;
    esac
}

# The qemu format of a kind.
fault_fmt () { local k=${1%-lazy}; echo "$k"; }
