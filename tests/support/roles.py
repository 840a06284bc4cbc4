"""The three signatures of the roles tests: a voucher's, a receipt's and a catalog's, all
made by one key over fields that share their values (channel = seq, amount = valid_from),
so that only the EIP-712 type tells them apart."""

from __future__ import annotations

import functools

from eth_utils import keccak
from nanotoll.protocol.messages import Product, sign_catalog, sign_receipt
from nanotoll.protocol.signing import address_of
from nanotoll.protocol.voucher import sign

from support.gateway_support import DEVICE_KEY, Device

KEY = DEVICE_KEY
SEPARATOR = Device(1).separator
ADDRESS = address_of(KEY)
CHANNEL, AMOUNT, UNTIL = 1, 1500, 1_800_000_000
REQUEST_HASH = keccak(b"request bytes")
DATA = b"data bytes"
PRODUCTS = (Product("weather", 1500, "nowcast"),)
PROVIDER = bytes.fromhex(ADDRESS[2:])


@functools.cache
def signatures() -> dict[str, bytes]:
    return {
        "voucher": sign(KEY, SEPARATOR, CHANNEL, AMOUNT).signature,
        "receipt": sign_receipt(KEY, SEPARATOR, CHANNEL, AMOUNT, REQUEST_HASH, DATA).signature,
        "catalog": sign_catalog(KEY, SEPARATOR, PROVIDER, CHANNEL, AMOUNT, UNTIL,
                                PRODUCTS).signature,
    }
