# SPDX-License-Identifier: BSD-3-Clause
# Sourced by the TLS tests after server-functions.sh: credentials made on
# the spot with certtool and psktool, in $tmp.
#
#   make_pki DIR [CN]     DIR/ca-cert.pem, server-cert.pem, server-key.pem,
#                         client-cert.pem, client-key.pem: a CA of its own
#                         that signs a server (localhost) and a client
#   make_psk FILE USER    a psktool key file with one random key
#   tls_uri DIR [EXPORT]  nbds+unix URI of the server in $tmp/sock with
#                         the client certificates of DIR
requires certtool --version
requires psktool --version
requires sh -c 'cowbd --version | grep -q "^features:.*tls"'

make_pki ()
{
    local d=$1 cn=${2:-cowbd test CA}
    mkdir -p "$d"
    certtool --generate-privkey --outfile "$d/ca-key.pem" 2>/dev/null
    printf 'cn = %s\nca\ncert_signing_key\nexpiration_days = 2\n' "$cn" \
        > "$d/ca.info"
    certtool --generate-self-signed --load-privkey "$d/ca-key.pem" \
        --template "$d/ca.info" --outfile "$d/ca-cert.pem" 2>/dev/null
    certtool --generate-privkey --outfile "$d/server-key.pem" 2>/dev/null
    printf 'cn = localhost\ndns_name = localhost\ntls_www_server\n%s\n' \
        'encryption_key
signing_key
expiration_days = 2' > "$d/server.info"
    certtool --generate-certificate --load-ca-certificate "$d/ca-cert.pem" \
        --load-ca-privkey "$d/ca-key.pem" --load-privkey "$d/server-key.pem" \
        --template "$d/server.info" --outfile "$d/server-cert.pem" 2>/dev/null
    certtool --generate-privkey --outfile "$d/client-key.pem" 2>/dev/null
    printf 'cn = client\ntls_www_client\nencryption_key\nsigning_key\n%s\n' \
        'expiration_days = 2' > "$d/client.info"
    certtool --generate-certificate --load-ca-certificate "$d/ca-cert.pem" \
        --load-ca-privkey "$d/ca-key.pem" --load-privkey "$d/client-key.pem" \
        --template "$d/client.info" --outfile "$d/client-cert.pem" 2>/dev/null
    [ -s "$d/server-cert.pem" ] && [ -s "$d/client-cert.pem" ] ||
        fail "certtool made no certificates in $d"
}

make_psk ()
{
    psktool -u "$2" -p "$1" >/dev/null 2>&1 || fail "psktool"
}

tls_uri ()
{
    echo "nbds+unix:///${2:-}?socket=$tmp/sock&tls-certificates=$1"
}
