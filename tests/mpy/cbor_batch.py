# Decodes CBOR items under MicroPython for differential tests on the host.
# stdin: one hex item a line. stdout: "OK <hex of dumps(loads(item))>" or
# "ERR <reason>" (CBORError) or "CRASH <exception>" (anything else).

import sys
from binascii import hexlify, unhexlify

import cbor


def main():
    out = sys.stdout
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        line = line.strip()
        raw = unhexlify(line[1:])  # each line starts with "x" so empty items survive
        try:
            value = cbor.loads(raw)
            out.write("OK " + hexlify(cbor.dumps(value)).decode() + "\n")
        except cbor.CBORError as exc:
            out.write("ERR " + exc.reason + "\n")
        except Exception as exc:
            out.write("CRASH " + repr(exc) + "\n")


main()
