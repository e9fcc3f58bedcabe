# SPDX-License-Identifier: BSD-3-Clause
# Hostile and broken clients over raw sockets.  Each case runs on its own
# connection; afterwards a well-behaved client must still be served (the
# shell wrapper checks that, and that the server exits cleanly).
# Usage: test-server-malformed.py SOCKET EXPORT_SIZE
import os
import socket
import struct
import sys

import nbdraw
from nbdraw import IHAVEOPT, recvall, greet, send_opt, read_reply

SOCK = sys.argv[1]
SIZE = int(sys.argv[2])

REQMAGIC = 0x25609513
SIMPLE = 0x67446698
STRUCT = 0x668e33ef
OPT_GO, OPT_INFO, OPT_LIST, OPT_STRUCTURED, OPT_SET_META = 7, 6, 3, 8, 10
OPT_EXPORT_NAME, OPT_ABORT, OPT_STARTTLS = 1, 2, 5
REP_ACK, REP_INFO = 1, 3
ERR_UNSUP, ERR_INVALID, ERR_UNKNOWN, ERR_TOO_BIG = (
    2**31 + 1, 2**31 + 3, 2**31 + 6, 2**31 + 9)
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_BS = 0, 1, 2, 3, 7
EINVAL, ENOSPC, EPERM = 22, 28, 1


def connect():
    return nbdraw.connect(SOCK, 30)


def expect_closed(s, what):
    """The server must close this connection (after whatever it sent)."""
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    s.close()
    print("ok: %s: connection closed" % what)


def go(s, name=b"", structured=False):
    """Negotiates and enters transmission; returns the export flags."""
    if structured:
        send_opt(s, OPT_STRUCTURED)
        assert read_reply(s)[1] == REP_ACK
    send_opt(s, OPT_GO, struct.pack(">I", len(name)) + name +
             struct.pack(">H", 0))
    eflags = None
    while True:
        _, rep, data = read_reply(s)
        if rep == REP_ACK:
            return eflags
        assert rep == REP_INFO, "GO failed with %x" % rep
        if struct.unpack(">H", data[:2])[0] == 0:
            size, eflags = struct.unpack(">QH", data[2:])
            assert size == SIZE


def request(s, cmd, offset, count, flags=0, handle=1, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQMAGIC, flags, cmd, handle, offset,
                          count) + payload)


def simple_reply(s, handle=1):
    magic, err, h = struct.unpack(">IIQ", recvall(s, 16))
    assert magic == SIMPLE, "expected a simple reply, magic %x" % magic
    assert h == handle, "handle %d, expected %d" % (h, handle)
    return err


def structured_error(s, handle=1):
    """Reads one structured reply that must be a single error chunk."""
    magic, flags, typ, h, length = struct.unpack(">IHHQI", recvall(s, 20))
    assert magic == STRUCT and h == handle and flags & 1, "bad chunk"
    assert typ == 2**15 + 1, "expected an error chunk, got type %d" % typ
    payload = recvall(s, length)
    return struct.unpack(">I", payload[:4])[0]


def read_ok(s, offset=0, count=512, handle=7):
    request(s, CMD_READ, offset, count, handle=handle)
    assert simple_reply(s, handle) == 0
    return recvall(s, count)


# ---- the handshake ---------------------------------------------------------

s = connect()
recvall(s, 18)
s.sendall(os.urandom(1000))
expect_closed(s, "garbage instead of the client flags")

s = connect()
greet(s)
s.sendall(b"\xff" * 16 + os.urandom(100))
expect_closed(s, "bad option magic")

s = connect()
greet(s, flags=0x80)
expect_closed(s, "unknown client flags")

# An option longer than the cap is refused and the client dropped, its
# data never read (test-server-limits.py sends 1 GiB of it).
s = connect()
greet(s)
s.sendall(struct.pack(">QII", IHAVEOPT, OPT_INFO, 4 << 20))
try:
    # Some of the data; the server may already have dropped us.
    s.sendall(b"\0" * 65536)
except (BrokenPipeError, ConnectionResetError):
    pass
_, rep, _ = read_reply(s)
assert rep == ERR_TOO_BIG, "huge option: reply %x" % rep
expect_closed(s, "4 MiB option refused")

# A claimed length of 4 GiB - 1 followed by a disconnect.
s = connect()
greet(s)
s.sendall(struct.pack(">QII", IHAVEOPT, OPT_LIST, 0xffffffff) + b"x" * 100)
s.close()
print("ok: 4 GiB option then disconnect")

# Inconsistent GO payloads, unknown exports and options, STARTTLS.
s = connect()
greet(s)
send_opt(s, OPT_GO, struct.pack(">I", 1000) + b"abc")
assert read_reply(s)[1] == ERR_INVALID
send_opt(s, OPT_GO, struct.pack(">I", 3) + b"abc" + struct.pack(">H", 5))
assert read_reply(s)[1] == ERR_INVALID
send_opt(s, OPT_INFO, struct.pack(">I", 6) + b"nosuch" + struct.pack(">H", 0))
assert read_reply(s)[1] == ERR_UNKNOWN
send_opt(s, 4242, b"whatever")
assert read_reply(s)[1] == ERR_UNSUP
send_opt(s, OPT_STARTTLS)
assert read_reply(s)[1] == ERR_UNSUP
send_opt(s, OPT_LIST, b"junk")
assert read_reply(s)[1] == ERR_INVALID
send_opt(s, OPT_SET_META, struct.pack(">I", 0) + struct.pack(">I", 1) +
         struct.pack(">I", 100) + b"base:")
assert read_reply(s)[1] == ERR_INVALID, "SET_META without structured replies"
send_opt(s, OPT_STRUCTURED)
assert read_reply(s)[1] == REP_ACK
send_opt(s, OPT_SET_META, struct.pack(">I", 0) + struct.pack(">I", 1) +
         struct.pack(">I", 100) + b"base:")
assert read_reply(s)[1] == ERR_INVALID, "query longer than the option"
send_opt(s, OPT_ABORT)
assert read_reply(s)[1] == REP_ACK
expect_closed(s, "bad options answered, then ABORT")

s = connect()
greet(s)
send_opt(s, OPT_EXPORT_NAME, b"nosuch")
expect_closed(s, "EXPORT_NAME of an unknown export")

s = connect()
greet(s)
s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, 100) + b"\0" * 10)
s.close()
print("ok: option cut short")

# ---- transmission ----------------------------------------------------------

s = connect()
greet(s)
go(s)
request(s, 99, 0, 512, handle=2)
assert simple_reply(s, 2) == EINVAL, "unknown command"
request(s, CMD_READ, 0, 512, flags=0x80, handle=3)
assert simple_reply(s, 3) == EINVAL, "unknown flag"
request(s, CMD_BS, 0, 512, handle=4)
assert simple_reply(s, 4) == EINVAL, "block status without a context"
request(s, CMD_FLUSH, 1, 0, handle=5)
assert simple_reply(s, 5) == EINVAL, "flush with an offset"
for off, cnt in ((SIZE, 1), (SIZE - 1, 2), (2**64 - 512, 1024), (0, 0)):
    request(s, CMD_READ, off, cnt, handle=6)
    assert simple_reply(s, 6) == EINVAL, "read at %d+%d" % (off, cnt)
# Writes past the end: ENOSPC, and their payload is skipped over.
request(s, CMD_WRITE, SIZE - 100, 200, handle=8, payload=b"w" * 200)
assert simple_reply(s, 8) == ENOSPC, "write past the end"
request(s, CMD_WRITE, 2**64 - 1, 2, handle=9, payload=b"ww")
assert simple_reply(s, 9) == ENOSPC, "write at 2^64 - 1"
# A write longer than the 32 MiB limit: refused, payload skipped.
request(s, CMD_WRITE, 0, 33 << 20, handle=10)
for _ in range(33 * 16):
    s.sendall(b"\x01" * 65536)
assert simple_reply(s, 10) == EINVAL, "write over 32 MiB"
assert read_ok(s, 0, 512) != b"\x01" * 512, "the refused write was written"
print("ok: invalid requests refused, connection still usable")
# A write announcing far more than the server takes (1 GiB) is not read
# and dropped for as long as the client sends: the connection closes.
request(s, CMD_WRITE, 0, 1 << 30, handle=13)
expect_closed(s, "a 1 GiB write")
s = connect()
greet(s)
go(s)
# A bad request magic ends the connection.
s.sendall(b"\xde\xad\xbe\xef" + b"\0" * 24)
expect_closed(s, "bad request magic")

# Structured replies: errors of reads come as error chunks.
s = connect()
greet(s)
go(s, structured=True)
request(s, CMD_READ, SIZE, 512, handle=11)
assert structured_error(s, 11) == EINVAL
request(s, CMD_READ, 0, 512, flags=0x40, handle=12)
assert structured_error(s, 12) == EINVAL
request(s, CMD_DISC, 0, 0)
expect_closed(s, "structured errors, then DISC")

# A write whose payload stops short, then the client goes away.
s = connect()
greet(s)
go(s)
request(s, CMD_WRITE, 0, 1 << 20, handle=13, payload=b"\x02" * 1000)
s.close()
print("ok: short write payload then disconnect")

# A request header cut in the middle.
s = connect()
greet(s)
go(s)
s.sendall(struct.pack(">IHH", REQMAGIC, 0, CMD_READ))
s.close()
print("ok: truncated request")

# Many requests without reading the replies, then disconnect.  The
# server stops reading once its replies back up, so sending stops too.
s = connect()
greet(s)
go(s)
s.settimeout(1)
try:
    for i in range(5000):
        request(s, CMD_READ, 0, 65536, handle=100 + i)
except socket.timeout:
    pass
s.close()
print("ok: %d reads sent, replies never read" % i)

# DISC after requests: the replies still come, then the close.
s = connect()
greet(s)
go(s)
request(s, CMD_READ, 0, 4096, handle=20)
request(s, CMD_DISC, 0, 0)
assert simple_reply(s, 20) == 0
recvall(s, 4096)
expect_closed(s, "DISC after a read")

# Finally a good client on a fresh connection.
s = connect()
greet(s)
go(s)
read_ok(s, SIZE - 512, 512)
request(s, CMD_DISC, 0, 0)
expect_closed(s, "well-behaved client")
