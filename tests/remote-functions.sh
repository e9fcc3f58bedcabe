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
#   stop_remote       SIGTERM by PID, SIGKILL if it still runs after 5 s
#                     (nbdkit waits for its clients: cowbd's pool)
#   remote_bytes data|fp
#                     bytes the remote sent so far: "fp" counts the base
#                     cache's fingerprint reads (4 KiB each, up to eight
#                     per open of the remote: cowbd-formats(5) CACHE FOR
#                     REMOTE BACKING IMAGES), "data" every other read (the
#                     cache fills whole 64 KiB chunks, so a data fetch is
#                     never 4 KiB: the bases here are multiples of 64 KiB)
#   remote_reads data|fp
#                     how many such reads
#   golden_uri        nbd+unix URI of the remote
#   remote_clones [C1-CMD... --] [C2-CMD...]
#                     golden.raw (64 MiB of random data) served by
#                     start_remote; c1.qcow2 and c2.qcow2, overlays of it,
#                     with the qemu-io commands before -- written to c1,
#                     those after it to c2; want-c1.raw and want-c2.raw,
#                     each chain as qemu-img reads it straight from the
#                     remote; an empty folder cache/.  All in $tmp.

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
    # One thread per connection: nbdkit 1.32 aborts (connections.c
    # raw_send_socket: Assertion `sock >= 0') when a client goes away
    # while several of its requests sleep in the delay filter, which
    # these tests do on purpose (cowbd killed, a timeout).
    nbdkit -f -r -t 1 -U "$tmp/gsock" -e golden --filter=log "${opts[@]}" \
        file "$tmp/golden.raw" logfile="$tmp/remote.log" logappend=true \
        "${params[@]}" 2>> "$tmp/nbdkit.err" &
    remote_pid=$!
    cleanup_fn "[ -n \"\$remote_pid\" ] && kill -9 \$remote_pid 2>/dev/null"
    wait_for_socket "$tmp/gsock"
}

stop_remote ()
{
    local i
    [ -n "$remote_pid" ] || return 0
    kill "$remote_pid"
    for (( i=0; i<50; i++ )); do
        kill -0 "$remote_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$remote_pid" 2>/dev/null || :
    wait "$remote_pid" 2>/dev/null || :
    remote_pid=
}

golden_uri ()
{
    echo "nbd+unix:///golden?socket=$tmp/gsock"
}

# remote_bytes KIND, remote_reads KIND: one pass over the log (awk: the
# counts are hexadecimal).
_remote_sum ()
{
    [ -f "$tmp/remote.log" ] || { echo 0; return 0; }
    awk -v kind="$1" -v what="$2" '
        function hex(s,   i, n) {
            n = 0
            s = tolower(substr(s, 3))
            for (i = 1; i <= length(s); i++)
                n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
            return n
        }
        / Read id=[0-9]+ offset=0x[0-9a-f]+ count=0x[0-9a-f]+/ {
            if (!match($0, /count=0x[0-9a-f]+/)) next
            n = hex(substr($0, RSTART + 6, RLENGTH - 6))
            if ((kind == "fp") != (n == 4096)) next
            sum += (what == "bytes") ? n : 1
        }
        END { printf "%d\n", sum }' "$tmp/remote.log"
}

remote_bytes ()
{
    case "$1" in
        data|fp) _remote_sum "$1" bytes ;;
        *) fail "remote_bytes: data or fp, not $1" ;;
    esac
}

remote_reads ()
{
    _remote_sum "$1" reads
}

remote_clones ()
{
    local c cmds
    head -c 64M /dev/urandom > "$tmp/golden.raw"
    start_remote
    for c in c1 c2; do
        cmds=()
        while [ $# -gt 0 ] && [ "$1" != -- ]; do cmds+=(-c "$1"); shift; done
        [ $# -gt 0 ] && shift
        qemu-img create -q -f qcow2 -b "$(golden_uri)" -F raw "$tmp/$c.qcow2"
        if [ ${#cmds[@]} -gt 0 ]; then
            qemu-io -f qcow2 "${cmds[@]}" "$tmp/$c.qcow2" > /dev/null
        fi
        qemu-img convert -f qcow2 -O raw "$tmp/$c.qcow2" "$tmp/want-$c.raw"
    done
    mkdir "$tmp/cache"
}
