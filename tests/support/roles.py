"""The signatures of the roles tests: a voucher's, a receipt's, a catalog's, an error
response's and an owner-signed policy's, all made by one key over fields that share their
values (channel = seq, amount = valid_from = the policy's seq, deposit and budget), so
that only the EIP-712 type tells them apart."""

from __future__ import annotations

import functools

from eth_utils import keccak
from nanotoll.protocol.errors import ErrorCode, ProtocolError
from nanotoll.protocol.messages import Product, sign_catalog, sign_error, sign_receipt
from nanotoll.protocol.policy import SpendingPolicy
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
ERROR_CODE = ErrorCode.UNDERPAID  # its detail is null
POLICY = SpendingPolicy(channel_id=CHANNEL, seq=AMOUNT, deposit=AMOUNT, budget=AMOUNT,
                        expiry=UNTIL)


@functools.cache
def signatures() -> dict[str, bytes]:
    return {
        "voucher": sign(KEY, SEPARATOR, CHANNEL, AMOUNT).signature,
        "receipt": sign_receipt(KEY, SEPARATOR, CHANNEL, AMOUNT, REQUEST_HASH, DATA).signature,
        "catalog": sign_catalog(KEY, SEPARATOR, PROVIDER, CHANNEL, AMOUNT, UNTIL,
                                PRODUCTS).signature,
        "error": sign_error(KEY, SEPARATOR, 1, ProtocolError(ERROR_CODE, "underpaid"),
                            CHANNEL, REQUEST_HASH).signature,
        "policy": POLICY.sign(KEY, SEPARATOR).signature,
    }
