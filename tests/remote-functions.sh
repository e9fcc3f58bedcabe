# SPDX-License-Identifier: BSD-3-Clause
# Sourced by the base-cache tests after server-functions.sh: a remote
# golden image served by nbdkit's file plugin behind its log filter, and
# the bytes it sent, counted from that log.
#
#   start_remote [NBDKIT-OPTIONS] [KEY=VALUE]...
#                     nbdkit -r serving $tmp/golden.raw as export "golden"
#                     on $tmp/gsock ($remote_pid); each read is logged to
#                     $tmp/remote.log (kept across restarts).  Options
#                     (--filter=delay, --tls=...) go before the plugin,
#                     KEY=VALUE parameters after it; the log filter is the
#                     outermost, so a read is logged when it arrives.
#   stop_remote       SIGTERM by PID, wait
#   remote_bytes data|fp
#                     bytes the remote sent so far: "fp" counts the base
#                     cache's fingerprint reads (4 KiB each, up to eight
#                     per open of the remote: cowbd-formats(5) CACHE FOR
#                     REMOTE BACKING IMAGES), "data" every other read (the
#                     cache fills whole 64 KiB chunks, so a data fetch is
#                     never 4 KiB: the bases here are multiples of 64 KiB)
#   remote_reads fp   how many fingerprint reads
#   golden_uri        nbd+unix URI of the remote

requires nbdkit --version
requires nbdkit --filter=log null --version
requires nbdcopy --version

remote_pid=
start_remote ()
{
    local opts=() params=()
    while [ $# -gt 0 ]; do
        case "$1" in
            -*) opts+=("$1") ;;
            *) params+=("$1") ;;
        esac
        shift
    done
    rm -f "$tmp/gsock"
    nbdkit -f -r -U "$tmp/gsock" -e golden --filter=log "${opts[@]}" \
        file "$tmp/golden.raw" logfile="$tmp/remote.log" logappend=true \
        "${params[@]}" 2>> "$tmp/nbdkit.err" &
    remote_pid=$!
    cleanup_fn "[ -n \"\$remote_pid\" ] && kill -9 \$remote_pid 2>/dev/null"
    wait_for_socket "$tmp/gsock"
}

stop_remote ()
{
    [ -n "$remote_pid" ] || return 0
    kill "$remote_pid"
    wait "$remote_pid" 2>/dev/null || :
    remote_pid=
}

golden_uri ()
{
    echo "nbd+unix:///golden?socket=$tmp/gsock"
}

# The counts of the reads the remote has logged, one per line.
_remote_counts ()
{
    [ -f "$tmp/remote.log" ] || return 0
    sed -n 's/.* Read id=[0-9]* offset=0x[0-9a-f]* count=\(0x[0-9a-f]*\).*/\1/p' \
        "$tmp/remote.log"
}

remote_bytes ()
{
    local sum=0 n
    for n in $(_remote_counts); do
        case "$1" in
            fp) [ $((n)) -eq 4096 ] || continue ;;
            data) [ $((n)) -ne 4096 ] || continue ;;
            *) fail "remote_bytes: data or fp, not $1" ;;
        esac
        sum=$((sum + n))
    done
    echo $sum
}

remote_reads ()
{
    local k=0 n
    for n in $(_remote_counts); do
        [ $((n)) -eq 4096 ] && k=$((k + 1))
    done
    echo $k
}
