"""``--chaos top-up``: the fleet's owner funds every channel again in the middle of the run,
as an owner would with ``nanotoll channel top-up`` and ``extend`` (the same code), and the
run checks afterwards that every channel holds the new deposit and expiry."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount

from ..chain.client import EscrowClient
from ..owner import funding

EXTENSION = 86_400  # seconds the top-up moves every expiry


@dataclass
class FleetFunding:
    """What the fleet's payer opened: its channels, their deposit and expiry."""

    escrow: EscrowClient
    minter: LocalAccount  # mints the test token
    payer: LocalAccount
    channel_ids: list[int]
    deposit: int
    expiry: int
    added: int = 0  # units the top-up added to each channel (0: none yet)
    transactions: list[dict[str, Any]] = field(default_factory=list)


def top_up_fleet(fleet: FleetFunding, event: Callable[..., None]) -> None:
    """Add half a deposit to every channel and extend each by a day, in the contract's
    batches; ``event`` records the start and the end with its gas."""
    amount = max(1, fleet.deposit // 2)
    ids = fleet.channel_ids
    t0 = time.monotonic()
    event("top_up", channels=len(ids), amount=amount)
    fleet.escrow.mint(fleet.minter, fleet.payer.address, amount * len(ids))
    topped = funding.top_up(fleet.escrow, fleet.payer, ids, amount, approve=True)
    extended = funding.extend(fleet.escrow, fleet.payer, ids, fleet.expiry + EXTENSION)
    fleet.added = amount
    fleet.transactions = [tx.as_dict() for tx in (*topped, *extended)]
    event("top_up_done", seconds=round(time.monotonic() - t0, 3),
          top_up_transactions=len(topped), extend_transactions=len(extended),
          top_up_gas_per_channel=sum(tx.gas_used for tx in topped) // len(ids),
          extend_gas_per_channel=sum(tx.gas_used for tx in extended) // len(ids))


def check_top_up(fleet: FleetFunding) -> dict[str, Any]:
    """Every channel's deposit and expiry on chain after the top-up."""
    wrong = []
    for channel_id in fleet.channel_ids:
        state = fleet.escrow.channel(channel_id)
        if (state.deposit, state.expiry) != (fleet.deposit + fleet.added,
                                             fleet.expiry + EXTENSION):
            wrong.append(channel_id)
    return {"channels": len(fleet.channel_ids), "added_per_channel": fleet.added,
            "transactions": len(fleet.transactions), "channels_not_topped_up": wrong}
