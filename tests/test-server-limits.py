# SPDX-License-Identifier: BSD-3-Clause
# The limits on clients that have not earned their keep
# (test-server-limits.sh runs each case against its own server):
#
#   deadline SOCK URI LIMIT  clients that stall the handshake are dropped
#                            after --handshake-limit=LIMIT seconds, not
#                            before; a served client idle for longer is not
#   bigopt SOCK URI          a client announcing a 1 GiB option is refused
#                            and dropped without its data being read
#   maxconn SOCK URI N       with --max-connections=N open, one more is
#                            closed before the greeting; once one leaves,
#                            clients are served again
#   tls SOCK URI LIMIT       as deadline, for clients stalled inside the
#                            TLS handshake after STARTTLS (URI: nbds)
#
# In each case real clients (nbdinfo, libnbd) are served meanwhile.
import socket
import struct
import subprocess
import sys
import time

import nbd

from nbdraw import IHAVEOPT, connect, greet, opt_bytes, read_reply, recvall

OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 3, 5, 6, 7
REP_ACK = 1
ERR_TOO_BIG = 2**31 + 9

mode, SOCK, URI = sys.argv[1:4]


def closed_by_server(s, timeout):
    """Reads until the server closes the connection (True), or until
    timeout seconds pass with it still open (False)."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        return False
    return True


def served():
    """A real client connects, negotiates and reads."""
    r = subprocess.run(["nbdinfo", URI], stdout=subprocess.DEVNULL,
                       timeout=60)
    assert r.returncode == 0, "nbdinfo was not served"


def libnbd_client():
    h = nbd.NBD()
    h.connect_uri(URI)
    return h


def keep_listing(s):
    """Sends LIST after LIST until the server drops s (a deadline, unlike
    an idle timeout, is not put off by activity)."""
    for _ in range(300):
        try:
            s.sendall(opt_bytes(OPT_LIST))
            while read_reply(s)[1] != REP_ACK:
                pass
        except (EOFError, ConnectionResetError, BrokenPipeError):
            return
        time.sleep(0.1)
    raise AssertionError("a client listing exports was never dropped")


def deadline(limit):
    start = time.monotonic()
    # Connected, sends nothing at all.
    mute = connect(SOCK, 30)
    # Sends its flags and half an option header.
    half = connect(SOCK, 30)
    greet(half)
    half.sendall(opt_bytes(OPT_GO)[:10])
    # Negotiates without end.
    busy = connect(SOCK, 30)
    greet(busy)
    # Served before the deadline; stays idle past it.
    h = libnbd_client()
    served()
    keep_listing(busy)
    for s, what in ((busy, "listing"), (mute, "silent"),
                    (half, "half an option")):
        assert what == "listing" or closed_by_server(s, 30), \
            "%s client never dropped" % what
        elapsed = time.monotonic() - start
        # Dropped, and not before its time (timers may round a little).
        assert elapsed >= limit - 0.25, \
            "%s client dropped after %.2f s" % (what, elapsed)
    served()
    # The handshake deadline does not apply to a client being served.
    time.sleep(0.5)
    assert len(h.pread(512, 0)) == 512
    h.shutdown()
    print("ok: stalled handshakes dropped after %d s, others served" % limit)


def starttls():
    s = connect(SOCK, 30)
    greet(s)
    s.sendall(opt_bytes(OPT_STARTTLS))
    opt, rep, _ = read_reply(s)
    assert opt == OPT_STARTTLS and rep == REP_ACK, "STARTTLS refused"
    return s


def tls_deadline(limit):
    start = time.monotonic()
    # After the ACK: half a ClientHello (a record header announcing 512
    # bytes, and 100 of them), or nothing at all.
    half = starttls()
    half.sendall(b"\x16\x03\x01\x02\x00" + b"\x01" + b"\x00" * 99)
    silent = starttls()
    served()
    for s, what in ((half, "half a ClientHello"), (silent, "silent TLS")):
        assert closed_by_server(s, 30), "%s client never dropped" % what
        elapsed = time.monotonic() - start
        assert elapsed >= limit - 0.25, \
            "%s client dropped after %.2f s" % (what, elapsed)
    served()
    print("ok: stalled TLS handshakes dropped after %d s" % limit)


def bigopt():
    s = connect(SOCK, 30)
    greet(s)
    # 1 GiB announced; a little of it sent, the rest never comes.
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_INFO, 1 << 30) +
              b"\0" * 4096)
    opt, rep, _ = read_reply(s)
    assert opt == OPT_INFO and rep == ERR_TOO_BIG, "reply %x" % rep
    assert closed_by_server(s, 30), "client with a 1 GiB option kept"
    served()
    print("ok: 1 GiB option refused, client dropped")


def refused(s):
    """The server closed s without sending the greeting."""
    try:
        return s.recv(18) == b""
    except ConnectionResetError:
        return True


def maxconn(n):
    # n open: libnbd clients being served and a raw one in the handshake.
    handles = [libnbd_client() for _ in range(n - 1)]
    raw = connect(SOCK, 30)
    recvall(raw, 18)
    extra = connect(SOCK, 30)
    assert refused(extra), "connection %d of %d was served" % (n + 1, n)
    extra.close()
    # A flood of refused clients (the server logs one line, not many).
    for _ in range(20):
        s = connect(SOCK, 30)
        assert refused(s), "a client past the limit was served"
        s.close()
    # Those already in are served meanwhile.
    for h in handles:
        assert len(h.pread(4096, 0)) == 4096
    # One leaves: a new client is served once the server has seen it go.
    raw.close()
    for _ in range(100):
        r = subprocess.run(["nbdinfo", URI], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        if r.returncode == 0:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("no client served after one left")
    for h in handles:
        h.shutdown()
    print("ok: connection %d of %d refused, others served" % (n + 1, n))


if mode == "deadline":
    deadline(int(sys.argv[4]))
elif mode == "bigopt":
    bigopt()
elif mode == "tls":
    tls_deadline(int(sys.argv[4]))
elif mode == "maxconn":
    maxconn(int(sys.argv[4]))
else:
    sys.exit("unknown mode " + mode)
