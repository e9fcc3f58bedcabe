#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The command line: --help, --version, bad options and images, export
# names, -t, --cache-size, -f, --fork with --pidfile, -v, and TCP on
# 127.0.0.1 with $port in --run.
. "${srcdir:-.}/server-functions.sh"
requires nbdinfo --version

cd "$tmp"
make_image raw a.raw
make_image qed b.qed
make_image qed c.qed

cowbd --help | grep -q '^Usage: cowbd' || fail "--help"
cowbd --version | grep -q '^cowbd [0-9]' || fail "--version"
expect_fail cowbd
expect_fail cowbd --no-such-option a.raw
expect_fail cowbd -t 0 -U - a.raw --run true
expect_fail cowbd -p 99999 a.raw
expect_fail cowbd -U - --cache-size=lots a.raw --run true
expect_fail cowbd -U - nosuch.qed --run true
grep -q 'nosuch.qed' "$tmp/stderr" || fail "missing image not named"
expect_fail cowbd -U - x=a.raw x=b.qed --run true
expect_fail cowbd -U - -f qcow9 a.raw --run true
expect_fail cowbd -s -U - a.raw
# --run is not run when start-up fails.
expect_fail cowbd -U - nosuch.qed --run 'touch ran'
[ ! -e ran ] || fail "--run command ran although start-up failed"

# Export names: NAME=IMAGE, base names for the others; the first is also
# the default export (test-server-names.sh).  (Each a file of its own: two
# read-write opens of one file conflict on its image locks.)
cowbd -U - a.raw b.qed c=c.qed -t 2 --cache-size=1M -f qed \
    --run 'nbdinfo --list --json "$uri"' > list.json 2>&1 &&
    fail "-f qed accepted a raw image"
cowbd -U - a.raw b.qed c=c.qed -t 2 --cache-size=1M \
    --run 'nbdinfo --list --json "$uri"' > list.json
[ "$(jq -r '[.exports[]."export-name"] | join(",")' list.json)" = "a.raw,b.qed,c" ] ||
    fail "export names: $(jq -c '[.exports[]."export-name"]' list.json)"

# -v: connections are logged.
cowbd -v -U - a.raw --run 'nbdinfo "$uri" >/dev/null' 2> log
grep -q 'connection 1 (.*): opened' log || fail "-v: no open logged"
grep -q 'connection 1 (.*): closed' log || fail "-v: no close logged"

# --fork and --pidfile: the command returns once the server listens.
cowbd --fork -P pid -U sock a.raw 2> fork.log
[ -S sock ] || fail "--fork returned before the socket existed"
pid=$(cat pid)
cleanup_fn "kill $pid 2>/dev/null"
kill -0 "$pid" || fail "no process $pid from the pid file"
nbdinfo "nbd+unix:///?socket=$tmp/sock" > /dev/null
kill -TERM "$pid"
for (( i = 0; i < 100; i++ )); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
! kill -0 "$pid" 2>/dev/null || fail "forked server did not stop on SIGTERM"
[ ! -e sock ] || fail "forked server left its socket"
check_no_sanitizer fork.log

# TCP on the loopback address, with $port and $uri for the command.
ok=
for (( try = 0; try < 5; try++ )); do
    port=$(( 20000 + (RANDOM % 30000) ))
    if cowbd -i 127.0.0.1 -p $port a.raw \
        --run 'test "$port" = '$port' && test -z "${unixsocket-}" &&
               test "$uri" = "nbd://127.0.0.1:'$port'/a.raw" &&
               nbdinfo "$uri" > /dev/null' 2> tcp.log; then
        ok=1
        break
    fi
    grep -q 'Address already in use' tcp.log || { cat tcp.log; fail "TCP"; }
done
[ -n "$ok" ] || fail "no free TCP port found"
check_no_sanitizer tcp.log
