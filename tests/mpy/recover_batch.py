# Public-key recovery under MicroPython, for property tests on the host.
# stdin: "DIGEST_HEX SIGNATURE_HEX" lines (64-byte compact signatures).
# stdout: the recovered 64-byte public key in hex, or "ERROR <class>".

import sys
from binascii import hexlify, unhexlify

import secp256k1

while True:
    line = sys.stdin.readline()
    if not line:
        break
    digest, signature = line.split()
    try:
        print(hexlify(secp256k1.recover(unhexlify(digest), unhexlify(signature))).decode())
    except ValueError as exc:
        print("ERROR", type(exc).__name__)
