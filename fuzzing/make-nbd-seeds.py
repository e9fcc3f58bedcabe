#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
# Writes the seed corpus of fuzz-nbd (corpus-nbd/): whole client sessions
# against its export "vm" (1 MiB), well formed, that reach every option
# and command.  Run from fuzzing/: ./make-nbd-seeds.py
import os
import struct

IHAVEOPT = 0x49484156454F5054
REQ = 0x25609513
OPT = dict(EXPORT_NAME=1, ABORT=2, LIST=3, STARTTLS=5, INFO=6, GO=7,
           STRUCTURED_REPLY=8, LIST_META_CONTEXT=9, SET_META_CONTEXT=10)
CMD = dict(READ=0, WRITE=1, DISC=2, FLUSH=3, TRIM=4, CACHE=5,
           WRITE_ZEROES=6, BLOCK_STATUS=7)
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16


def opt(name, data=b""):
    return struct.pack(">QII", IHAVEOPT, OPT[name], len(data)) + data


def export(name=b"vm", infos=(3,)):
    return (struct.pack(">I", len(name)) + name +
            struct.pack(">H", len(infos)) +
            b"".join(struct.pack(">H", i) for i in infos))


def meta(*queries, name=b"vm"):
    q = b"".join(struct.pack(">I", len(x)) + x for x in queries)
    return struct.pack(">I", len(name)) + name + \
        struct.pack(">I", len(queries)) + q


def req(name, offset=0, length=0, flags=0, handle=1, data=b""):
    return struct.pack(">IHHQQI", REQ, flags, CMD[name], handle, offset,
                       length) + data


def session(*parts):
    return struct.pack(">I", 3) + b"".join(parts)


def commands():
    return b"".join([
        req("WRITE", 4096, 4096, FUA, 1, b"\xab" * 4096),
        req("READ", 0, 65536, 0, 2),
        req("READ", 4096, 4096, DF, 3),
        req("BLOCK_STATUS", 0, 1 << 20, 0, 4),
        req("BLOCK_STATUS", 0, 1 << 20, REQ_ONE, 5),
        req("WRITE_ZEROES", 65536, 131072, NO_HOLE, 6),
        req("WRITE_ZEROES", 262144, 65536, FAST_ZERO, 7),
        req("TRIM", 0, 65536, 0, 8),
        req("CACHE", 0, 1 << 20, 0, 9),
        req("FLUSH", 0, 0, 0, 10),
        req("READ", (1 << 20) - 512, 1024, 0, 11),     # past the end
        req("DISC", 0, 0, 0, 12),
    ])


seeds = {
    "go-structured": session(
        opt("STRUCTURED_REPLY"),
        opt("SET_META_CONTEXT", meta(b"base:allocation",
                                     b"qemu:allocation-depth")),
        opt("GO", export(infos=(0, 1, 2, 3))), commands()),
    "list-info-abort": session(
        opt("LIST"), opt("LIST_META_CONTEXT", meta(b"base:")),
        opt("INFO", export()), opt("INFO", export(b"nope")), opt("ABORT")),
    "export-name-simple": session(opt("EXPORT_NAME", b"vm"), commands()),
    "starttls-then-go": session(opt("STARTTLS"), opt("GO", export()),
                                req("READ", 0, 512), req("DISC")),
}
os.makedirs("corpus-nbd", exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join("corpus-nbd", name), "wb") as f:
        f.write(data)
print("%d seeds in corpus-nbd/" % len(seeds))
