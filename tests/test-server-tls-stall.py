# SPDX-License-Identifier: BSD-3-Clause
# Clients that stall the TLS handshake delay nobody: one sends STARTTLS,
# gets its ACK and then half a ClientHello; another sends nothing after
# the ACK.  While both sit there, a real client (the command given) must
# connect and read.  A client that sends bytes after STARTTLS without
# waiting for the ACK (plaintext injected before the handshake) is
# dropped.  Usage: test-server-tls-stall.py SOCKET CMD...
import subprocess
import sys

from nbdraw import connect, greet, opt_bytes, read_reply

OPT_STARTTLS = 5
REP_ACK = 1


def starttls(extra=b""):
    s = connect(sys.argv[1], 10)
    greet(s)
    # One write: injected bytes arrive with STARTTLS, before its ACK.
    s.sendall(opt_bytes(OPT_STARTTLS) + extra)
    opt, rep, _ = read_reply(s)
    assert opt == OPT_STARTTLS and rep == REP_ACK, "STARTTLS not acknowledged"
    return s


half = starttls()
# A TLS record header announcing a 512-byte handshake message, and 100 of
# its bytes.
half.sendall(b"\x16\x03\x01\x02\x00" + b"\x01" + b"\x00" * 99)
silent = starttls()

r = subprocess.run(sys.argv[2:], timeout=20)
assert r.returncode == 0, "the real client failed while others stalled"

# The stalled ones are still connected (not served, not dropped yet).
for s in (half, silent):
    s.setblocking(False)
    try:
        assert s.recv(1) != b"", "a stalled client was dropped early"
    except BlockingIOError:
        pass

injected = starttls(extra=b"plaintext before the handshake")
injected.settimeout(10)
assert injected.recv(100) == b"", "bytes after STARTTLS were not refused"
print("stalled handshakes delayed nobody")
