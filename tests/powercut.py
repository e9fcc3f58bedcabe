# SPDX-License-Identifier: BSD-3-Clause
# The power-loss simulator of test-fault-powercut.sh (a helper, run with
# /usr/bin/python3):
#
#   powercut.py --journal J --image ORIG --orig-raw RAW --format FMT
#               --cuts N --seed S --work DIR [--repair N]
#
# J is the journal faultshim.c wrote while cowbd served a copy of ORIG
# (the image before the workload; RAW is what it reads as) to
# test-fault-powercut.py, whose markers are in J too.  The states are
# written to DIR, where ORIG's backing file must be found under the name
# its header gives.  For N cut points
# (a fixed random seed; half of them just before a sync, where most is
# at stake), the image file is rebuilt as a power cut there could leave
# it: every write, truncate and allocation before the last sync before
# the cut is there; of those after it, none, all, an in-order prefix, an
# in-order suffix, or a random subset are (the cut's "mode").  In a
# subset a write is torn: each of its 4 KiB pages (of the file) is kept
# or not on its own, as the page cache writes pages back in any order.
# What a filesystem shows after such a cut is what the state holds: a
# write not kept leaves the bytes it would have changed as they were
# (zeros inside the file where nothing was ever durably written), and
# the length is what the kept truncates and writes made it (a write past
# the end that is not kept does not lengthen the file).  Each state is
# then judged by tools nobody here wrote:
#   - qemu-img check finds no corruption (leaks are allowed; a dirty
#     image with lazy refcounts is judged after the repair below);
#   - qemu-img convert reads it: every 4 KiB block the client touched
#     holds the content of a write (or zero) sent before the cut, no
#     older than the last one a FLUSH or FUA acknowledged before it (or
#     the original, if none), and every other block reads as in RAW;
#   - for up to --repair states left dirty, cowbd-img check -r all (what
#     an open does) and then qemu-img check must be clean.
# States are judged once per content (many cuts leave the same bytes);
# --no-check judges the content only.  Exit 0 if every cut passes, 1
# otherwise; a summary line either way.
import argparse
import hashlib
import json
import os
import random
import struct
import subprocess
import sys

BLOCK = 4096
HDR = struct.Struct("<BBHIQQQ")
FALLOC_KEEP_SIZE = 0x01


def block_content(b, g):
    """What generation g of block b holds (negative g: zeroes)."""
    if g < 0:
        return bytes(BLOCK)
    return struct.pack("<QQ", b, g) + bytes([g % 251 + 1]) * (BLOCK - 16)


def read_journal(path):
    events = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        t, _, plen, mode, off, length, dlen = HDR.unpack_from(data, pos)
        pos += HDR.size
        p = data[pos:pos + plen].decode()
        pos += plen
        payload = data[pos:pos + dlen]
        pos += dlen
        events.append((chr(t), p, mode, off, length, payload))
    return events


def torn(ev):
    """A write as the pieces a power cut may keep or lose on their own:
    its parts in each 4 KiB page of the file.  Other events whole."""
    t, path, mode, off, length, payload = ev
    if t != "W":
        return [ev]
    out, pos = [], 0
    while pos < len(payload):
        n = min(len(payload) - pos, BLOCK - (off + pos) % BLOCK)
        out.append((t, path, mode, off + pos, n, payload[pos:pos + n]))
        pos += n
    return out


def cut_points(events, target, n, rng):
    """n cut points: half anywhere, half just before a sync."""
    syncs = [i for i, e in enumerate(events) if e[0] == "S" and
             e[1] == target] or [len(events)]
    points = [rng.randrange(len(events) + 1) for _ in range(n - n // 2)]
    points += [rng.choice(syncs) for _ in range(n // 2)]
    return sorted(points)


def survivors(pending, mode, rng):
    """What of the unsynced events a cut in this mode keeps."""
    if mode == "all":
        return pending
    if mode == "prefix":
        return pending[:rng.randint(0, len(pending))]
    if mode == "suffix":
        return pending[rng.randint(0, len(pending)):]
    if mode == "subset":
        return [p for e in pending for p in torn(e) if rng.random() < 0.5]
    return []


class FileState:
    """A file's bytes and length."""
    def __init__(self, data):
        self.data = bytearray(data)

    def copy(self):
        return FileState(self.data)

    def _extend(self, end):
        if end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))

    def apply(self, ev):
        t, _, mode, off, length, payload = ev
        if t == "W":
            self._extend(off + len(payload))
            self.data[off:off + len(payload)] = payload
        elif t == "T":
            if length < len(self.data):
                del self.data[length:]
            else:
                self._extend(length)
        elif t == "F":
            end = off + length
            if not mode & FALLOC_KEEP_SIZE:
                self._extend(end)
            end = min(end, len(self.data))
            if mode & ~FALLOC_KEEP_SIZE and end > off:
                self.data[off:end] = bytes(end - off)


class FlushCount:
    """How each acknowledged FLUSH made things durable, from the syncs
    and writes between the client's marker before it and its own:
    'one' a sync after table writes (data and tables share it), 'two' two
    syncs, 'empty' one sync with nothing written, 'other' anything else."""
    def __init__(self):
        self.counts = dict.fromkeys(("one", "two", "empty", "other"), 0)
        self.syncs, self.wrote = 0, False

    def event(self, ev):
        if ev[0] == "S":
            self.syncs += 1
        elif ev[0] in "WTF" and self.syncs == 0:
            self.wrote = True

    def marker(self, text):
        if text == "F":
            kind = "other"
            if self.syncs == 2:
                kind = "two"
            elif self.syncs == 1:
                kind = "one" if self.wrote else "empty"
            self.counts[kind] += 1
        self.syncs, self.wrote = 0, False

    def __str__(self):
        c = self.counts
        return ("flushes: %d with one sync after table writes, %d with two "
                "syncs, %d with nothing to write, %d other" %
                (c["one"], c["two"], c["empty"], c["other"]))


class Client:
    """What the client had sent and had acknowledged as durable."""
    def __init__(self):
        self.sent = {}          # block -> [generation, ...] in order
        self.acked = []         # (block, gen) acknowledged, not flushed
        self.durable = {}       # block -> index into sent[block]

    def snapshot(self):
        return ({b: list(g) for b, g in self.sent.items()},
                dict(self.durable))

    def marker(self, text):
        w = text.split()
        if w[0] == "S":
            self.sent.setdefault(int(w[1]), []).append(int(w[2]))
        elif w[0] == "A":
            self.acked.append((int(w[1]), int(w[2])))
        elif w[0] == "D":
            self._durable(int(w[1]), int(w[2]))
        elif w[0] == "F":
            for b, g in self.acked:
                self._durable(b, g)
            self.acked = []

    def _durable(self, b, g):
        i = self.sent[b].index(g)
        if self.durable.get(b, -1) < i:
            self.durable[b] = i


def summarize(raw, orig):
    """What judging needs of a state's guest content: the blocks that
    differ from the original, with their content.  None if the size
    differs."""
    if len(raw) != len(orig):
        return None
    diff, chunk = {}, 64 * BLOCK
    for c in range(0, len(orig), chunk):
        if raw[c:c + chunk] == orig[c:c + chunk]:
            continue
        for o in range(c, min(c + chunk, len(orig)), BLOCK):
            if raw[o:o + BLOCK] != orig[o:o + BLOCK]:
                diff[o // BLOCK] = bytes(raw[o:o + BLOCK])
    return diff


def judge_content(diff, orig, snap):
    """None if the image reads as the cut allows, else what is wrong."""
    sent, durable = snap
    if diff is None:
        return "the virtual size changed"
    for b in diff:
        if b not in sent:
            return "block %d changed, yet nothing wrote it" % b
    for b, gens in sent.items():
        first = durable.get(b)
        original = orig[b * BLOCK:(b + 1) * BLOCK]
        got = diff.get(b, original)
        ok = [block_content(b, g) for g in gens[first or 0:]]
        if first is None:
            ok.append(original)
        if got not in ok:
            return ("block %d: neither its original content nor a write "
                    "sent since the last durable one (%s)" %
                    (b, "none" if first is None else gens[first]))
    return None


def run(cmd):
    return subprocess.run(cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def header_dirty(path, fmt):
    with open(path, "rb") as f:
        h = f.read(104)
    if fmt == "qed":
        return bool(struct.unpack_from("<Q", h, 16)[0] & 2)
    if fmt == "qcow2" and struct.unpack_from(">I", h, 4)[0] >= 3:
        return bool(struct.unpack_from(">Q", h, 72)[0] & 1)
    return False


def lazy(path):
    with open(path, "rb") as f:
        h = f.read(88)
    return struct.unpack_from(">I", h, 4)[0] >= 3 and \
        bool(struct.unpack_from(">Q", h, 80)[0] & 1)


class Judge:
    """Cut states are collected first (written to files, one per
    distinct content), then judged together: qemu-img check in two
    threads, qemu-img convert of many states at once (it concatenates its
    sources), then each cut's content."""
    def __init__(self, a):
        self.a = a
        self.paths = {}         # sha1 -> file
        self.cuts = []          # (sha1, snapshot, where)
        self.raws = {}          # raw: sha1 -> summary
        self.repairs = 0

    def add(self, st, snap, where):
        key = hashlib.sha1(st.data).hexdigest()
        if key not in self.paths and self.a.format == "raw":
            self.paths[key] = None
            self.raws[key] = summarize(st.data, self.orig)
        elif key not in self.paths:
            path = os.path.join(self.a.work, "cut-%d.%s" %
                                (len(self.paths), self.a.format))
            with open(path, "wb") as f:
                f.write(st.data)
            self.paths[key] = path
        self.cuts.append((key, snap, where))

    def qemu_check(self, path):
        r = run(["qemu-img", "check", "--output=json", "-f", self.a.format,
                 path])
        try:
            j = json.loads(r.stdout[r.stdout.index("{"):])
        except ValueError:
            return "qemu-img check failed: %s" % r.stdout.strip()
        if j.get("corruptions", 0) or j.get("check-errors", 0):
            return "qemu-img check: %d corruptions, %d errors" % (
                j.get("corruptions", 0), j.get("check-errors", 0))
        return None

    def check_one(self, path):
        """A state's metadata: qemu-img check, and for a dirty state
        (a sample of them) the repair an open runs, then the check."""
        dirty = header_dirty(path, self.a.format)
        if dirty and self.a.format == "qcow2" and lazy(path):
            problem = None      # stale refcounts are what lazy means
        else:
            problem = self.qemu_check(path)
        if problem or not dirty:
            return problem
        with self.lock:
            if self.repairs >= self.a.repair:
                return None
            self.repairs += 1
        copy = path + ".repair"
        with open(path, "rb") as f, open(copy, "wb") as g:
            g.write(f.read())
        r = run(["cowbd-img", "check", "-q", "-r", "all", "-f",
                 self.a.format, copy])
        if r.returncode != 0:
            problem = "cowbd-img check -r all: %s" % r.stdout.strip()
        else:
            problem = self.qemu_check(copy)
            if problem:
                problem = "after the repair: " + problem
        os.unlink(copy)
        return problem

    def read_all(self, keys):
        """Every state's content summary, read by qemu-img convert in
        batches."""
        sums, size = {}, len(self.orig)
        for i in range(0, len(keys), 20):
            batch = keys[i:i + 20]
            out = os.path.join(self.a.work, "cuts.raw")
            r = run(["qemu-img", "convert", "-U", "-f", self.a.format,
                     "-O", "raw"] + [self.paths[k] for k in batch] + [out])
            if r.returncode != 0:
                # One bad state: read them one by one to name it.
                for k in batch:
                    sums[k] = self.read_one(k)
                continue
            with open(out, "rb") as f:
                data = f.read()
            os.unlink(out)
            for j, k in enumerate(batch):
                sums[k] = summarize(data[j * size:(j + 1) * size], self.orig)
        return sums

    def read_one(self, key):
        out = os.path.join(self.a.work, "cut.raw")
        r = run(["qemu-img", "convert", "-U", "-f", self.a.format, "-O",
                 "raw", self.paths[key], out])
        if r.returncode != 0:
            return "qemu-img convert: %s" % r.stdout.strip()
        with open(out, "rb") as f:
            data = f.read()
        os.unlink(out)
        return summarize(data, self.orig)

    def judge(self):
        """Number of failing cuts (each one reported)."""
        import threading
        from concurrent.futures import ThreadPoolExecutor
        self.lock = threading.Lock()
        keys = list(self.paths)
        problems = dict.fromkeys(keys)
        if self.a.format == "raw":
            raws = self.raws
        else:
            if not self.a.no_check:
                with ThreadPoolExecutor(2) as ex:
                    for k, p in zip(keys, ex.map(
                            lambda k: self.check_one(self.paths[k]), keys)):
                        problems[k] = p
            raws = self.read_all(keys)
        failures = 0
        for key, snap, where in self.cuts:
            raw = raws[key]
            problem = problems[key] or (raw if isinstance(raw, str) else
                                        judge_content(raw, self.orig,
                                                      snap))
            if problem:
                print("cut %s: %s" % (where, problem), file=sys.stderr)
                failures += 1
        for path in self.paths.values():
            if path:
                os.unlink(path)
        return failures


def main():
    ap = argparse.ArgumentParser()
    for o in ("journal", "image", "orig-raw", "format", "work"):
        ap.add_argument("--" + o, required=True)
    ap.add_argument("--cuts", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repair", type=int, default=10)
    ap.add_argument("--label", default=None, help="for the summary line")
    ap.add_argument("--no-check", action="store_true",
                    help="judge the content only (the negative control)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    events = read_journal(a.journal)
    image = os.path.realpath(a.image)
    files = {e[1] for e in events if e[0] in "WTF"}
    if len(files) != 1:
        print("the journal writes %d files, expected 1: %s" %
              (len(files), sorted(files)), file=sys.stderr)
        return 1
    target = files.pop()
    judge = Judge(a)
    with open(a.orig_raw, "rb") as f:
        judge.orig = f.read()
    with open(image, "rb") as f:
        durable = FileState(f.read())
    points = cut_points(events, target, a.cuts, rng)
    client, pending, p = Client(), [], 0
    flushes = FlushCount()
    for i in range(len(events) + 1):
        while p < len(points) and points[p] == i:
            mode = rng.choice(("none", "all", "prefix", "suffix", "subset"))
            st = durable.copy()
            for e in survivors(pending, mode, rng):
                st.apply(e)
            judge.add(st, client.snapshot(), "%d/%d (%s of %d unsynced)" %
                      (i, len(events), mode, len(pending)))
            p += 1
        if i == len(events):
            break
        ev = events[i]
        if ev[0] == "M":
            client.marker(ev[5].decode())
            flushes.marker(ev[5].decode())
            continue
        elif ev[1] != target:
            continue
        flushes.event(ev)
        if ev[0] == "S":
            for e in pending:
                durable.apply(e)
            pending = []
        else:
            pending.append(ev)
    failures = judge.judge()
    print("%s: %s" % (a.label or a.format, flushes))
    print("%s: %d cuts over %d journal events, %d distinct states, "
          "%d repaired, %d failures" %
          (a.label or a.format, len(judge.cuts), len(events),
           len(judge.paths), judge.repairs, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
