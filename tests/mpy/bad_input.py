# Bad input to the firmware's signing API: each case must raise ValueError (or a
# subclass) and never return a signature. Prints "CASE <name> <outcome>" lines.

import secp256k1
import voucher

N = secp256k1.N
KEY = (0x1234).to_bytes(32, "big")
CONTRACT = "0x95C62b7BCa32875bad1194Eb8c6A158277366Fd9"


def attempt(name, call):
    try:
        result = call()
    except ValueError as exc:
        print("CASE", name, "refused", type(exc).__name__, str(exc).replace(" ", "_"))
        return
    except Exception as exc:
        print("CASE", name, "crashed", type(exc).__name__)
        return
    if isinstance(result, (bytes, bytearray)):
        result = len(result)
    print("CASE", name, "returned", result)


signer = voucher.VoucherSigner(KEY, 31337, CONTRACT)
attempt("key zero", lambda: voucher.VoucherSigner(bytes(32), 31337, CONTRACT))
attempt("key n", lambda: voucher.VoucherSigner(N.to_bytes(32, "big"), 31337, CONTRACT))
attempt("key above n", lambda: voucher.VoucherSigner((N + 5).to_bytes(32, "big"), 1, CONTRACT))
attempt("key all ones", lambda: voucher.VoucherSigner(b"\xff" * 32, 1, CONTRACT))
attempt("key 31 bytes", lambda: voucher.VoucherSigner(b"\x01" * 31, 1, CONTRACT))
attempt("key 33 bytes", lambda: voucher.VoucherSigner(b"\x01" * 33, 1, CONTRACT))
attempt("key as int", lambda: voucher.VoucherSigner(5, 1, CONTRACT))
attempt("sign key zero", lambda: secp256k1.sign(bytes(32), bytes(32)))
attempt("sign key n", lambda: secp256k1.sign(N.to_bytes(32, "big"), bytes(32)))
attempt("sign short digest", lambda: secp256k1.sign(KEY, bytes(31)))
attempt("address key zero", lambda: secp256k1.address(bytes(32)))
attempt("chain zero", lambda: voucher.VoucherSigner(KEY, 0, CONTRACT))
attempt("contract 19 bytes", lambda: voucher.VoucherSigner(KEY, 1, bytes(19)))
attempt("contract bad hex", lambda: voucher.VoucherSigner(KEY, 1, "0x" + "zz" * 20))
attempt("channel zero", lambda: signer.sign_voucher(0, 1))
attempt("channel negative", lambda: signer.sign_voucher(-1, 1))
attempt("channel 2^32", lambda: signer.sign_voucher(1 << 32, 1))
attempt("channel 2^40", lambda: signer.sign_voucher(1 << 40, 1))
attempt("channel bytes", lambda: signer.sign_voucher(b"\x00\x00\x00\x01", 1))
attempt("channel 5 bytes", lambda: signer.sign_voucher(b"\x00\x00\x00\x00\x01", 1))
attempt("channel bool", lambda: signer.sign_voucher(True, 1))
attempt("channel float", lambda: signer.sign_voucher(1.0, 1))
attempt("channel str", lambda: signer.sign_voucher("1", 1))
attempt("amount zero", lambda: signer.sign_voucher(1, 0))
attempt("amount negative", lambda: signer.sign_voucher(1, -5))
attempt("amount 2^64", lambda: signer.sign_voucher(1, 1 << 64))
attempt("amount 2^80", lambda: signer.sign_voucher(1, 1 << 80))
attempt("amount float", lambda: signer.sign_voucher(1, 5.0))
attempt("amount None", lambda: signer.sign_voucher(1, None))
attempt("packed amount zero", lambda: signer.sign_voucher_packed(1, 0))
attempt("unpack short", lambda: voucher.unpack(bytes(75)))
attempt("unpack zero channel", lambda: voucher.unpack(bytes(76)))
attempt(
    "check foreign voucher",
    lambda: voucher.VoucherSigner((7).to_bytes(32, "big"), 31337, CONTRACT).check_voucher(
        signer.sign_voucher(3, 9)
    ),
)
attempt(
    "recover high s",
    lambda: secp256k1.recover(bytes(32), b"\x01" * 32 + (secp256k1.HALF_N + 1).to_bytes(32, "big")),
)
attempt("recover r = n", lambda: secp256k1.recover(bytes(32), N.to_bytes(32, "big") + KEY))
attempt("recover r off curve", lambda: secp256k1.recover(bytes(32), (5).to_bytes(32, "big") + KEY))
attempt("recover r zero", lambda: secp256k1.recover(bytes(32), bytes(32) + b"\x01" * 32))
# the good calls still work after all that
attempt("good voucher", lambda: signer.sign_voucher(1, 1))
attempt("good max voucher", lambda: signer.sign_voucher((1 << 32) - 1, (1 << 64) - 1))
attempt("own voucher", lambda: signer.check_voucher(signer.sign_voucher(3, 9)))
attempt("own packed voucher", lambda: signer.check_voucher(signer.sign_voucher_packed(3, 9)))
attempt(
    "packed is wire[2:]", lambda: signer.sign_voucher_packed(4, 5) == signer.sign_voucher(4, 5)[2:]
)
