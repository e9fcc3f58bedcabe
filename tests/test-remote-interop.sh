#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Remote backing images: a golden image served over NBD by cowbd, by
# nbdkit's file plugin and by qemu-nbd.  For each, qemu-img makes a qcow2
# overlay with an nbd+unix:// backing file, qemu-io writes into it, and
# cowbd serves it: qemu-img convert of the export equals qemu-img's own
# reading of the chain.  The other way round, cowbd-img creates overlays
# (qcow2, QED) of nbd://127.0.0.1:PORT/golden, qemu-io writes and
# qemu-img reads them, and cowbd-img info, map, check, compare, convert
# and rebase work on them.  Once with TLS-PSK to the remote.
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/tls-functions.sh"
requires nbdkit --version
requires qemu-nbd --version
requires cowbd-img --version
requires sh -c 'cowbd --version'
cd "$tmp"

# 16 MiB golden image: data, a hole, more data.
qemu-img create -q -f raw golden.raw 16M
qemu-io -f raw -c 'write -P 0x11 0 3M' -c 'write -P 0x22 8M 1M' \
    -c 'write -P 0x33 15M 1M' golden.raw > /dev/null

remote_pid=
start_remote ()
{
    local kind=$1
    rm -f gsock
    case "$kind" in
        cowbd) cowbd -r -U "$tmp/gsock" golden="$tmp/golden.raw" \
                   2> remote.log & ;;
        nbdkit) nbdkit -f -r -U "$tmp/gsock" -e golden file \
                    "$tmp/golden.raw" 2> remote.log & ;;
        qemu-nbd) qemu-nbd -r -t -e 8 -k "$tmp/gsock" -x golden -f raw \
                      "$tmp/golden.raw" 2> remote.log & ;;
    esac
    remote_pid=$!
    cleanup_fn "[ -n \"\$remote_pid\" ] && kill \$remote_pid 2>/dev/null"
    wait_for_socket "$tmp/gsock"
}

stop_remote ()
{
    kill "$remote_pid"
    wait "$remote_pid" 2>/dev/null || :
    remote_pid=
}

# qemu-img's overlay over each remote, served by cowbd.
for kind in cowbd nbdkit qemu-nbd; do
    start_remote "$kind"
    rm -f c.qcow2 export.raw chain.raw
    qemu-img create -q -f qcow2 -b "nbd+unix:///golden?socket=$tmp/gsock" \
        -F raw c.qcow2 || fail "$kind: qemu-img create"
    qemu-io -f qcow2 -c 'write -P 0xc1 1M 64K' -c 'write -P 0xc2 8M 4K' \
        -c 'write -P 0xc3 12M 1M' c.qcow2 > /dev/null ||
        fail "$kind: qemu-io write"
    start_server -r c.qcow2
    qemu-img convert -f raw -O raw "$(uri)" export.raw ||
        fail "$kind: reading the export"
    qemu-img convert -U -f qcow2 -O raw c.qcow2 chain.raw
    cmp export.raw chain.raw ||
        fail "$kind: cowbd's export differs from qemu-img's reading"
    stop_server
    # The nbdkit plugin reads the same (one engine, one registry).
    if [ -f "${COWBD_PLUGIN:-}" ]; then
        rm -f plugin.raw
        nbdkit_env timeout -k 10 120 nbdkit -r -U - "$COWBD_PLUGIN" \
            c.qcow2 remote-timeout=5 \
            --run 'qemu-img convert -f raw -O raw "$uri" plugin.raw' ||
            fail "$kind: the plugin cannot read the overlay"
        cmp plugin.raw chain.raw || fail "$kind: the plugin reads otherwise"
    fi
    stop_remote
done

# cowbd-img's overlays of a golden image served on TCP 127.0.0.1, read by
# qemu-img and cowbd-img.  Expected content: the same writes on a copy.
cp golden.raw expected.raw
qemu-io -f raw -c 'write -P 0xd1 2M 64K' -c 'write -P 0xd2 9M 512' \
    expected.raw > /dev/null
cat > tcp.sh <<'EOF'
set -e
b="nbd://127.0.0.1:$port/golden"
for fmt in qcow2 qed; do
    rm -f "d.$fmt" "d-$fmt.raw"
    cowbd-img create -q -f $fmt -b "$b" -F raw "d.$fmt"
    qemu-img info "d.$fmt" | grep -q "backing file: $b"
    qemu-io -f $fmt -c 'write -P 0xd1 2M 64K' -c 'write -P 0xd2 9M 512' \
        "d.$fmt" > /dev/null
    qemu-img convert -f $fmt -O raw "d.$fmt" "d-$fmt.raw"
    cmp "d-$fmt.raw" expected.raw
    cowbd-img check "d.$fmt" > /dev/null
    qemu-img check "d.$fmt" > /dev/null
    cowbd-img compare "d.$fmt" expected.raw > /dev/null
    rm -f "e-$fmt.raw"
    cowbd-img convert -O raw "d.$fmt" "e-$fmt.raw"
    cmp "e-$fmt.raw" expected.raw
    cowbd-img info --output=json "d.$fmt" |
        jq -e --arg b "$b" '.["backing-filename"] == $b' > /dev/null
    cowbd-img map --output=json "d.$fmt" > "map-$fmt.json"
    qemu-img map --output=json "d.$fmt" > "qmap-$fmt.json"
    # Both see the overlay's own clusters at depth 0, the rest below.
    jq -e '[.[] | select(.depth == 0 and .data)] | length > 0' \
        "map-$fmt.json" > /dev/null
done
# A relative-path rule never applies to a URI: a copy in a subfolder
# still reads the same remote.
mkdir -p sub && cp d.qcow2 sub/d.qcow2
cowbd-img compare sub/d.qcow2 expected.raw > /dev/null
# Rebase (safe mode) onto a local copy of the golden image: same content.
cp golden.raw golden-copy.raw
cowbd-img rebase -b golden-copy.raw -F raw d.qcow2
qemu-img info d.qcow2 | grep -q 'backing file: golden-copy.raw'
qemu-img compare -f qcow2 -F raw d.qcow2 expected.raw > /dev/null
EOF
cowbd -r -i 127.0.0.1 -p 0 golden="$tmp/golden.raw" \
    --run "bash -x $tmp/tcp.sh" 2> tcp.log ||
    { cat tcp.log; fail "cowbd-img overlays of nbd://127.0.0.1"; }

# The remote's own format read through the engine: a qcow2 golden image
# served as it is on disk (nbdkit's file plugin), backing format qcow2.
# A remote image that names a local backing file is refused.
qemu-img convert -f raw -O qcow2 golden.raw golden.qcow2
qemu-img create -q -f qcow2 -b "$tmp/golden.raw" -F raw evil.qcow2
rm -f gsock
nbdkit -f -r -U "$tmp/gsock" file dir="$tmp" 2> remote.log &
remote_pid=$!
wait_for_socket "$tmp/gsock"
rm -f q.qcow2 e.qcow2
cowbd-img create -q -f qcow2 -b "nbd+unix:///golden.qcow2?socket=$tmp/gsock" \
    -F qcow2 q.qcow2 || fail "overlay of a remote qcow2 image"
cowbd-img compare q.qcow2 golden.raw > /dev/null ||
    fail "remote qcow2 read through the engine differs"
qemu-img compare -f qcow2 -F raw q.qcow2 golden.raw > /dev/null ||
    fail "qemu-img reads the remote qcow2 overlay differently"
cowbd-img create -q -u -f qcow2 -F qcow2 \
    -b "nbd+unix:///evil.qcow2?socket=$tmp/gsock" e.qcow2 16M
expect_fail cowbd-img compare e.qcow2 golden.raw
cowbd-img compare e.qcow2 golden.raw 2> err.txt || :
grep -q "cannot name a local backing file" err.txt ||
    { cat err.txt; fail "a remote image named a local backing file"; }
stop_remote

# A remote that is not there: one line naming the URI, non-zero exit.
rm -f gone.qcow2
expect_fail cowbd-img create -q -f qcow2 -F raw \
    -b "nbd+unix:///golden?socket=$tmp/nowhere" gone.qcow2
cowbd-img create -q -f qcow2 -F raw \
    -b "nbd+unix:///golden?socket=$tmp/nowhere" gone.qcow2 2> err.txt || :
[ "$(grep -c . err.txt)" -eq 1 ] &&
    grep -q "golden?socket=$tmp/nowhere: cannot connect" err.txt ||
    { cat err.txt; fail "create: not one line naming the remote"; }
cowbd-img create -q -u -f qcow2 -F raw \
    -b "nbd+unix:///golden?socket=$tmp/nowhere" gone.qcow2 16M
# info shows the overlay and warns, exit 0, as qemu-img info does; check
# and a server refuse it.
cowbd-img info gone.qcow2 > info.txt 2> err.txt ||
    { cat err.txt; fail "info: an overlay of a missing remote not shown"; }
grep -q '^image: gone.qcow2' info.txt || fail "info: no image line"
[ "$(grep -c . err.txt)" -eq 1 ] &&
    grep -q "warning: .*golden?socket=$tmp/nowhere: cannot connect" err.txt ||
    { cat err.txt; fail "info: not one warning naming the remote"; }
expect_fail cowbd-img check gone.qcow2
cowbd-img check gone.qcow2 2> err.txt || :
[ "$(grep -c . err.txt)" -eq 1 ] &&
    grep -q "golden?socket=$tmp/nowhere: cannot connect" err.txt ||
    { cat err.txt; fail "check: not one line naming the remote"; }

# TLS-PSK to the remote (qemu-img cannot name a PSK file in a URI: the
# overlay is cowbd-img's and cowbd reads it).
make_psk "$tmp/keys.psk" alice
rm -f gsock
cowbd -r --tls=require --tls-psk="$tmp/keys.psk" -U "$tmp/gsock" \
    golden="$tmp/golden.raw" 2> remote.log &
remote_pid=$!
wait_for_socket "$tmp/gsock"
tb="nbds+unix://alice@/golden?socket=$tmp/gsock&tls-psk-file=$tmp/keys.psk"
rm -f t.qcow2
cowbd-img create -q -f qcow2 -b "$tb" -F raw t.qcow2 ||
    fail "create over TLS-PSK"
start_server t.qcow2
nbdsh -u "$(uri)" -c '
h.pwrite(b"\xd1" * 65536, 2 << 20)
h.pwrite(b"\xd2" * 512, 9 << 20)
h.flush()'
rm -f t.raw
qemu-img convert -f raw -O raw "$(uri)" t.raw
cmp t.raw expected.raw || fail "TLS-PSK remote: export differs"
stop_server
# qemu cannot open the backing URI (a PSK file in it): check the overlay
# alone.
qemu-img check "json:{\"driver\":\"qcow2\",\"backing\":null,\"file\":{\"driver\":\"file\",\"filename\":\"$tmp/t.qcow2\"}}" \
    > /dev/null || fail "TLS-PSK overlay fails qemu-img check"
stop_remote
exit 0
