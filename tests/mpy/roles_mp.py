# Roles on the firmware: each of a voucher's, a receipt's, a catalog's, an error
# response's and an owner-signed policy's signature (one key made them all, CPython)
# presented in each role the firmware checks.
#
#   micropython roles_mp.py KEY CHAIN ESCROW CHANNEL AMOUNT REQUEST_HASH DATA_HASH
#                           SEQ VALID_FROM VALID_UNTIL PRODUCTS_HASH VOUCHER_SIG RECEIPT_SIG CATALOG_SIG
#                           ERROR_SIG POLICY_SIG ERROR_CODE POLICY_INTEGERS [PUBLIC_KEY]
#
# The error's detail is null; POLICY_INTEGERS are the policy's nine integers, comma-
# separated, its lists empty: the key's own address is the owner the keeper expects.
# With PUBLIC_KEY (64 bytes, hex) receipts and catalogs are verified against the key, as
# a device provisioned with the provider's key does; without it, their signer is
# recovered and compared with the address. Prints "<made> <presented> holds|refused".

import sys
from binascii import unhexlify

import cbor
import owner_policy as OP
import wallet as W
from keccak import keccak256

a = sys.argv
w = W.Wallet(unhexlify(a[1]), int(a[2]), unhexlify(a[3]))
if len(a) > 19:
    w.provider = W.Provider(w.address, unhexlify(a[19]))
channel, amount = int(a[4]), int(a[5])
request_hash, data_hash = unhexlify(a[6]), unhexlify(a[7])
seq, valid_from, valid_until, products_hash = int(a[8]), int(a[9]), int(a[10]), unhexlify(a[11])
made = {"voucher": unhexlify(a[12]), "receipt": unhexlify(a[13]), "catalog": unhexlify(a[14]),
        "error": unhexlify(a[15]), "policy": unhexlify(a[16])}
error_code = int(a[17])
policy_ints = [int(v) for v in a[18].split(",")]


def as_voucher(sig):
    raw = channel.to_bytes(4, "big") + amount.to_bytes(8, "big") + sig
    return tuple(w.own_voucher(raw)) == (channel, amount)


def as_receipt(sig):
    return w.receipt_signed_by(w.address, channel, amount, request_hash, data_hash, sig)


def as_catalog(sig):
    return w.catalog_signed_by(w.address, seq, valid_from, valid_until, products_hash, sig)


def as_error(sig):
    null_hash = keccak256(cbor.dumps(None))
    return w.error_signed_by(w.address, channel, request_hash, error_code, null_hash, sig)


def as_policy(sig):
    keeper = OP.OwnerPolicy("/nonexistent", w.address, channel, w.separator)
    try:
        keeper.check(cbor.dumps([1] + policy_ints + [[], [], [], sig]), 0)
    except OP.PolicyRefused as exc:
        if exc.reason != "signature":
            raise AssertionError("refused for " + exc.reason + ", not its signature")
        return False
    return True


roles = (("voucher", as_voucher), ("receipt", as_receipt), ("catalog", as_catalog),
         ("error", as_error), ("policy", as_policy))
for name in made:
    for presented, check in roles:
        try:
            verdict = "holds" if check(made[name]) else "refused"
        except ValueError:
            verdict = "refused"
        print(name, presented, verdict)
