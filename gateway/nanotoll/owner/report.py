"""Channels as an owner sees them: the chain's deposit, paid and expiry, and, where a
gateway's ledger is given, what that gateway accepted and has not yet redeemed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..chain.channel import ChannelState
from ..chain.client import EscrowClient
from ..ledger import open_ledger
from .funding import chain_time, read_channels


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """One channel for ``channel list`` and ``channel show``."""

    channel_id: int
    state: str  # open, expired (reclaimable), reclaimed, unknown
    payer: str
    signer: str
    payee: str
    token: str
    deposit: int
    paid: int  # redeemed on-chain
    remaining: int  # deposit - paid
    expiry: int
    expires_in: int  # seconds from the chain's time; negative once expired
    accepted: int | None  # the gateway's highest accepted cumulative (None: no gateway given)
    unredeemed: int | None  # accepted - paid: owed to the provider, not yet settled

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def channel_state_name(state: ChannelState, now: int) -> str:
    if not state.exists:
        return "unknown"
    if state.closed:
        return "reclaimed"
    return "open" if now < state.expiry else "expired"


def accepted_by_gateway(ledger_url: str, channel_ids: Sequence[int]) -> dict[int, int]:
    """Channel id -> the highest cumulative the gateway's ledger accepted (absent: none)."""
    ledger = open_ledger(ledger_url, create=False)
    try:
        return {channel_id: record.cumulative
                for channel_id, record in ledger.lookup_many(list(channel_ids)).items()}
    finally:
        ledger.close()


def channel_rows(client: EscrowClient, states: Sequence[ChannelState],
                 accepted: dict[int, int] | None = None) -> list[ChannelRow]:
    """Rows for ``states`` (from :func:`~.funding.read_channels`) at the chain's time now;
    ``accepted`` from :func:`accepted_by_gateway` fills the gateway's columns."""
    now = chain_time(client)
    rows = []
    for state in states:
        taken = None if accepted is None else accepted.get(state.channel_id, 0)
        rows.append(ChannelRow(
            channel_id=state.channel_id, state=channel_state_name(state, now),
            payer=state.payer, signer=state.signer, payee=state.payee, token=state.token,
            deposit=state.deposit, paid=state.paid, remaining=state.deposit - state.paid,
            expiry=state.expiry, expires_in=state.expiry - now, accepted=taken,
            unredeemed=None if taken is None else max(0, taken - state.paid)))
    return rows


def known_channels(client: EscrowClient, payer: str | None) -> list[ChannelState]:
    """Every channel the escrow opened, or only ``payer``'s."""
    states = read_channels(client, range(1, client.last_channel_id() + 1))
    return [state for state in states if payer is None or state.payer == payer]
