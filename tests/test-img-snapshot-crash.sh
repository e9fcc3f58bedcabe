#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `cowbd-img snapshot -c/-a/-d` killed (SIGKILL) at random moments, 60
# rounds (create, apply, delete in turn, over plain and lazy-refcount
# images): afterwards cowbd opens the image read-write (repairing what
# the crash left) and serves it, `qemu-img check` finds it clean (exit
# 0), the snapshot list is the old one or the new one, and the data is
# what that side says (apply: the old active data or the snapshot's).
# COWBD_TEST_PAUSE makes each operation pause between its steps so that
# kills land inside it too; the kills must land on both sides.
. "${srcdir:-.}/functions.sh"
. "${srcdir:-.}/img-functions.sh"

cd "$tmp"

# template KIND OPTS: tmpl.KIND.OPTS, holding 0x22 in its first 2 MiB
# (in snapshot "a" too; and "b" for delete), made by qemu-img.
template ()
{
    local t=tmpl.$1.$2
    qemu-img create -q -f qcow2 -o cluster_size=4096,"$2" $t 8M
    qemu-io -c 'write -P 0x22 0 2M' $t > /dev/null
    qemu-img snapshot -c a $t
    case $1 in
        apply) qemu-io -c 'write -P 0x33 0 2M' $t > /dev/null ;;
        delete)
            qemu-io -c 'write -P 0x44 1M 1M' $t > /dev/null
            qemu-img snapshot -c b $t ;;
    esac
}

# fresh KIND ROUND: img, a copy of the template for KIND and the
# round's options (plain and lazy refcounts, three rounds each in turn),
# args and label (see kill_rounds).
fresh ()
{
    opt=${opts[($2 / 3) % 2]}
    cp "tmpl.$1.$opt" img
    label="$1, $opt"
    case $1 in
        create) args=(-c new img) ;;
        apply) args=(-a a img) ;;
        delete) args=(-d b img) ;;
    esac
}

# names: the snapshot names of img, on one line.
names ()
{
    qemu-img snapshot -l img | awk 'NR > 2 { printf "%s ", $2 }'
}

# side KIND: "old" or "new", from the list (create, delete) or the data
# (apply); fails if it is neither.
side ()
{
    local l
    l=$(names)
    case $1 in
        create)
            case $l in "a ") echo old ;; "a new ") echo new ;; *) echo "?$l" ;; esac ;;
        delete)
            case $l in "a b ") echo old ;; "a ") echo new ;; *) echo "?$l" ;; esac ;;
        apply)
            [ "$l" = "a " ] || { echo "?$l"; return; }
            # qemu-io exits 1 when the pattern differs.
            if qemu-io -c 'read -P 0x33 0 2M' img > /dev/null; then
                echo old
            elif qemu-io -c 'read -P 0x22 0 2M' img > /dev/null; then
                echo new
            else
                echo "?data"
            fi ;;
    esac
}

# judge KIND: the side img is on; snapshot a keeps its data whatever
# happened.
judge ()
{
    side=$(side "$1")
    qemu-img convert -l snapshot.name=a -O raw img a.raw
    qemu-io -f raw -c 'read -P 0x22 0 2M' a.raw > /dev/null ||
        fail "round $round ($label): snapshot a lost its data"
}

kinds=(create apply delete)
opts=(lazy_refcounts=off lazy_refcounts=on)
for kind in "${kinds[@]}"; do
    for opt in "${opts[@]}"; do template "$kind" "$opt"; done
done
kill_rounds 60 cowbd-img snapshot
