"""The verify pipeline of docs/protocol.md §4.4, in that order; the first failure wins.

``check`` runs rules 1–5 (topic, strict decode, catalog and params, channel, signature)
and needs no ledger. ``charge`` runs rules 6–8 (idempotent replay or staleness, deposit,
price) against the channel's last accepted voucher, and is re-run when the ledger's
compare-and-set says another acceptance got there first. Signatures are recovered with
coincurve over a domain separator computed once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..protocol.errors import ErrorCode, ProtocolError
from ..protocol.messages import Catalog, Request, decode_request
from ..protocol.signing import SignatureError
from .channels import ChannelCache, ChannelState, ChannelUnavailable
from .hotpath import decode_request_fast, keccak256, recover_signer, voucher_digest
from ..ledger import ChannelRecord
from .providers.base import Provider

DEVICE = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True, slots=True)
class Verified:
    """A request that passed rules 1–5."""

    request: Request
    raw: bytes
    request_hash: bytes
    channel: ChannelState
    device: bytes  # 20-byte signer address
    provider: Provider


@dataclass(frozen=True, slots=True)
class Replay:
    """Rule 6's idempotent case: answer with the stored response, charge nothing."""

    response: bytes


@dataclass(frozen=True, slots=True)
class Charge:
    """Rules 6–8 passed: accept ``cumulative`` with this increment over ``previous``."""

    previous: int
    increment: int


def request_topic(provider_hex: str) -> str:
    return f"nt/1/{provider_hex}/req/"


def response_topic(provider_hex: str, device_segment: str) -> str:
    return f"nt/1/{provider_hex}/resp/{device_segment}"


REPLY_SEGMENT = re.compile(r"[0-9A-Za-z_-]{1,64}")


def reply_segment(topic: str, prefix: str) -> str | None:
    """The ``{device}`` level to answer on for a request received on ``topic``: the last
    level when it is a plausible one (letters, digits, ``_``/``-``, at most 64), else None:
    the request is dropped with a log line rather than answered on a topic nobody
    provisioned (a junk level would make the gateway publish wherever a sender likes)."""
    segment = topic[len(prefix):] if topic.startswith(prefix) else topic.rsplit("/", 1)[-1]
    return segment if REPLY_SEGMENT.fullmatch(segment) else None


def request_id_of(payload: bytes) -> int:
    """The request id of a message that does not decode (or is too large), for
    addressing its error: read from the first bytes alone, ``[version, request_id, ...``
    as a request starts, whatever follows. 0 when even that much is not there."""
    data = bytes(payload[:16])
    if not data or data[0] >> 5 != 4:  # not an array
        return 0
    pos = 1 if data[0] & 0x1F < 24 else 2 if data[0] & 0x1F == 24 else -1
    if pos < 0 or len(data) <= pos or data[pos] >= 24:  # a version, any small uint
        return 0
    pos += 1
    if len(data) <= pos or data[pos] >> 5 != 0:  # an unsigned integer
        return 0
    info = data[pos] & 0x1F
    if info < 24:
        return info
    size = {24: 1, 25: 2, 26: 4}.get(info)
    if size is None or len(data) < pos + 1 + size:
        return 0
    value = int.from_bytes(data[pos + 1:pos + 1 + size], "big")
    shortest = {1: 24, 2: 0x100, 4: 0x10000}[size]
    return value if value >= shortest else 0  # non-canonical heads are not trusted


class Verifier:
    def __init__(self, provider_hex: str, separator: bytes, catalog: Catalog,
                 providers: Mapping[str, Provider], channels: ChannelCache,
                 expiry_margin: int) -> None:
        if not DEVICE.fullmatch(provider_hex):
            raise ValueError("provider_hex is 40 lowercase hex digits")
        self.provider_hex = provider_hex
        self.payee = bytes.fromhex(provider_hex)
        self.separator = separator
        self.catalog = catalog
        self.previous: Catalog | None = None  # honoured for requests until it expires
        self.providers = dict(providers)
        self.channels = channels
        self.expiry_margin = expiry_margin
        self._prefix = request_topic(provider_hex)

    # -------------------------------------------------------------- rule 1 --

    def topic_device(self, topic: str) -> bytes:
        """Rule 1: the 20-byte device address named by a request topic of this provider."""
        if not topic.startswith(self._prefix):
            raise ProtocolError(ErrorCode.WRONG_TOPIC, f"not a request topic of {self._prefix}")
        segment = topic[len(self._prefix):]
        if not DEVICE.fullmatch(segment):
            raise ProtocolError(ErrorCode.WRONG_TOPIC,
                                "device segment must be 40 lowercase hex digits")
        return bytes.fromhex(segment)

    # ---------------------------------------------------------- rules 1..5 --

    def check(self, topic: str, payload: bytes, now: int) -> Verified:
        topic_device = self.topic_device(topic)
        # Rule 2: TOO_LARGE, MALFORMED, UNSUPPORTED_VERSION (the strict decoder judges
        # whatever the fast reader does not take).
        request = decode_request_fast(payload) or decode_request(payload)
        provider = self._catalog_rules(request, now)
        channel = self._channel_rules(request.voucher.channel_id, now)
        signer = self._signature_rule(request, channel, topic_device)
        return Verified(request, bytes(payload), keccak256(payload), channel, signer, provider)

    def set_catalog(self, catalog: Catalog) -> None:
        """A renewed catalog; the one it replaces stays good until its valid_until."""
        if catalog.seq != self.catalog.seq:
            self.previous, self.catalog = self.catalog, catalog

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
            device = recover_signer(
                voucher_digest(self.separator, voucher.channel_id, voucher.cumulative),
                voucher.signature)
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

    def charge(self, verified: Verified, last: ChannelRecord | None) -> Replay | Charge:
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
        return Charge(previous, increment)
