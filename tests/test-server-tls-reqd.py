# SPDX-License-Identifier: BSD-3-Clause
# Under --tls=require, raw plaintext options: LIST, INFO and GO get
# NBD_REP_ERR_TLS_REQD with nothing else in the reply (no export name,
# size or description), STARTTLS gets ACK, and EXPORT_NAME is answered by
# closing the connection.  Usage: test-server-tls-reqd.py SOCKET
import socket
import struct
import sys

IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3e889045565a9
OPT_EXPORT_NAME, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 3, 5, 6, 7
REP_ACK = 1
REP_ERR_TLS_REQD = (1 << 31) + 5


def connect():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sys.argv[1])
    greeting = recv_exact(s, 18)
    assert struct.unpack(">QQ", greeting[:16])[1] == IHAVEOPT
    s.sendall(struct.pack(">I", 3))             # fixed newstyle, no zeroes
    return s


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("connection closed after %d of %d bytes" % (len(b), n))
        b += c
    return b


def option(s, opt, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)
    magic, ropt, rtype, rlen = struct.unpack(">QIII", recv_exact(s, 20))
    assert magic == REPLY_MAGIC and ropt == opt, (hex(magic), ropt)
    payload = recv_exact(s, rlen)
    return rtype, payload


s = connect()
name = b"vm1"
info = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
for opt, data in ((OPT_LIST, b""), (OPT_INFO, info), (OPT_GO, info)):
    rtype, payload = option(s, opt, data)
    assert rtype == REP_ERR_TLS_REQD, "option %d: reply 0x%x" % (opt, rtype)
    assert b"vm1" not in payload and b"qed" not in payload, payload
rtype, payload = option(s, OPT_STARTTLS)
assert rtype == REP_ACK, hex(rtype)
s.close()

s = connect()
s.sendall(struct.pack(">QII", IHAVEOPT, OPT_EXPORT_NAME, len(name)) + name)
data = s.recv(4096)
assert data == b"", "EXPORT_NAME in plaintext was answered: %r" % data
print("plaintext options refused with TLS_REQD")
