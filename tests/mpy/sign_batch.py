# Signs a batch of vouchers under MicroPython, for property tests on the host.
# stdin: one request a line, "KEY_HEX CHAIN_ID CONTRACT_HEX CHANNEL AMOUNT".
# stdout: one line each, "ADDRESS_HEX DIGEST_HEX WIRE_HEX", or "ERROR <class> <message>".

import sys
from binascii import hexlify, unhexlify

import voucher


def main():
    signers = {}
    out = sys.stdout
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        key, chain_id, contract, channel, amount = line.split()
        try:
            cache_key = key + chain_id + contract
            signer = signers.get(cache_key)
            if signer is None:
                signer = voucher.VoucherSigner(unhexlify(key), int(chain_id), contract)
                signers = {cache_key: signer}
            wire = signer.sign_voucher(int(channel), int(amount))
            out.write(
                hexlify(signer.address).decode()
                + " "
                + hexlify(signer.digest(int(channel), int(amount))).decode()
                + " "
                + hexlify(wire).decode()
                + "\n"
            )
        except ValueError as exc:
            out.write("ERROR " + type(exc).__name__ + " " + str(exc) + "\n")


main()
