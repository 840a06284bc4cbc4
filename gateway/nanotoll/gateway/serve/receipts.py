"""Receipts: the provider's signature over what it served, with its key parsed once."""

from __future__ import annotations

from ...protocol.messages import Receipt, sign_receipt
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
