# SPDX-License-Identifier: BSD-3-Clause
# The handshake of the NBD protocol over a raw Unix socket, for the tests
# that must send what no client library would (test-server-malformed.py,
# tls-reqd.py, test-server-tls-stall.py).  Imported from the
# directory of the script that uses it.
import socket
import struct

NBDMAGIC = 0x4e42444d41474943
IHAVEOPT = 0x49484156454f5054
REPMAGIC = 0x3e889045565a9


def connect(path, timeout):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def recvall(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("server closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def greet(s, flags=3):
    """Reads the server's greeting and sends the client flags (3: fixed
    newstyle, no zeroes)."""
    magic, opt, hflags = struct.unpack(">QQH", recvall(s, 18))
    assert magic == NBDMAGIC and opt == IHAVEOPT, "bad greeting"
    s.sendall(struct.pack(">I", flags))


def opt_bytes(opt, data=b""):
    """An option as the client sends it."""
    return struct.pack(">QII", IHAVEOPT, opt, len(data)) + data


def send_opt(s, opt, data=b""):
    s.sendall(opt_bytes(opt, data))


def read_reply(s):
    """One option reply: (option, reply type, payload)."""
    magic, opt, rep, length = struct.unpack(">QIII", recvall(s, 20))
    assert magic == REPMAGIC, "bad option reply magic"
    return opt, rep, recvall(s, length)
