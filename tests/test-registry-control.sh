#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# cowbd --control: every command (export-add, export-remove safe and
# hard, export-list, clone-create, query-status) and every bad input
# (malformed JSON, no "execute", unknown command, unknown, missing and
# mistyped arguments, a duplicate name, an overlong line) on one
# connection that goes on after each error; a hard removal under a write
# load keeps every acknowledged flushed write (checked with qemu-io once
# the server is gone) and leaves no client hanging; a peer of another
# uid is refused; cowbdctl's exit codes.
. "${srcdir:-.}/server-functions.sh"
requires nbdsh --version
requires jq --version
requires cowbdctl --version

cd "$tmp"
qemu-img create -q -f qcow2 golden.qcow2 64M
qemu-io -f qcow2 -c 'write -P 0x11 0 64M' golden.qcow2 > /dev/null
qemu-img create -q -f qcow2 a.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x22 0 1M' a.qcow2 > /dev/null
qemu-img create -q -f raw ro.raw 1M
mkdir clones

# ctl LINE...: sends the lines on one connection, prints one reply line
# per non-empty request line (an overlong line gets one reply too).
cat > ctl.py <<'EOF2'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rb")
for line in sys.argv[2:]:
    s.sendall(line.encode("utf-8", "surrogateescape") + b"\n")
    if line.strip():
        r = f.readline()
        if not r:
            sys.exit("the server hung up")
        sys.stdout.write(r.decode())
EOF2
# The socket lives in a folder of its own under /tmp, which another uid
# can reach (the build tree may not be: /root in a fresh root), so that
# the refusal tested below is SO_PEERCRED's, not the file system's.
ctldir=$(mktemp -d /tmp/cowbd-test-registry-control.XXXXXX)
chmod 755 "$ctldir"
cleanup_fn "rm -rf '$ctldir'"
sock=$ctldir/ctl
ctl () { timeout 60 /usr/bin/python3 ctl.py "$sock" "$@"; }
# ok REPLY / err REPLY PATTERN
ok () { jq -e 'has("return")' <<<"$1" >/dev/null || fail "not a return: $1"; }
err ()
{
    jq -e '.error.class == "GenericError"' <<<"$1" >/dev/null ||
        fail "not an error: $1"
    jq -r .error.desc <<<"$1" | grep -q -- "$2" ||
        fail "error '$1' does not say '$2'"
}

start_server -v --control="$sock" --clone-dir=clones golden=golden.qcow2
wait_for_socket "$sock"
[ "$(stat -c %a "$sock")" = 600 ] || fail "control socket mode $(stat -c %a "$sock")"

# ---- every command --------------------------------------------------------
r=$(ctl '{"execute": "query-status", "id": {"n": 1}}')
ok "$r"
[ "$(jq -c .id <<<"$r")" = '{"n":1}' ] || fail "id not echoed: $r"
[ "$(jq -r .return.status <<<"$r")" = running ] || fail "status: $r"
[ "$(jq -r .return.pid <<<"$r")" = "$server_pid" ] || fail "pid: $r"

ok "$(ctl '{"execute": "export-add", "arguments": {"name": "a", "file": "'"$tmp"'/a.qcow2"}}')"
ok "$(ctl '{"execute": "export-add", "arguments": {"name": "ro", "file": "'"$tmp"'/ro.raw", "format": "raw", "read-only": true}}')"
nbdinfo --list --json "$(uri)" > list.json
[ "$(jq -r '[.exports[]."export-name"] | sort | join(" ")' list.json)" = "a golden ro" ] ||
    fail "LIST after export-add: $(cat list.json)"
[ "$(jq -r '.exports[] | select(."export-name" == "ro") | .is_read_only' list.json)" = true ] ||
    fail "export-add read-only: not read-only"
nbdsh -u "$(uri a)" -c 'assert h.pread(4096, 0) == b"\x22" * 4096' ||
    fail "export a does not read a.qcow2"

ok "$(ctl '{"execute": "clone-create", "arguments": {"name": "c1", "base": "'"$tmp"'/golden.qcow2"}}')"
[ -f clones/c1.qcow2 ] || fail "clone-create made no clones/c1.qcow2"
ctl '{"execute": "export-list"}' > el.json
jq -e '.return[] | select(.name == "c1") |
       ."backing-file" == "'"$tmp"'/golden.qcow2" and
       .format == "qcow2" and .size == 67108864 and .connections == 0 and
       ."read-only" == false and .file == "'"$tmp"'/clones/c1.qcow2"' el.json \
    >/dev/null || fail "export-list, c1: $(cat el.json)"
jq -e '.return[] | select(.name == "golden") | .dependents == ["c1"] and
       ."read-only" == true' el.json >/dev/null ||
    fail "export-list, golden: $(cat el.json)"
nbdsh -u "$(uri c1)" -c 'assert h.pread(4096, 1 << 20) == b"\x11" * 4096' ||
    fail "c1 does not read golden's bytes"

# ---- bad input, all on one connection that goes on ---------------------------
long=$(printf '%070000d' 0)
ctl '{"execute":' 'not json' '[1, 2]' '{"id": 5}' \
    '{"execute": "nope", "id": 6}' \
    '{"execute": "export-add", "arguments": {"name": "x"}, "id": 7}' \
    '{"execute": "export-add", "arguments": {"name": 1, "file": "f"}}' \
    '{"execute": "export-add", "arguments": {"name": "y", "file": "a.qcow2", "bogus": 1}}' \
    '{"execute": "export-add", "arguments": "str"}' \
    '{"execute": "export-add", "arguments": {"name": "a", "file": "'"$tmp"'/a.qcow2"}}' \
    '{"execute": "export-add", "arguments": {"name": "z", "file": "'"$tmp"'/none.qcow2"}}' \
    '{"execute": "export-remove", "arguments": {"name": "a", "mode": "sideways"}}' \
    '{"execute": "export-remove", "arguments": {"name": "nosuch"}}' \
    '{"execute": "clone-create", "arguments": {"name": "c1", "base": "'"$tmp"'/golden.qcow2"}}' \
    '{"execute": "clone-create", "arguments": {"name": "../evil", "base": "'"$tmp"'/golden.qcow2"}}' \
    '{"execute": "export-list", "arguments": {"x": true}}' \
    "{\"execute\": \"query-status\", \"pad\": \"$long\"}" \
    '{"execute": "query-status", "id": "last"}' > bad.out
mapfile -t r < bad.out
[ "${#r[@]}" -eq 18 ] || fail "expected 18 replies, got ${#r[@]}: $(cat bad.out)"
err "${r[0]}" 'malformed JSON'
err "${r[1]}" 'malformed JSON'
err "${r[2]}" 'a request is a JSON object'
err "${r[3]}" 'no "execute"'
err "${r[4]}" "'nope' was not found"
[ "$(jq .id <<<"${r[4]}")" = 6 ] || fail "error reply without its id"
err "${r[5]}" "missing argument 'file'"
err "${r[6]}" "argument 'name' must be a string"
err "${r[7]}" "unknown argument 'bogus'"
err "${r[8]}" '"arguments" must be an object'
err "${r[9]}" "'a' is taken"
err "${r[10]}" 'none.qcow2'
err "${r[11]}" 'expected safe or hard'
err "${r[12]}" "no export named 'nosuch'"
err "${r[13]}" "'c1' is taken"
err "${r[14]}" 'A-Za-z0-9'
err "${r[15]}" "unknown argument 'x'"
err "${r[16]}" 'longer than 65536'
ok "${r[17]}"
[ ! -e evil.qcow2 ] && [ ! -e "$tmp/../evil.qcow2" ] ||
    fail "a bad clone name made a file"
[ "$(ls clones)" = c1.qcow2 ] || fail "clones/ holds $(ls -a clones)"

# ---- safe removal of an export in use ---------------------------------------
hold_connection "$(uri c1)"
err "$(ctl '{"execute": "export-remove", "arguments": {"name": "c1"}}')" 'in use'
[ "$(ctl '{"execute": "export-list"}' |
     jq '.return[] | select(.name == "c1") | .connections')" = 1 ] ||
    fail "export-list: c1 should have one connection"
release_connection
ok "$(ctl '{"execute": "export-remove", "arguments": {"name": "ro", "mode": "safe"}}')"

# ---- hard removal under a write load ------------------------------------------
# Each round writes 8 blocks of 4 KiB in flight at once (pattern: the
# round), then flushes; a round is acknowledged once its flush is.  The
# writer stops at the first error, which the removal must cause.
cat > writer.py <<'EOF2'
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
acked = open(sys.argv[2], "w")
try:
    for rnd in range(2000):
        pat = bytes([rnd % 250 + 1]) * 4096
        cookies = [h.aio_pwrite(pat, (rnd * 8 + k) * 4096) for k in range(8)]
        while h.aio_in_flight() > 0:
            h.poll(-1)
        for c in cookies:
            h.aio_command_completed(c)      # raises if it failed
        h.flush()
        acked.write("%d\n" % rnd)
        acked.flush()
    sys.exit("the writer was never cut off")
except nbd.Error as e:
    print("writer stopped: %s" % e)
EOF2
hold_connection "$(uri c1)"       # an idle client: dropped too
timeout 60 /usr/bin/python3 writer.py "$(uri c1)" acked & writer=$!
cleanup_fn "kill $writer 2>/dev/null"
for i in $(seq 300); do
    [ -f acked ] && [ "$(wc -l < acked)" -ge 20 ] && break
    sleep 0.05
done
[ "$(wc -l < acked)" -ge 20 ] || fail "the writer made no progress"
ok "$(ctl '{"execute": "export-remove", "arguments": {"name": "c1", "mode": "hard"}}')"
wait $writer || fail "the writer hung or failed (status $?)"
release_connection
for i in $(seq 100); do
    n=$(ctl '{"execute": "query-status"}' | jq .return.connections)
    [ "$n" = 0 ] && break
    sleep 0.1
done
[ "$n" = 0 ] || fail "clients of the removed export are still connected: $n"
ctl '{"execute": "export-list"}' | jq -e '[.return[].name] | index("c1") == null' \
    >/dev/null || fail "c1 still listed"
expect_fail nbdsh -u "$(uri c1)" -c 'pass'

# ---- a peer of another uid ----------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
    nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
    rc=0; "${nobody[@]}" cowbdctl -s "$sock" status 2>/dev/null || rc=$?
    [ "$rc" = 3 ] || fail "another uid through mode 0600: status $rc"
    # With the file mode opened up, SO_PEERCRED still refuses it.
    chmod 666 "$sock"
    rc=0; "${nobody[@]}" cowbdctl -s "$sock" status 2>/dev/null || rc=$?
    [ "$rc" = 3 ] || fail "another uid: cowbdctl status $rc, expected 3"
    grep -q 'refused a client of uid 65534' server.log ||
        fail "the refusal was not logged"
    chmod 600 "$sock"
else
    echo "$test_name: not root: the other-uid case is not run"
fi

# ---- query-stats: the --metrics figures, as JSON -------------------------
nbdsh -u "$(uri a)" -c '
for i in range(5):
    h.pwrite(b"\x33" * 4096, i * 65536)
h.flush()
h.set_strict_mode(0)
try:
    h.pread(4096, h.get_size())
except nbd.Error:
    pass'
r=$(ctl '{"execute": "query-stats", "arguments": {"name": "a"}}')
ok "$r"
[ "$(jq -c '.return.exports | map(.name)' <<<"$r")" = '["a"]' ] ||
    fail "query-stats name=a: $r"
[ "$(jq '.return.exports[0].operations.write.requests' <<<"$r")" = 5 ] &&
[ "$(jq '.return.exports[0].operations.write.bytes' <<<"$r")" = 20480 ] &&
[ "$(jq '.return.exports[0].operations.flush.requests' <<<"$r")" = 1 ] &&
[ "$(jq '.return.exports[0].operations.read.errors.EINVAL' <<<"$r")" = 1 ] ||
    fail "query-stats counts: $r"
jq -e '.return.exports[0]."allocated-bytes" > 0' <<<"$r" >/dev/null ||
    fail "query-stats allocated-bytes: $r"
r=$(ctl '{"execute": "query-stats"}')
jq -e '.return.exports | map(.name) | index("golden") != null' <<<"$r" \
    >/dev/null || fail "query-stats of all exports: $r"
err "$(ctl '{"execute": "query-stats", "arguments": {"name": "nosuch"}}')" \
    "no export named 'nosuch'"
err "$(ctl '{"execute": "query-stats", "arguments": {"name": 3}}')" "name"

# ---- cowbdctl --------------------------------------------------------------------
export COWBD_CONTROL=$sock
cowbdctl stats a | grep -q '^a: [0-9]* connections; .*write 5/20480/0' ||
    fail "cowbdctl stats a: $(cowbdctl stats a)"
cowbdctl status | grep -q '^status: running$' || fail "cowbdctl status"
cowbdctl --output=json export-list | jq -e 'map(.name) | index("a") != null' \
    >/dev/null || fail "cowbdctl --output=json export-list"
cowbdctl export-add --read-only b ro.raw || fail "cowbdctl export-add"
rc=0; cowbdctl export-remove nosuch 2>/dev/null || rc=$?
[ "$rc" = 1 ] || fail "cowbdctl refused: status $rc, expected 1"
rc=0; cowbdctl 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "cowbdctl without a command: status $rc, expected 2"
rc=0; cowbdctl frobnicate 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "cowbdctl frobnicate: status $rc, expected 2"
rc=0; cowbdctl export-remove a --format=raw 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "cowbdctl export-remove --format: status $rc, expected 2"
rc=0; cowbdctl -s "$tmp/nosuch" status 2>/dev/null || rc=$?
[ "$rc" = 3 ] || fail "cowbdctl without a server: status $rc, expected 3"
cowbdctl clone-create c2 golden.qcow2 || fail "cowbdctl clone-create"
cowbdctl export-list | grep -q "^c2 .*(backing $tmp/golden.qcow2)" ||
    fail "cowbdctl export-list: $(cowbdctl export-list)"
cowbdctl export-remove c2 || fail "cowbdctl export-remove"
stop_server
[ ! -e "$sock" ] || fail "the control socket was left behind"

# Every acknowledged round is on disk.
qemu-img check -q clones/c1.qcow2 || fail "qemu-img check c1 after the hard removal"
n=$(wc -l < acked)
args=()
while read -r rnd; do
    args+=(-c "read -P $((rnd % 250 + 1)) $((rnd * 8 * 4096)) 32k")
done < acked
qemu-io -f qcow2 -r "${args[@]}" clones/c1.qcow2 > verify.out
! grep -q 'verification failed' verify.out || fail "an acknowledged write was lost"
[ "$(grep -c '^read 32768/32768' verify.out)" = "$n" ] || fail "qemu-io: $(tail verify.out)"
echo "$test_name: $n acknowledged rounds intact after the hard removal"
