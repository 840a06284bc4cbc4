"""The escrow contract from Python: the client, the channels, their events, settlement.

- :mod:`.errors`: the one error family (:class:`ChainError` and its cases).
- :mod:`.channel`: :class:`ChannelState`, the one channel type.
- :mod:`.cache`: the channel cache, which reads channels without an RPC per request.
- :mod:`.client`: deploys the escrow and the test stablecoin, calls every function,
  reads channels, builds and signs the redeem transaction.
- :mod:`.node`: the escrow through one node for the gateway's long-running parts
  (errors classified, the provider key): the cache's reader, the settler's chain and the
  event follower's log source.
- :mod:`.eventlog`: decodes the escrow's logs and follows them into the cache.
- :mod:`.settle`: the settler, redeeming accepted vouchers in batches from the ledger.
- :mod:`.abi`: the ABIs shipped inside the package (``nanotoll/abi/*.json``), read at
  run time.
- :mod:`.artifacts`: builds ``contracts/`` with forge and loads ABIs and bytecode, for
  deploying in development and tests; ``python -m nanotoll.chain`` rewrites the shipped
  ABIs from them.

The chain builds on the ledger; it never imports the gateway.
"""

from __future__ import annotations

from .abi import shipped_abi
from .channel import ChannelState
from .client import (
    ChannelSpec,
    EscrowClient,
    RedeemedItem,
    RedeemResult,
    SkippedItem,
    SkipReason,
    send_transaction,
)
from .errors import ChainError, TxReverted

__all__ = [
    "ChainError",
    "ChannelSpec",
    "ChannelState",
    "EscrowClient",
    "RedeemResult",
    "RedeemedItem",
    "SkipReason",
    "SkippedItem",
    "TxReverted",
    "send_transaction",
    "shipped_abi",
]
