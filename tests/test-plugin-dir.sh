#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# dir= mode (raw, QED and qcow2 images): nbdinfo --list shows every image
# of the directory with its
# description (not a corrupt image, not a subdirectory), each export
# serves its own image, a symbolic link shares its target's open image,
# the default export is the first name, a golden image used as backing file
# is served read-only, an image added while nbdkit runs appears, an overlay
# whose backing file is served writable is refused, and export names
# that are not file names of the directory are refused.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/plugin-functions.sh"
requires nbdinfo --version
requires nbdsh --version
requires qemu-io --version

mkdir "$tmp/images"
cd "$tmp/images"
make_base base.raw raw
qemu-img create -q -f qed base.qed 32M
qemu-io -f qed -c 'write -P 0x5a 0 1M' base.qed > /dev/null
make_clone clone1.qed base.raw raw
make_clone clone2.qed base.qed qed
qemu-img create -q -f qcow2 base.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x6b 0 1M' base.qcow2 > /dev/null
make_clone clone3.qcow2 base.qcow2 qcow2
ln -s clone1.qed link.qed
qemu-img create -q -f raw other.raw 1M
printf 'QED\0this header is cut short' > corrupt.qed
mkdir subdir
base_raw_sum=$(sum base.raw)
base_qed_sum=$(sum base.qed)
base_qcow2_sum=$(sum base.qcow2)
cd "$tmp"

cat > expected-list <<'EOF2'
base.qcow2|qcow2, 16 MiB
base.qed|qed, 32 MiB
base.raw|raw, 64 MiB
clone1.qed|qed, 64 MiB, backing base.raw
clone2.qed|qed, 32 MiB, backing base.qed
clone3.qcow2|qcow2, 16 MiB, backing base.qcow2
link.qed|qed, 64 MiB, backing base.raw
other.raw|raw, 1 MiB
EOF2

# The --run script: $1 is nbdkit's Unix socket.
cat > run.sh <<'EOF2'
#!/usr/bin/env bash
set -e
sock=$1
u () { echo "nbd+unix:///$1?socket=$sock"; }
fail () { echo "dir: FAIL: $*" >&2; exit 1; }
json_field () {   # json_field KEY: from the first export of nbdinfo --json
    python3 -c 'import json, sys
print(json.dumps(json.load(sys.stdin)["exports"][0][sys.argv[1]]))' "$1"
}

nbdinfo --list --json "$(u '')" | python3 -c 'import json, sys
for e in json.load(sys.stdin)["exports"]:
    print("%s|%s" % (e["export-name"], e.get("description")))' > got-list
diff -u expected-list got-list || fail "nbdinfo --list"

# The default export is the first name.
[ "$(nbdinfo --json "$(u '')" | json_field export-name)" = '"base.qcow2"' ] ||
    fail "default export"

# Each export its own image; link.qed is clone1.qed.
nbdsh -u "$(u clone1.qed)" -c 'h.pwrite(b"\xc1" * 65536, 65536); h.flush()'
nbdsh -u "$(u clone2.qed)" -c 'h.pwrite(b"\xc2" * 65536, 65536); h.flush()'
nbdsh -u "$(u clone3.qcow2)" -c 'h.pwrite(b"\xc3" * 65536, 65536); h.flush()'
nbdsh -u "$(u link.qed)" -c '
assert h.pread(65536, 65536) == b"\xc1" * 65536, "link.qed: not clone1"
assert h.pread(4096, 0) == b"\x11" * 4096, "link.qed: backing data"'
nbdsh -u "$(u clone2.qed)" -c '
assert h.pread(65536, 65536) == b"\xc2" * 65536, "clone2.qed: own data"
assert h.pread(4096, 0) == b"\x5a" * 4096, "clone2.qed: backing data"'
nbdsh -u "$(u clone3.qcow2)" -c '
assert h.pread(65536, 65536) == b"\xc3" * 65536, "clone3.qcow2: own data"
assert h.pread(4096, 0) == b"\x6b" * 4096, "clone3.qcow2: backing data"'

# Golden images, backing files of clones, are read-only.
for g in base.raw base.qed base.qcow2; do
    [ "$(nbdinfo --json "$(u $g)" | json_field is_read_only)" = true ] ||
        fail "$g is writable"
done
if nbdsh -u "$(u base.raw)" -c 'h.pwrite(b"x" * 512, 0)' 2>/dev/null; then
    fail "a write to base.raw succeeded"
fi

# other.raw is served writable; an overlay of it, made now, appears in
# the list but is refused while other.raw is open (a client holds it:
# an idle export closes its image).
nbdsh -u "$(u other.raw)" -c '
import nbd, subprocess
assert not h.is_read_only(), "other.raw is read-only"
subprocess.run(["qemu-img", "create", "-q", "-f", "qed", "-b", "other.raw",
                "-F", "raw", "late.qed"], cwd="images", check=True)
names = []
h2 = nbd.NBD()
h2.set_opt_mode(True)
h2.connect_uri(h.get_uri())
h2.opt_list(lambda name, description: names.append(name) or 0)
assert "late.qed" in names, names
h2.set_export_name("late.qed")
try:
    h2.opt_go()
    raise SystemExit("late.qed was served over a writable backing file")
except nbd.Error:
    pass' || fail "other.raw and late.qed"

# Names that are not images of the directory.
for bad in ../images/clone1.qed subdir corrupt.qed missing.qed /etc/passwd; do
    if nbdinfo "$(u "$bad")" > /dev/null 2>&1; then
        fail "export '$bad' was served"
    fi
done
EOF2
chmod +x run.sh

serve -- dir="$tmp/images" --run "'$tmp/run.sh' \"\$unixsocket\"" \
      2> nbdkit.err || { cat nbdkit.err; fail "see above"; }
# (Refused by the lock other.raw's writable open holds, as QEMU would.)
grep -q "late.qed: backing file .*/other.raw: image is in use" \
    nbdkit.err || { cat nbdkit.err; fail "late.qed refused without a message"; }

# What each export wrote is in its own file; golden images are unchanged.
qemu-io -f qed -c 'read -P 0xc1 64k 64k' -c 'read -P 0x11 0 64k' \
    images/clone1.qed | grep -q 'verification failed' && fail "clone1.qed"
qemu-io -f qed -c 'read -P 0xc2 64k 64k' -c 'read -P 0x5a 0 64k' \
    images/clone2.qed | grep -q 'verification failed' && fail "clone2.qed"
qemu-io -f qcow2 -c 'read -P 0xc3 64k 64k' -c 'read -P 0x6b 0 64k' \
    images/clone3.qcow2 | grep -q 'verification failed' && fail "clone3.qcow2"
for f in clone1.qed clone2.qed clone3.qcow2; do qemu_check images/$f; done
[ "$(sum images/base.raw)" = "$base_raw_sum" ] || fail "base.raw changed"
[ "$(sum images/base.qed)" = "$base_qed_sum" ] || fail "base.qed changed"
[ "$(sum images/base.qcow2)" = "$base_qcow2_sum" ] ||
    fail "base.qcow2 changed"
