"""The rules of docs/protocol.md §4.4, in that order; the first failure wins.

:meth:`Rules.check` runs rules 1–5 (topic, strict decode, catalog and params, channel,
signature) and needs no ledger. :meth:`Rules.decide` runs rules 6–8 (idempotent replay or
staleness, deposit, price) against the channel's last accepted voucher and says what
accepting the voucher would charge; it charges nothing itself (the ledger's write does),
and is asked again when the ledger's compare-and-set says another acceptance got there
first. Signatures are recovered over a domain separator computed once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..chain.cache import ChannelCache
from ..chain.channel import ChannelState
from ..chain.errors import ChannelUnavailable
from ..ledger import ChannelRecord
from ..protocol.errors import ErrorCode, ProtocolError
from ..protocol.keccak import keccak256
from ..protocol.messages import Catalog, Request, decode_request
from ..protocol.signing import SignatureError, recover_signer
from ..protocol.topics import ADDRESS_HEX, request_device, request_prefix
from .serve.base import Provider


@dataclass(frozen=True, slots=True)
class Verified:
    """A request that passed rules 1–5."""

    request: Request
    request_hash: bytes
    channel: ChannelState
    device: bytes  # 20-byte signer address
    provider: Provider


@dataclass(frozen=True, slots=True)
class Replay:
    """Rule 6's idempotent case: answer with the stored response, charge nothing."""

    response: bytes


@dataclass(frozen=True, slots=True)
class ChargeDue:
    """Rules 6–8 passed: accepting the voucher charges ``increment`` over ``previous``."""

    previous: int
    increment: int


class Rules:
    def __init__(self, provider_hex: str, separator: bytes, catalog: Catalog,
                 providers: Mapping[str, Provider], channels: ChannelCache,
                 expiry_margin: int) -> None:
        if not ADDRESS_HEX.fullmatch(provider_hex):
            raise ValueError("provider_hex is 40 lowercase hex digits")
        self.provider_hex = provider_hex
        self.payee = bytes.fromhex(provider_hex)
        self.separator = separator
        self.catalog = catalog
        self.previous: Catalog | None = None  # honoured for requests until it expires
        self.providers = dict(providers)
        self.channels = channels
        self.expiry_margin = expiry_margin
        self.request_prefix = request_prefix(provider_hex)

    # ---------------------------------------------------------- rules 1..5 --

    def check(self, topic: str, payload: bytes, now: int) -> Verified:
        topic_device = request_device(topic, self.request_prefix)  # rule 1
        request = decode_request(payload)  # rule 2: TOO_LARGE, MALFORMED, UNSUPPORTED_VERSION
        provider = self._catalog_rules(request, now)
        channel = self._channel_rules(request.voucher.channel_id, now)
        signer = self._signature_rule(request, channel, topic_device)
        return Verified(request, keccak256(payload), channel, signer, provider)

    def set_catalog(self, catalog: Catalog) -> None:
        """A renewed catalog; the one it replaces stays good until its valid_until."""
        if catalog.seq != self.catalog.seq:
            self.previous, self.catalog = self.catalog, catalog

    def set_offer(self, catalog: Catalog, providers: Mapping[str, Provider]) -> None:
        """A reloaded catalog and the products that serve it. The replaced catalog's
        prices stay good until its valid_until for the products still sold."""
        self.providers = dict(providers)
        self.set_catalog(catalog)

    def _catalog_rules(self, request: Request, now: int) -> Provider:
        current, previous = self.catalog, self.previous
        catalog = current
        if request.catalog_seq != current.seq and previous is not None \
                and request.catalog_seq == previous.seq and now < previous.valid_until:
            catalog = previous  # priced just before a renewal: still a valid offer
        price = catalog.price_of(request.product)
        provider = self.providers.get(request.product)
        if price is None or provider is None:
            raise ProtocolError(ErrorCode.UNKNOWN_PRODUCT, f"no product {request.product!r}")
        if request.catalog_seq != catalog.seq or request.price != price:
            raise ProtocolError(ErrorCode.PRICE_CHANGED,
                                f"catalog seq {current.seq} is current", current.seq)
        provider.validate(request.params, now)  # BAD_PARAMS
        return provider

    def _channel_rules(self, channel_id: int, now: int) -> ChannelState:
        try:
            return self._channel_rules_read(channel_id, now)
        except ChannelUnavailable as exc:
            raise ProtocolError(ErrorCode.BUSY, f"{exc}; nothing charged") from None

    def _channel_rules_read(self, channel_id: int, now: int) -> ChannelState:
        channel = self.channels.channel(channel_id)
        if channel is None:
            raise ProtocolError(ErrorCode.UNKNOWN_CHANNEL, f"no channel {channel_id}")
        if bytes.fromhex(channel.payee[2:]) != self.payee:
            raise ProtocolError(ErrorCode.WRONG_PAYEE, f"channel {channel_id} pays another payee")
        if not self._lasts(channel, now):
            fresh = self.channels.refresh(channel_id)  # the payer may have extended it
            if fresh is not None:
                channel = fresh
            if fresh is None or not self._lasts(channel, now):
                raise ProtocolError(ErrorCode.CHANNEL_EXPIRING,
                                    f"channel {channel_id} expires at {channel.expiry}")
        return channel

    def _lasts(self, channel: ChannelState, now: int) -> bool:
        return not channel.closed and channel.expiry - now > self.expiry_margin

    def _signature_rule(self, request: Request, channel: ChannelState,
                        topic_device: bytes) -> bytes:
        voucher = request.voucher
        try:
            device = recover_signer(voucher.digest(self.separator), voucher.signature)
        except (SignatureError, ValueError) as exc:
            raise ProtocolError(ErrorCode.BAD_SIGNATURE, str(exc)) from None
        # Raw 20-byte comparison: no checksum encoding on the hot path.
        if device != bytes.fromhex(channel.signer[2:]):
            raise ProtocolError(ErrorCode.BAD_SIGNATURE,
                                f"voucher signed by 0x{device.hex()}, not the channel's signer")
        if device != topic_device:
            raise ProtocolError(ErrorCode.WRONG_TOPIC,
                                "the topic's device is not the channel's signer")
        return device

    # ---------------------------------------------------------- rules 6..8 --

    def decide(self, verified: Verified, last: ChannelRecord | None) -> Replay | ChargeDue:
        """What accepting the voucher would charge over ``last`` (the channel's last
        accepted record), or the stored response it replays; ProtocolError otherwise."""
        voucher = verified.request.voucher
        cumulative = voucher.cumulative
        channel = verified.channel
        if last is not None and last.cumulative == cumulative \
                and last.request_hash == verified.request_hash:
            return Replay(last.response)
        previous = max(channel.paid, last.cumulative if last is not None else 0)
        if cumulative <= previous:
            detail: Any = last.voucher if last is not None else None
            raise ProtocolError(ErrorCode.STALE_VOUCHER,
                                f"cumulative {cumulative} not above the last accepted {previous}",
                                detail)
        if cumulative > channel.deposit:
            try:
                fresh = self.channels.refresh(channel.channel_id)  # a top-up may have landed
            except ChannelUnavailable as exc:
                raise ProtocolError(ErrorCode.BUSY, f"{exc}; nothing charged") from None
            if fresh is None or cumulative > fresh.deposit:
                deposit = fresh.deposit if fresh is not None else channel.deposit
                raise ProtocolError(ErrorCode.OVERDRAFT,
                                    f"cumulative {cumulative} above the deposit {deposit}")
        increment = cumulative - previous
        if increment < verified.request.price:
            raise ProtocolError(ErrorCode.UNDERPAID,
                                f"increment {increment} below price {verified.request.price}")
        return ChargeDue(previous, increment)
