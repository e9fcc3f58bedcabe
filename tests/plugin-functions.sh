# SPDX-License-Identifier: BSD-3-Clause
# Sourced by the plugin's tests, after functions.sh:
#   . "${srcdir:-.}/functions.sh"
#   . "${srcdir:-.}/plugin-functions.sh"
#
# Skips the test unless the plugin was built and the oracles are there,
# and gives the tests a few shared steps: serving an image in captive mode
# (with nbdsh running a script), making a backing file with data and holes
# and a clone of it, the QED header's NEED_CHECK bit, checks that a file
# did not change.

requires test -f "$COWBD_PLUGIN"
requires nbdkit --version
requires qemu-img --version

# nbdsh is `python3 -m nbd`; the python3 first on PATH may lack the module
# (Debian's python3-libnbd installs it for /usr/bin/python3 only).
if ! python3 -c 'import nbd' 2>/dev/null &&
        /usr/bin/python3 -c 'import nbd' 2>/dev/null; then
    mkdir -p "$tmp/bin"
    printf '#!/bin/sh\nexec /usr/bin/python3 -m nbd "$@"\n' > "$tmp/bin/nbdsh"
    chmod +x "$tmp/bin/nbdsh"
    PATH="$tmp/bin:$PATH"
    export PATH
fi

# serve [NBDKIT-OPTIONS] -- PLUGIN-PARAMS... --run CMD: runs nbdkit with
# the plugin on a private Unix socket for as long as CMD runs (bounded),
# and exits with CMD's status.
serve ()
{
    local opts=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    nbdkit_env timeout -k 10 120 nbdkit "${opts[@]}" -U - "$COWBD_PLUGIN" "$@"
}

# run_py [NBDSH-OPTIONS] SCRIPT: a --run command: nbdsh running the
# Python file $tmp/SCRIPT against the export (its handle h).
run_py ()
{
    local script=${!#}
    echo "nbdsh ${*:1:$#-1} -u \"\$uri\" -c 'exec(open(\"$tmp/$script\").read())'"
}

# make_base FILE FORMAT: a 64 MiB backing file with data, holes and a
# zero-filled but allocated range:
#   [0, 1M) 0x11, [1M, 2M) hole, [2M, 2M+64K) 0x22, [3M, 3M+4K) zeros
#   written (allocated), [8M, 8M+512K) 0x33, [63M, 64M) 0x44, rest holes.
make_base ()
{
    local file=$1 fmt=$2
    qemu-img create -q -f "$fmt" "$file" 64M
    qemu-io -f "$fmt" \
        -c 'write -P 0x11 0 1M' \
        -c 'write -P 0x22 2M 64k' \
        -c 'write -P 0x00 3M 4k' \
        -c 'write -P 0x33 8M 512k' \
        -c 'write -P 0x44 63M 1M' \
        "$file" >/dev/null
}

# The formats the data tests serve: qed and qcow2 overlays, each over
# every format of backing file, and a raw image of its own.
FORMATS="raw qed qcow2"
BASES="raw qed qcow2"

# bases_for FORMAT: the backing formats a FORMAT image is tried over (raw
# has no backing file: its image is a copy of a raw base).
bases_for ()
{
    if [ "$1" = raw ]; then echo raw; else echo "$BASES"; fi
}

# make_clone IMAGE BACKING BACKING-FORMAT: a fresh image, of the format
# IMAGE's extension names: an overlay of BACKING (qed, qcow2), or a copy
# of it (raw).
make_clone ()
{
    if [ "${1##*.}" = raw ]; then
        qemu-img convert -q -f "$3" -O raw "$2" "$1"
    else
        qemu-img create -q -f "${1##*.}" -b "$(basename "$2")" -F "$3" "$1"
    fi
}

# fresh_clone FORMAT BASE-FORMAT: in the current folder, a fresh
# base.BASE-FORMAT (make_base) and clone.FORMAT of it (make_clone), every
# other base.* and clone.* removed; base_sum: the base's sum (see
# clone_intact).
fresh_clone ()
{
    rm -f base.* clone.*
    make_base base.$2 $2
    make_clone clone.$1 base.$2 $2
    base_sum=$(sum base.$2)
}

# clone_intact FORMAT BASE-FORMAT: after a round over fresh_clone's
# images, qemu-img check finds nothing wrong in clone.FORMAT and its base
# did not change.
clone_intact ()
{
    qemu_check clone.$1
    [ "$(sum base.$2)" = "$base_sum" ] || fail "$1/$2: the backing file changed"
}

# need_check QED-FILE: true if the header's NEED_CHECK feature bit (0x02 of
# the features field at byte 16) is set.
need_check ()
{
    local b
    b=$(od -An -tu1 -j16 -N1 "$1" | tr -d ' ')
    [ $(( b & 2 )) -ne 0 ]
}

# left_clean OVERLAY: true if the overlay is not marked as needing a check
# (QED NEED_CHECK, qcow2 dirty bit).
left_clean ()
{
    case ${1##*.} in
        raw) true ;;
        qed) ! need_check "$1" ;;
        qcow2) qemu-img info --output=json "$1" |
                   grep -q '"dirty-flag": false' ;;
    esac
}

# sum FILE: the file's SHA-256, to prove later that it did not change.
sum ()
{
    sha256sum "$1" | cut -d' ' -f1
}

# qemu_check FILE: qemu-img check must find nothing wrong (raw: nothing
# to check).
qemu_check ()
{
    [ "${1##*.}" = raw ] && return 0      # qemu cannot check raw
    qemu-img check -q "$1" || fail "qemu-img check $1 failed"
}
