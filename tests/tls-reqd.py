# SPDX-License-Identifier: BSD-3-Clause
# Under --tls=require, raw plaintext options: LIST, INFO and GO get
# NBD_REP_ERR_TLS_REQD with nothing else in the reply (no export name,
# size or description), STARTTLS gets ACK, and EXPORT_NAME is answered by
# closing the connection.  Usage: tls-reqd.py SOCKET
import struct
import sys

from nbdraw import connect, greet, send_opt, read_reply

OPT_EXPORT_NAME, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 3, 5, 6, 7
REP_ACK = 1
REP_ERR_TLS_REQD = (1 << 31) + 5


def start():
    s = connect(sys.argv[1], 10)
    greet(s)
    return s


def option(s, opt, data=b""):
    send_opt(s, opt, data)
    ropt, rtype, payload = read_reply(s)
    assert ropt == opt, ropt
    return rtype, payload


s = start()
name = b"vm1"
info = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
for opt, data in ((OPT_LIST, b""), (OPT_INFO, info), (OPT_GO, info)):
    rtype, payload = option(s, opt, data)
    assert rtype == REP_ERR_TLS_REQD, "option %d: reply 0x%x" % (opt, rtype)
    assert b"vm1" not in payload and b"qed" not in payload, payload
rtype, payload = option(s, OPT_STARTTLS)
assert rtype == REP_ACK, hex(rtype)
s.close()

s = start()
send_opt(s, OPT_EXPORT_NAME, name)
data = s.recv(4096)
assert data == b"", "EXPORT_NAME in plaintext was answered: %r" % data
print("plaintext options refused with TLS_REQD")
