# SPDX-License-Identifier: BSD-3-Clause
# Sourced by remote-boot-storm.sh and remote-cold.sh: a "remote" image
# server behind a real network path with a 2 ms round trip, made of
# network namespaces this script creates and removes.
#
#   namespace $RL_LNS (the local host)        namespace $RL_RNS (the remote)
#   cowbd / qemu-nbd  --TCP over veth-->  nbdkit --filter=stats file BASE
#        ^ Unix sockets (the filesystem is shared), so the clients run
#          in the root namespace and no TCP leaves the namespaces.
#
# The delay: netem 1 ms on each end of the veth when the kernel has
# sch_netem; otherwise nbdkit's delay filter adds 2 ms to each read and
# block-status request at the remote (with many requests in flight that
# models a 2 ms round trip much as netem does for request/response
# traffic, but not the bandwidth-delay product of a TCP window).
# $RL_DELAY says which was used.
#
# Needs root (ip netns), nbdkit with the stats and delay filters, tc.

RL_RNS=rl-remote-$$
RL_LNS=rl-local-$$
RL_ADDR=10.213.0.2
RL_PORT=10809
RL_DELAY=
RL_RPID=
RL_STATS=

rl_cleanup ()
{
    rl_remote_stop > /dev/null 2>&1 || true
    ip netns del "$RL_RNS" 2> /dev/null || true
    ip netns del "$RL_LNS" 2> /dev/null || true
}

# rl_setup: the two namespaces, the veth pair and the delay.
rl_setup ()
{
    ip netns add "$RL_RNS"
    ip netns add "$RL_LNS"
    ip link add rlv0-$$ netns "$RL_LNS" type veth peer name rlv1-$$ \
        netns "$RL_RNS"
    ip -n "$RL_LNS" addr add 10.213.0.1/30 dev rlv0-$$
    ip -n "$RL_RNS" addr add "$RL_ADDR"/30 dev rlv1-$$
    ip -n "$RL_LNS" link set rlv0-$$ up
    ip -n "$RL_RNS" link set rlv1-$$ up
    ip -n "$RL_LNS" link set lo up
    ip -n "$RL_RNS" link set lo up
    if ip netns exec "$RL_LNS" tc qdisc add dev rlv0-$$ root netem \
            delay 1ms 2> /dev/null &&
       ip netns exec "$RL_RNS" tc qdisc add dev rlv1-$$ root netem \
            delay 1ms 2> /dev/null; then
        RL_DELAY="netem 1 ms each way on the veth"
    else
        RL_DELAY="nbdkit delay filter, 2 ms per read/block-status request (no sch_netem)"
    fi
}

rl_uri () { echo "nbd://$RL_ADDR:$RL_PORT/golden"; }

# rl_remote_start BASE STATSFILE: serves BASE from the remote namespace.
rl_remote_start ()
{
    local delay=() i
    case $RL_DELAY in
        nbdkit*) delay=(--filter=delay delay-read=2ms delay-extents=2ms) ;;
    esac
    RL_STATS=$2
    rm -f "$RL_STATS"
    ip netns exec "$RL_RNS" nbdkit -f -i "$RL_ADDR" -p "$RL_PORT" \
        --filter=stats "${delay[@]:0:1}" file "$1" statsfile="$RL_STATS" \
        "${delay[@]:1}" &
    RL_RPID=$!
    for i in $(seq 500); do
        ip netns exec "$RL_LNS" nbdinfo --size "$(rl_uri)" > /dev/null \
            2>&1 && return 0
        sleep 0.02
    done
    echo "remote did not start" >&2
    return 1
}

# rl_remote_stop: stops the remote by its PID and sets $RL_RESULT to
# "BYTES OPS" of the reads it served (from the stats filter's file, which
# nbdkit writes as it exits).  Not to be called in a subshell.
rl_remote_stop ()
{
    RL_RESULT="0 0"
    [ -n "$RL_RPID" ] || return 0
    kill "$RL_RPID" 2> /dev/null || true
    wait "$RL_RPID" 2> /dev/null || true
    RL_RPID=
    RL_RESULT=$(awk '/^read:/ {
        ops = $2; v = $6; u = $7; sub(/,/, "", u)
        m = 1
        if (u == "KiB") m = 1024
        if (u == "MiB") m = 1024 ^ 2
        if (u == "GiB") m = 1024 ^ 3
        if (u == "TiB") m = 1024 ^ 4
        printf "%.0f %d\n", v * m, ops; found = 1
    }
    END { if (!found) print "0 0" }' "$RL_STATS")
}

# rl_local CMD...: runs CMD in the local host's namespace.
rl_local () { ip netns exec "$RL_LNS" "$@"; }
# For servers started with &: $RL_IN_LOCAL CMD... (no shell function, so
# that $! is the server itself).
RL_IN_LOCAL="ip netns exec $RL_LNS"

# rl_wait_sock PATH...: waits (at most 10 s) for Unix sockets to appear.
rl_wait_sock ()
{
    local s i
    for s in "$@"; do
        for i in $(seq 1000); do
            [ -S "$s" ] && break
            sleep 0.01
        done
        [ -S "$s" ] || { echo "$s: server did not start" >&2; return 1; }
    done
}

# rl_cpu PID: the CPU seconds (user + system) PID has used.
rl_cpu () { awk -v t="$(getconf CLK_TCK)" '{ sub(/^.*\) /, "");
    printf "%.2f\n", ($12 + $13) / t }' "/proc/$1/stat"; }

# rl_wait_file PATH: waits (at most 60 s) for PATH to exist.
rl_wait_file ()
{
    local i
    for i in $(seq 6000); do
        [ -e "$1" ] && return 0
        sleep 0.01
    done
    echo "$1: not there after 60 s" >&2
    return 1
}

rl_load () { cut -d' ' -f1-3 /proc/loadavg; }

# rl_median V...: the median of the arguments.
rl_median () { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1}
    END { if (NR % 2) print a[(NR + 1) / 2];
          else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
