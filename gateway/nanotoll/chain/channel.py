"""The one channel type: :class:`ChannelState`, a channel as the escrow contract holds it.

The client reads it, the cache holds it, the gateway's rules check requests against it,
the event follower updates it, and the settler decides with it.
"""

from __future__ import annotations

from dataclasses import dataclass

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


@dataclass(frozen=True, slots=True)
class ChannelState:
    """One channel as ``NanotollEscrow.channel`` returns it (addresses checksummed)."""

    channel_id: int
    signer: str  # the device key's address
    payee: str  # the provider's address
    token: str
    deposit: int
    paid: int  # redeemed so far
    expiry: int  # unix seconds
    route: int = 0  # the contract's (payee, token) route id: redeem batches are per route
    closed: bool = False  # reclaimed by the payer
    # The account that funded it: zero for an id the contract never opened. The rules
    # never look at it, so states made up for their tests may leave it out.
    payer: str = ZERO_ADDRESS

    @property
    def exists(self) -> bool:
        return self.payer != ZERO_ADDRESS
