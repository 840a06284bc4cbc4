"""Escrow event logs decoded into the channel changes the gateway's cache follows.

Only events that change what the cache holds are kept: ``ChannelOpened`` (an id that was
unknown now exists), ``ChannelToppedUp`` (the new deposit), ``ExpiryExtended`` (the new
expiry), ``Redeemed`` (one change per packed 20-byte item: the channel's new paid total)
and ``ChannelReclaimed`` (closed). ``VoucherSkipped`` and ``RouteCreated`` change no
channel. Topics and data types come from the ABI shipped in the package, so a contract
whose events moved fails loudly here (and in ``test_abi_drift``) instead of decoding
garbage.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak

from ..chain.artifacts import shipped_abi
from ..chain.client import decode_redeemed_items


class EventKind(enum.Enum):
    OPENED = "ChannelOpened"
    TOPPED_UP = "ChannelToppedUp"
    EXTENDED = "ExpiryExtended"
    REDEEMED = "Redeemed"
    RECLAIMED = "ChannelReclaimed"


@dataclass(frozen=True, slots=True)
class ChannelEvent:
    """One change to one channel, as a log of block ``block_number`` says."""

    kind: EventKind
    channel_id: int
    block_number: int
    block_hash: str  # 0x-prefixed
    log_index: int
    deposit: int | None = None  # TOPPED_UP: the new total deposit
    expiry: int | None = None  # EXTENDED: the new expiry (unix seconds)
    paid: int | None = None  # REDEEMED: the channel's new paid total


class LogFormatError(ValueError):
    """A log of the escrow's address that does not decode as its ABI says."""


@dataclass(frozen=True, slots=True)
class _EventAbi:
    kind: EventKind
    topic: bytes
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]


def _raw(value: Any) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith(("0x", "0X")) else value)
    return bytes(value)


class EscrowEventDecoder:
    """Decodes the escrow's logs; built once from the ABI (the shipped one by default)."""

    def __init__(self, abi: Sequence[Mapping[str, Any]] | None = None) -> None:
        items = list(abi if abi is not None else shipped_abi("NanotollEscrow"))
        self._by_topic: dict[bytes, _EventAbi] = {}
        for kind in EventKind:
            found = [i for i in items if i.get("type") == "event" and i.get("name") == kind.value]
            if len(found) != 1:
                raise LogFormatError(f"the escrow ABI has {len(found)} events {kind.value}")
            inputs = found[0]["inputs"]
            signature = f"{kind.value}({','.join(str(i['type']) for i in inputs)})"
            data = [i for i in inputs if not i["indexed"]]
            spec = _EventAbi(kind, keccak(text=signature), tuple(str(i["name"]) for i in data),
                             tuple(str(i["type"]) for i in data))
            self._by_topic[spec.topic] = spec

    @property
    def topics(self) -> list[str]:
        """The topic0 of every followed event, for an ``eth_getLogs`` filter."""
        return ["0x" + topic.hex() for topic in self._by_topic]

    def decode(self, log: Mapping[str, Any]) -> list[ChannelEvent]:
        """The channel changes one log carries; [] for events that change no channel."""
        topics = [_raw(t) for t in log.get("topics", ())]
        spec = self._by_topic.get(topics[0]) if topics else None
        if spec is None:
            return []
        try:
            values = dict(zip(spec.data_names, abi_decode(spec.data_types, _raw(log["data"])),
                              strict=True))
            block, block_hash = int(log["blockNumber"]), "0x" + _raw(log["blockHash"]).hex()
            index = int(log["logIndex"])
            if spec.kind is EventKind.REDEEMED:
                return [ChannelEvent(EventKind.REDEEMED, item.channel_id, block, block_hash,
                                     index, paid=item.cumulative)
                        for item in decode_redeemed_items(bytes(values["items"]))]
            channel_id = int.from_bytes(topics[1], "big")
        except (DecodingError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise LogFormatError(f"{spec.kind.value} log does not decode: {exc}") from exc
        change = ChannelEvent(spec.kind, channel_id, block, block_hash, index)
        if spec.kind is EventKind.TOPPED_UP:
            change = replace(change, deposit=int(values["deposit"]))
        elif spec.kind is EventKind.EXTENDED:
            change = replace(change, expiry=int(values["expiry"]))
        return [change]
