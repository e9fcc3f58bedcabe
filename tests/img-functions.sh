# SPDX-License-Identifier: BSD-3-Clause
# Sourced by the tests of cowbd-img (tests/test-img-*.sh), after
# functions.sh: comparisons of cowbd-img's output with qemu-img's.
#
# JSON is read with /usr/bin/python3 (the python3 first on PATH may be
# another one); jq is not needed.

requires qemu-img --version
requires qemu-io --version
requires /usr/bin/python3 -c 'import json, pty'

# json_get FILE KEY: the value of KEY in the JSON object in FILE (empty
# when absent; true/false as Python prints them).
json_get ()
{
    /usr/bin/python3 -c '
import json, sys
v = json.load(open(sys.argv[1])).get(sys.argv[2])
print("" if v is None else v)' "$1" "$2"
}

# json_same A B KEY...: the JSON objects in files A and B agree on each
# KEY (a key absent from both agrees).
json_same ()
{
    local a=$1 b=$2; shift 2
    /usr/bin/python3 - "$a" "$b" "$@" <<'PY' || fail "JSON differs: $a $b"
import json, sys
a = json.load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
bad = [k for k in sys.argv[3:] if a.get(k) != b.get(k)]
for k in bad:
    print("%s: %r != %r" % (k, a.get(k), b.get(k)), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

# map_same FILE [FMT]: cowbd-img map and qemu-img map (both JSON) agree on
# start, length, data, zero, depth and present of every entry (or on the
# members listed in MAP_KEYS).  MAP_OPTS (e.g. -U) goes to both.
map_same ()
{
    local f=$1 fmt=${2:-} fa=(${MAP_OPTS:-}) qa=(${MAP_OPTS:-})
    [ -n "$fmt" ] && { fa+=(-f "$fmt"); qa+=(-f "$fmt"); }
    cowbd-img map "${fa[@]}" --output=json "$f" > "$tmp/map.cowbd" ||
        fail "cowbd-img map $f"
    qemu-img map "${qa[@]}" --output=json "$f" > "$tmp/map.qemu" ||
        fail "qemu-img map $f"
    /usr/bin/python3 - "$tmp/map.cowbd" "$tmp/map.qemu" \
        ${MAP_KEYS:-start length data zero depth present} <<'PY' ||
import json, sys
keys = sys.argv[3:]
ours = [tuple(e[k] for k in keys) for e in json.load(open(sys.argv[1]))]
theirs = [tuple(e[k] for k in keys) for e in json.load(open(sys.argv[2]))]
if ours != theirs:
    print("cowbd-img map: %s\nqemu-img map:  %s" % (ours, theirs),
          file=sys.stderr)
    sys.exit(1)
PY
        fail "map of $f differs from qemu-img map"
}

# own_bytes FILE: bytes FILE itself holds (depth 0), as qemu-img maps it.
own_bytes ()
{
    qemu-img map --output=json "$1" | /usr/bin/python3 -c '
import json, sys
print(sum(e["length"] for e in json.load(sys.stdin)
          if e["depth"] == 0 and e["present"]))'
}

# qemu_check_clean FILE: qemu-img check finds nothing (exit 0).
qemu_check_clean ()
{
    qemu-img check "$@" > "$tmp/qcheck.out" 2>&1 || {
        cat "$tmp/qcheck.out" >&2
        fail "qemu-img check $*"
    }
}

# qemu_same A B: qemu-img compare finds them identical.
qemu_same ()
{
    qemu-img compare "$@" > "$tmp/qcmp.out" 2>&1 || {
        cat "$tmp/qcmp.out" >&2
        fail "qemu-img compare $*"
    }
}

# one_line_error FILE: stderr in FILE is one line starting "cowbd-img: ".
one_line_error ()
{
    [ "$(wc -l < "$1")" -eq 1 ] || { cat "$1" >&2; fail "not one line"; }
    grep -q '^cowbd-img: ' "$1" || fail "no 'cowbd-img: ' prefix"
    if grep -q -e Sanitizer -e 'runtime error' "$1"; then
        fail "sanitizer report"
    fi
}

# qemu_reads FILE CMD...: each qemu-io command (read -P ...) succeeds on
# FILE, opened read-only, with its pattern verified.
qemu_reads ()
{
    local f=$1 c args=(); shift
    for c in "$@"; do args+=(-c "$c"); done
    qemu-io -r "${args[@]}" "$f" > "$tmp/qio.out" 2>&1 ||
        { cat "$tmp/qio.out" >&2; fail "qemu-io $f failed"; }
    if grep -q -i -e 'verification failed' -e 'error' "$tmp/qio.out"; then
        cat "$tmp/qio.out" >&2
        fail "qemu-io $f: $*"
    fi
}

# make_bad_l2 DIR: QED images made by qemu-img whose first L1 entry (the
# offset of the first L2 table) is damaged, in DIR: l2-past-eof.qed,
# l2-misaligned.qed, l2-in-header.qed (the header made two clusters long,
# the L1 table moved to the end of the file, the entry pointing at the
# header's second cluster), l2-on-l1.qed (pointing at the L1 table).
make_bad_l2 ()
{
    qemu-img create -q -f qed "$1/l2-good.qed" 16M
    qemu-io -c 'write -P 1 0 128k' "$1/l2-good.qed" > /dev/null
    /usr/bin/python3 - "$1" <<'PY'
import shutil, struct, sys
d = sys.argv[1]
good = open(d + "/l2-good.qed", "rb").read()
cs, ts = struct.unpack("<II", good[4:12])
l1 = struct.unpack("<Q", good[40:48])[0]

def make(name, entry, image=good, l1_at=l1):
    b = bytearray(image)
    b[l1_at:l1_at + 8] = struct.pack("<Q", entry)
    open("%s/%s.qed" % (d, name), "wb").write(b)

make("l2-past-eof", 1 << 40)
make("l2-misaligned", struct.unpack("<Q", good[l1:l1 + 8])[0] + 512)
make("l2-on-l1", l1)
# Two header clusters: the old L1 table is copied to the end of the file.
b = bytearray(good)
new_l1 = len(b)
b += good[l1:l1 + ts * cs]
b[12:16] = struct.pack("<I", 2)
b[40:48] = struct.pack("<Q", new_l1)
make("l2-in-header", cs, bytes(b), new_l1)
PY
}

# pty_run OUT INTERRUPT CMD...: runs CMD on a pseudo-terminal, its output
# into OUT; with INTERRUPT=1 interrupts it at its first progress line: to
# be sure the signal comes while the work is under way, whatever the
# machine's speed, CMD is stopped (SIGSTOP), sent SIGINT and continued.
# Prints "exit N" or "signal N".
pty_run ()
{
    /usr/bin/python3 - "$@" <<'PY'
import os, pty, signal, sys
out_file, interrupt, args = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(args[0], args)
out, sent = b"", False
while True:
    try:
        data = os.read(fd, 4096)
    except OSError:               # EIO: the child has gone
        break
    if not data:
        break
    out += data
    if interrupt and not sent and b"%" in out:
        os.kill(pid, signal.SIGSTOP)
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGCONT)
        sent = True
_, status = os.waitpid(pid, 0)
open(out_file, "wb").write(out)
if os.WIFSIGNALED(status):
    print("signal", os.WTERMSIG(status))
else:
    print("exit", os.WEXITSTATUS(status))
PY
}

# kill_rounds ROUNDS CMD...: the kill loop of the crash tests.  CMD (a
# cowbd-img command) runs with COWBD_TEST_PAUSE=30000, which makes it
# pause between its steps, so that kills land inside it too.  The test
# defines:
#   kinds         an array of the kinds of round, taken in turn;
#   fresh KIND R  makes a fresh img for round R (0: the timing run) and
#                 sets args (CMD's arguments) and label (for messages);
#   judge KIND    after a round, sets side to old or new: which side of
#                 the operation img is on (anything else fails the round).
# First, how long CMD takes uninterrupted here for each kind (process
# start included: slow under sanitizers, on a loaded machine); then
# ROUNDS rounds of CMD killed (SIGKILL) at a random moment within that
# time, after which cowbd opens img read-write (repairing what the crash
# left) and serves it (its size in ./size), qemu-img check finds it
# clean, and judge runs (it sees round and label).  The kills must land on both sides.
kill_rounds ()
{
    local rounds=$1 kind round pid ms t0 n_old=0 n_new=0
    local -A took
    shift
    requires cowbd --version
    requires nbdinfo --version
    requires timeout --version
    for kind in "${kinds[@]}"; do
        fresh "$kind" 0
        t0=$(date +%s%N)
        COWBD_TEST_PAUSE=30000 "$@" "${args[@]}" ||
            fail "$kind does not work uninterrupted"
        took[$kind]=$(( ($(date +%s%N) - t0) / 1000000 + 1 ))
        echo "$kind takes ${took[$kind]} ms"
    done
    for round in $(seq 1 "$rounds"); do
        kind=${kinds[round % ${#kinds[@]}]}
        fresh "$kind" "$round"
        COWBD_TEST_PAUSE=30000 "$@" "${args[@]}" &
        pid=$!
        ms=$(( RANDOM % ${took[$kind]} ))
        sleep "$(( ms / 1000 )).$(printf %03d $(( ms % 1000 )))"
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true

        timeout 60 cowbd -U - img --run 'nbdinfo --size "$uri"' > size ||
            fail "round $round ($label): cowbd cannot serve the image"
        qemu_check_clean img
        side=
        judge "$kind"
        echo "round $round ($label): $side"
        case $side in
            old) n_old=$((n_old + 1)) ;;
            new) n_new=$((n_new + 1)) ;;
            *) fail "round $round ($label): neither old nor new: $side" ;;
        esac
    done
    echo "old side $n_old times, new side $n_new times"
    [ "$n_old" -gt 0 ] && [ "$n_new" -gt 0 ] ||
        fail "every kill landed on the same side: old $n_old, new $n_new"
}
