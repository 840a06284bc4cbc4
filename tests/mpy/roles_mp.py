# Roles on the firmware: each of a voucher's, a receipt's and a catalog's signature (one
# key made all three, CPython) presented in each role the firmware checks.
#
#   micropython roles_mp.py KEY CHAIN ESCROW CHANNEL AMOUNT REQUEST_HASH DATA_HASH
#                           SEQ VALID_FROM VALID_UNTIL PRODUCTS_HASH VOUCHER_SIG RECEIPT_SIG CATALOG_SIG
#                           [PUBLIC_KEY]
#
# With PUBLIC_KEY (64 bytes, hex) receipts and catalogs are verified against the key, as
# a device provisioned with the provider's key does; without it, their signer is
# recovered and compared with the address. Prints "<made> <presented> holds|refused".

import sys
from binascii import unhexlify

import wallet as W

a = sys.argv
w = W.Wallet(unhexlify(a[1]), int(a[2]), unhexlify(a[3]))
if len(a) > 15:
    w.provider = W.Provider(w.address, unhexlify(a[15]))
channel, amount = int(a[4]), int(a[5])
request_hash, data_hash = unhexlify(a[6]), unhexlify(a[7])
seq, valid_from, valid_until, products_hash = int(a[8]), int(a[9]), int(a[10]), unhexlify(a[11])
made = {"voucher": unhexlify(a[12]), "receipt": unhexlify(a[13]), "catalog": unhexlify(a[14])}


def as_voucher(sig):
    raw = channel.to_bytes(4, "big") + amount.to_bytes(8, "big") + sig
    return tuple(w.own_voucher(raw)) == (channel, amount)


def as_receipt(sig):
    return w.receipt_signed_by(w.address, channel, amount, request_hash, data_hash, sig)


def as_catalog(sig):
    return w.catalog_signed_by(w.address, seq, valid_from, valid_until, products_hash, sig)


roles = (("voucher", as_voucher), ("receipt", as_receipt), ("catalog", as_catalog))
for name in ("voucher", "receipt", "catalog"):
    for presented, check in roles:
        try:
            verdict = "holds" if check(made[name]) else "refused"
        except ValueError:
            verdict = "refused"
        print(name, presented, verdict)
