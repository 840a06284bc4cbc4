"""Protocol error codes (docs/protocol.md, "Error codes"). Numbers are wire values."""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    OK = 0
    MALFORMED = 1  # not strict CBOR, or not the request schema
    TOO_LARGE = 2  # message over the size limit
    UNSUPPORTED_VERSION = 3
    UNKNOWN_PRODUCT = 4
    BAD_PARAMS = 5  # params fail the product's schema
    WRONG_TOPIC = 6  # topic device id is not the channel's signer, or not a request topic
    UNKNOWN_CHANNEL = 10
    CHANNEL_EXPIRING = 11  # expired, or within the gateway's safety margin of expiry
    WRONG_PAYEE = 12  # the channel pays someone other than this provider
    BAD_SIGNATURE = 13  # high-s, malformed, or not the channel's signer
    UNDERPAID = 14  # cumulative - last accepted < price
    OVERDRAFT = 15  # cumulative above the channel deposit
    STALE_VOUCHER = 16  # cumulative not above the last accepted; detail = that voucher
    PRICE_CHANGED = 17  # price or catalog seq differs from the current catalog; detail = seq
    BUSY = 30  # transient: retry the same request later
    PROVIDER_ERROR = 31  # the data source failed; nothing was charged


class ProtocolError(Exception):
    """A request the gateway answers with an error code instead of data."""

    def __init__(self, code: ErrorCode, message: str, detail: object = None) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.detail = detail
