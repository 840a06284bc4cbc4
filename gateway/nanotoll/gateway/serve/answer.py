"""The serve stage: the product's provider answers, the provider signs the receipt, and
the OK response is encoded. It runs after the rules accepted the voucher and before it is
stored, so a provider that fails charges nothing."""

from __future__ import annotations

from ...protocol.errors import ErrorCode, ProtocolError
from ...protocol.messages import MAX_RESPONSE, Request, Response
from .base import Provider
from .receipts import ReceiptSigner


class Answerer:
    def __init__(self, receipts: ReceiptSigner) -> None:
        self._receipts = receipts

    def answer(self, provider: Provider, request: Request, request_hash: bytes, buyer: bytes,
               now: int) -> bytes:
        """The encoded OK response; ProtocolError(PROVIDER_ERROR) when the provider fails
        or answers more than a response may carry."""
        try:
            data = provider.serve(request.params, now, buyer)
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(ErrorCode.PROVIDER_ERROR,
                                f"{request.product} failed: {type(exc).__name__}") from exc
        voucher = request.voucher
        receipt = self._receipts.receipt(voucher.channel_id, voucher.cumulative, request_hash,
                                         data)
        response = Response(request.request_id, ErrorCode.OK, data=data,
                            receipt=receipt).encode()
        if len(response) > MAX_RESPONSE:
            raise ProtocolError(ErrorCode.PROVIDER_ERROR,
                                f"{request.product} answer of {len(response)} bytes is too large")
        return response
