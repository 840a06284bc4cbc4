"""The voucher: 76 packed bytes, carried as one CBOR byte string.

Layout (big-endian): channelId u32 | cumulativeAmount u64 | r (32) | yParity<<255 | s (32).
The same 76 bytes are the contract's calldata item, so the gateway forwards them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from .eip712 import check_amount, check_channel_id, voucher_digest
from .signing import recover_address, sign_compact, split_compact

VOUCHER_LEN = 76


class VoucherError(ValueError):
    """A voucher whose bytes do not parse."""


@dataclass(frozen=True, slots=True)
class Voucher:
    channel_id: int
    cumulative: int
    signature: bytes

    def pack(self) -> bytes:
        return pack(self.channel_id, self.cumulative, self.signature)

    def digest(self, separator: bytes) -> bytes:
        return voucher_digest(separator, self.channel_id, self.cumulative)

    def signer(self, separator: bytes) -> str:
        return recover_address(self.digest(separator), self.signature)


def pack(channel_id: int, cumulative: int, signature: bytes) -> bytes:
    check_channel_id(channel_id)
    check_amount(cumulative)
    split_compact(signature)
    return channel_id.to_bytes(4, "big") + cumulative.to_bytes(8, "big") + signature


def unpack(raw: bytes) -> Voucher:
    if len(raw) != VOUCHER_LEN:
        raise VoucherError(f"voucher has {VOUCHER_LEN} bytes, got {len(raw)}")
    channel_id = int.from_bytes(raw[0:4], "big")
    cumulative = int.from_bytes(raw[4:12], "big")
    try:
        check_channel_id(channel_id)
        check_amount(cumulative)
    except ValueError as exc:
        raise VoucherError(str(exc)) from exc
    return Voucher(channel_id, cumulative, bytes(raw[12:76]))


def sign(secret: bytes, separator: bytes, channel_id: int, cumulative: int) -> Voucher:
    signature = sign_compact(secret, voucher_digest(separator, channel_id, cumulative))
    return Voucher(channel_id, cumulative, signature)
