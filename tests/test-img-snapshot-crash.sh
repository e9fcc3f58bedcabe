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
requires cowbd --version
requires nbdinfo --version
requires timeout --version

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

# fresh KIND OPTS: img, a copy of the template, and args: the snapshot
# arguments.
fresh ()
{
    cp "tmpl.$1.$2" img
    case $1 in
        create) args=(-c new) ;;
        apply) args=(-a a) ;;
        delete) args=(-d b) ;;
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

kinds=(create apply delete)
opts=(lazy_refcounts=off lazy_refcounts=on)
n_old=0 n_new=0

for kind in "${kinds[@]}"; do
    for opt in "${opts[@]}"; do template "$kind" "$opt"; done
done
declare -A took
for kind in "${kinds[@]}"; do
    fresh "$kind" lazy_refcounts=off
    t0=$(date +%s%N)
    COWBD_TEST_PAUSE=30000 cowbd-img snapshot "${args[@]}" img ||
        fail "$kind does not work uninterrupted"
    took[$kind]=$(( ($(date +%s%N) - t0) / 1000000 + 1 ))
    echo "$kind takes ${took[$kind]} ms"
done
for round in $(seq 1 60); do
    kind=${kinds[round % 3]}
    opt=${opts[(round / 3) % 2]}
    fresh "$kind" "$opt"
    COWBD_TEST_PAUSE=30000 cowbd-img snapshot "${args[@]}" img &
    pid=$!
    ms=$(( RANDOM % ${took[$kind]} ))
    sleep "$(( ms / 1000 )).$(printf %03d $(( ms % 1000 )))"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true

    # cowbd opens it read-write (a dirty image is repaired there).
    timeout 60 cowbd -U - img --run 'nbdinfo --size "$uri"' > size ||
        fail "round $round ($kind, $opt): cowbd cannot serve the image"
    qemu_check_clean img
    s=$(side "$kind")
    echo "round $round ($kind, $opt): $s"
    case $s in
        old) n_old=$((n_old + 1)) ;;
        new) n_new=$((n_new + 1)) ;;
        *) fail "round $round ($kind, $opt): neither old nor new: $s" ;;
    esac
    # Snapshot a keeps its data whatever happened.
    qemu-img convert -l snapshot.name=a -O raw img a.raw
    qemu-io -f raw -c 'read -P 0x22 0 2M' a.raw > /dev/null ||
        fail "round $round ($kind, $opt): snapshot a lost its data"
done

echo "old side $n_old times, new side $n_new times"
[ "$n_old" -gt 0 ] && [ "$n_new" -gt 0 ] ||
    fail "every kill landed on the same side: old $n_old, new $n_new"
