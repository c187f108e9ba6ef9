#!/usr/bin/env python3
"""siphash_ref.py - row ids computed independently of the C code, for test_pseudo's pinned values.

SipHash-2-4 written from its paper (Aumasson and Bernstein, 2012), checked against the paper's
test vector, with the framing cg_pseudo.h documents. usage: tests/scripts/siphash_ref.py
"""
import hashlib
import hmac
import struct

M = (1 << 64) - 1


def rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & M


def siphash24(key, msg):
    k0, k1 = struct.unpack("<QQ", key)
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261,
         k1 ^ 0x7465646279746573]

    def rnd():
        v[0] = (v[0] + v[1]) & M; v[1] = rotl(v[1], 13); v[1] ^= v[0]; v[0] = rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & M; v[3] = rotl(v[3], 16); v[3] ^= v[2]
        v[0] = (v[0] + v[3]) & M; v[3] = rotl(v[3], 21); v[3] ^= v[0]
        v[2] = (v[2] + v[1]) & M; v[1] = rotl(v[1], 17); v[1] ^= v[2]; v[2] = rotl(v[2], 32)

    b = (len(msg) & 0xFF) << 56
    full = len(msg) - len(msg) % 8
    for i in range(0, full, 8):
        m = struct.unpack("<Q", msg[i:i + 8])[0]
        v[3] ^= m; rnd(); rnd(); v[0] ^= m
    for i, c in enumerate(msg[full:]):
        b |= c << (8 * i)
    v[3] ^= b; rnd(); rnd(); v[0] ^= b
    v[2] ^= 0xFF
    for _ in range(4):
        rnd()
    return struct.pack("<Q", v[0] ^ v[1] ^ v[2] ^ v[3])


assert siphash24(bytes(range(16)), bytes(range(15))).hex() == "e545be4961ca29a1"  # the paper's


def id63(h):
    v = int.from_bytes(h[:8], "big") & 0x7FFFFFFFFFFFFFFF
    return v or 1


def row_id(key, kind, ns, parts):
    id_key = hmac.new(key, b"\0cohortgate/row-id-key/v4", hashlib.sha256).digest()[:16]
    msg = b"\0cohortgate/row-id/v4\x1f" + bytes([kind]) + struct.pack(">I", len(ns)) + ns
    for p in parts:
        msg += b"\0" if p is None else b"\1" + struct.pack(">I", len(p)) + p
    return id63(siphash24(id_key, b"\0" + msg))


if __name__ == "__main__":
    key = b"cohortgate-test-key-0123456789ab"
    parts = [b"GENHOSP", b"FIL889", b"4548-4", b""]
    print(row_id(key, 1, b"measurement", parts))
    print(row_id(key, 1, b"measurement", parts[:3] + [None]))
    print(row_id(key, 2, b"measurement", parts))
    print(row_id(key, 1, b"", []))
