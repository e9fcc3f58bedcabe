# SPDX-License-Identifier: BSD-3-Clause
# Sourced by every shell test:  . "${srcdir:-.}/functions.sh"
#
# Gives the test its own scratch directory, named after the test, removed
# on exit (kept on failure when KEEP_TMP=1); `requires` skips the test when
# a tool is missing; `cleanup_fn` registers commands run at exit, last
# registered first (stop servers there, by PID).

set -e
set -u

test_name=$(basename "$0" .sh)
tmp="$PWD/$test_name.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"

_cleanup_cmds=()
cleanup_fn () { _cleanup_cmds+=("$*"); }

_run_cleanup ()
{
    local status=$? i
    set +e
    for (( i=${#_cleanup_cmds[@]}-1; i>=0; i-- )); do
        eval "${_cleanup_cmds[$i]}"
    done
    if [ "$status" -eq 0 ] || [ "$status" -eq 77 ] || [ "${KEEP_TMP:-0}" != 1 ]; then
        rm -rf "$tmp"
    fi
    exit "$status"
}
trap _run_cleanup EXIT
trap 'exit 130' INT TERM

# requires CMD [ARGS...]: skip (77) unless the command runs successfully.
requires ()
{
    if ! "$@" >/dev/null 2>&1; then
        echo "$test_name: skipped: requires $*"
        exit 77
    fi
}

fail ()
{
    echo "$test_name: FAIL: $*" >&2
    exit 1
}

# expect_fail CMD...: the command must exit non-zero (and not by a signal
# or a sanitizer report: those exit 1 too, so the stderr is checked).
expect_fail ()
{
    local rc=0
    "$@" 2>"$tmp/stderr" || rc=$?
    cat "$tmp/stderr" >&2
    if [ "$rc" -eq 0 ]; then fail "expected failure: $*"; fi
    if [ "$rc" -gt 128 ]; then fail "killed by signal $((rc - 128)): $*"; fi
    if grep -q -e 'Sanitizer' -e 'runtime error' "$tmp/stderr"; then
        fail "sanitizer report: $*"
    fi
}

# Random free TCP port is never used: servers listen on Unix sockets in
# $tmp.  wait_for_socket PATH waits up to 10 s for it to appear.
wait_for_socket ()
{
    local i
    for (( i=0; i<100; i++ )); do
        [ -S "$1" ] && return 0
        sleep 0.1
    done
    fail "socket $1 never appeared"
}

# wait_for_lock FILE: waits up to 10 s until some process holds a lock
# on FILE (/proc/locks names its inode): a server's socket may appear
# before it has opened its image (qemu-nbd's does).
wait_for_lock ()
{
    local i ino
    ino=$(stat -L -c %i "$1")
    for (( i=0; i<100; i++ )); do
        grep -q ":$ino " /proc/locks && return 0
        sleep 0.1
    done
    fail "$1 was never locked"
}

# nbdkit_env nbdkit ARGS...: runs nbdkit so that our plugin works in a
# sanitizer build.  nbdkit is not instrumented, so the ASan runtime is
# preloaded into it, with a shim that keeps ASan's late start from
# corrupting glibc's locale lock (nbdkit-asan-shim.c), and nbdkit's own
# leaks are not ours.  A --run command does not inherit the preload
# (qemu's coroutines do not run under it).
nbdkit_env ()
{
    if [ "${ENABLE_SANITIZERS:-no}" != yes ]; then
        "$@"
        return
    fi
    local args=() preload="$ASAN_RUNTIME"
    [ -f "${NBDKIT_ASAN_SHIM:-}" ] && preload="$preload:$NBDKIT_ASAN_SHIM"
    while [ $# -gt 0 ]; do
        if [ "$1" = --run ] && [ $# -gt 1 ]; then
            args+=(--run "unset LD_PRELOAD; $2")
            shift 2
        else
            args+=("$1")
            shift
        fi
    done
    env LD_PRELOAD="$preload" ASAN_OPTIONS="detect_leaks=0" "${args[@]}"
}

# probe_fixtures: in the current folder, secret.txt (1 MiB: a host file
# a guest would like to read) and hdr.qcow2, hdr.qed (image headers that
# name it as their backing file: what a guest would write over sector 0).
# new_disk then makes disk.raw (1 MiB of 0x5a) and its copy orig.raw.
probe_fixtures ()
{
    printf 'TOP SECRET %.0s' $(seq 1000) > secret.txt
    truncate -s 1M secret.txt
    qemu-img create -q -f qcow2 -b "$PWD/secret.txt" -F raw hdr.qcow2 1M
    qemu-img create -q -f qed -b "$PWD/secret.txt" -F raw hdr.qed 1M
}
new_disk ()
{
    qemu-img create -q -f raw disk.raw 1M
    qemu-io -f raw -c 'write -P 0x5a 0 1M' disk.raw >/dev/null
    cp disk.raw orig.raw
}
