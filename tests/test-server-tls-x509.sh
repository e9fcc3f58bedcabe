#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# TLS with X.509 certificates (certtool-made, in the test):
#  - --tls=require: nbdinfo, nbdsh (write, read back, flush) and nbdcopy
#    over TLS; qemu-io with --object tls-creds-x509;
#  - a plaintext client gets TLS_REQD and learns no export name, size or
#    description (nbdinfo --list, and raw options: tls-reqd.py);
#    a client trusting another CA fails (qemu-io, which verifies);
#  - --tls-verify-peer: a client without a certificate is refused, one
#    with a certificate the CA signed is served;
#  - --tls=on: plaintext and TLS clients both served.
. "${srcdir:-.}/server-functions.sh"
. "${srcdir:-.}/tls-functions.sh"
requires nbdinfo --version
requires nbdcopy --version
requires $PYTHON -c 'import nbd'

pki=$tmp/pki
make_pki "$pki"
make_pki "$tmp/other" "another CA"        # trusts nobody we know
mkdir "$tmp/nocert"
cp "$pki/ca-cert.pem" "$tmp/nocert/"       # trusts our CA, has no cert

make_image qed img.qed

# --tls=require
start_server --tls=require --tls-certificates="$pki" vm1="$tmp/img.qed"
nbdinfo --json "$(tls_uri "$pki" vm1)" > "$tmp/info.json"
grep -q '"export-size": 16777216' "$tmp/info.json" || fail "nbdinfo over TLS"
$PYTHON - "$(tls_uri "$pki" vm1)" <<'PY'
import sys, nbd
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
assert h.get_size() == 16 << 20
data = bytes(range(256)) * 4096              # 1 MiB
h.pwrite(data, 3 << 20)
h.flush()
assert h.pread(len(data), 3 << 20) == data, "read back over TLS"
h.shutdown()
PY
nbdcopy --connections=2 "$(tls_uri "$pki" vm1)" "$tmp/copy.raw"
# The write above was flushed: the image on disk holds it.  (-U: the
# server holds the image's locks.)
qemu-img compare -U -q -f raw -F qed "$tmp/copy.raw" "$tmp/img.qed" ||
    fail "nbdcopy over TLS differs from the image"

# A plaintext client: refused, and told nothing about the exports.
if nbdinfo --list "$(uri)" > "$tmp/plain.out" 2>&1; then
    cat "$tmp/plain.out"; fail "plaintext --list succeeded under --tls=require"
fi
if grep -q -e vm1 -e 'qed' -e 16777216 "$tmp/plain.out"; then
    cat "$tmp/plain.out"; fail "a plaintext client learned about the exports"
fi
# The raw replies: TLS_REQD for LIST, INFO and GO, a dropped EXPORT_NAME.
/usr/bin/python3 "$srcdir/tls-reqd.py" "$tmp/sock"
# A client trusting another CA: qemu verifies the server's certificate.
if qemu-io --object "tls-creds-x509,id=tls0,endpoint=client,dir=$tmp/other" \
       --image-opts "driver=nbd,server.type=unix,server.path=$tmp/sock,tls-creds=tls0,tls-hostname=localhost" \
       -c 'read 0 4k' > "$tmp/untrusted.out" 2>&1; then
    fail "a client that does not trust our CA connected"
fi
grep -q -i "issuer\|certificate" "$tmp/untrusted.out" ||
    { cat "$tmp/untrusted.out"; fail "untrusted CA: not a certificate error"; }
stop_server

# --tls-verify-peer
start_server --tls=require --tls-certificates="$pki" --tls-verify-peer \
    "$tmp/img.qed"
if nbdinfo "$(tls_uri "$tmp/nocert")" > /dev/null 2>&1; then
    fail "a client without a certificate was served under --tls-verify-peer"
fi
nbdinfo "$(tls_uri "$pki")" > /dev/null || fail "client certificate refused"
qemu-io --object "tls-creds-x509,id=tls0,endpoint=client,dir=$pki" \
    --image-opts "driver=nbd,server.type=unix,server.path=$tmp/sock,tls-creds=tls0,tls-hostname=localhost" \
    -c 'write -P 0x6b 8M 64k' -c 'read -P 0x6b 8M 64k' > "$tmp/qemu-io.out"
if grep -q -i -e fail -e error "$tmp/qemu-io.out"; then
    cat "$tmp/qemu-io.out"; fail "qemu-io over TLS"
fi
stop_server

# --tls=on: both kinds of client.
start_server --tls=on --tls-certificates="$pki" "$tmp/img.qed"
nbdinfo "$(uri)" | grep -q 'without TLS' || fail "--tls=on: plaintext client"
nbdinfo "$(tls_uri "$pki")" | grep -q 'with TLS' || fail "--tls=on: TLS client"
stop_server
qemu-img check -q "$tmp/img.qed"
