# Flash comb tables and verification against a known key, under MicroPython.
#   comb_tables.py boot TABLE REBUILD KEY_HEX DIGEST_HEX
#       use_table(TABLE, rebuild=REBUILD == "1"), then sign DIGEST with KEY; prints
#       "status <what use_table said>" or "refused <why>", then "signature <hex>"
#       or "sign-refused <why>"
#   comb_tables.py write TABLE [PUBLIC_HEX]
#       write the table for G (or for the public key) at TABLE
#   comb_tables.py verify PUBLIC_HEX [TABLE [G_TABLE]]
#       stdin: "DIGEST_HEX SIGNATURE_HEX" lines; stdout: 1 or 0 for each, checked
#       against the key with its comb table at TABLE when given (and G's at G_TABLE)

import sys
from binascii import hexlify, unhexlify

import secp256k1


def boot(path, rebuild, key, digest):
    try:
        print("status", secp256k1.use_table(path, rebuild=rebuild == "1"))
    except secp256k1.TableError as exc:
        print("refused", exc)
    try:
        print("signature", hexlify(secp256k1.sign(unhexlify(key), unhexlify(digest))).decode())
    except secp256k1.TableError as exc:
        print("sign-refused", exc)


def verify(public, table=None, g_table=None):
    if g_table:
        secp256k1.use_table(g_table, rebuild=False)
    comb = secp256k1.open_table(table, public) if table else None
    key = secp256k1.PublicKey(public, comb)
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        digest, signature = line.split()
        print(1 if key.verify(unhexlify(digest), unhexlify(signature)) else 0)


command = sys.argv[1]
if command == "boot":
    boot(*sys.argv[2:6])
elif command == "write":
    secp256k1.write_table(sys.argv[2], unhexlify(sys.argv[3]) if len(sys.argv) > 3 else None)
elif command == "verify":
    verify(unhexlify(sys.argv[2]), *sys.argv[3:5])
else:
    raise SystemExit("unknown command " + command)
