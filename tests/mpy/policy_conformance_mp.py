# The conformance suite's owner-signed policies through the firmware's keeper
# (owner_policy.OwnerPolicy) on MicroPython's unix port.
#
#   micropython policy_conformance_mp.py STATE_DIR OWNER CHAIN_ID ESCROW CHANNEL SIGNED
#
# (owner and escrow as hex). stdin: the policy in force as hex on the first line (the
# unix port refuses an argument that long), then one "x<hex>" a line. The policy in
# force is applied first; before each line the device is back to it, having signed
# SIGNED units. stdout, a line each: "applied", or "refused <reason>", followed by
# " changed" when a refusal left anything different (the policy in force, its seq, the
# record on flash, a temporary file), or "crash <exception>" for anything else raised.

import os
import sys
from binascii import unhexlify

import eip712
import owner_policy as OP


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def main():
    root, owner, chain, escrow, channel, signed = sys.argv[1:7]
    separator = eip712.domain_separator(int(chain), unhexlify(escrow))
    keeper = OP.OwnerPolicy(root, unhexlify(owner), int(channel), separator)
    base = unhexlify(sys.stdin.readline().strip())
    cumulative = int(signed)
    keeper.apply(base, 0)
    base_seq = keeper.seq
    out = sys.stdout
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        data = unhexlify(line.strip()[1:])  # "x" first, so that an empty policy survives
        try:
            keeper.apply(data, cumulative)
            verdict = "applied"
        except OP.PolicyRefused as exc:
            verdict = "refused " + exc.reason
            if (keeper.seq != base_seq or keeper.raw != base or read(keeper.path) != base
                    or read(keeper.tmp) is not None):
                verdict += " changed"
        except Exception as exc:
            verdict = "crash " + repr(exc)
        if keeper.raw != base:  # back to the policy in force, as it is read at boot
            with open(keeper.path, "wb") as f:
                f.write(base)
            if read(keeper.tmp) is not None:
                os.remove(keeper.tmp)
            keeper.load(cumulative)
        out.write(verdict + "\n")


main()
