"""Receipts: the provider's signature over what it served, or over the error it answered,
with its key parsed once."""

from __future__ import annotations

from ...protocol.errors import ProtocolError
from ...protocol.messages import Receipt, Response, sign_error, sign_receipt
from ...protocol.signing import Signer


class ReceiptSigner:
    """Signs receipts in one EIP-712 domain with the provider's key."""

    def __init__(self, secret: bytes, separator: bytes) -> None:
        self._signer = Signer(secret)
        self.separator = separator

    def receipt(self, channel_id: int, cumulative: int, request_hash: bytes, data: bytes
                ) -> Receipt:
        return sign_receipt(self._signer, self.separator, channel_id, cumulative,
                            request_hash, data)

    def error(self, request_id: int, error: ProtocolError, channel_id: int,
              request_hash: bytes) -> Response:
        """The error response to a request, signed so that a device can tell it from one
        that anybody else with rights on its response topic published."""
        return sign_error(self._signer, self.separator, request_id, error, channel_id,
                          request_hash)
