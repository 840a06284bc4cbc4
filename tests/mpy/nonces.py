# The first RFC 6979 nonce candidates of the firmware, for a host-side check of
# the retry path (taken about once in 2^128 signatures, so never by chance).
# stdin: "KEY_HEX DIGEST_HEX" lines. stdout: three nonces a line, in hex.

import sys
from binascii import hexlify, unhexlify

import secp256k1

while True:
    line = sys.stdin.readline()
    if not line:
        break
    key, digest = line.split()
    msg = (int.from_bytes(unhexlify(digest), "big") % secp256k1.N).to_bytes(32, "big")
    nonces = secp256k1._nonces(unhexlify(key), msg)
    print(" ".join(hexlify(next(nonces).to_bytes(32, "big")).decode() for _ in range(3)))
