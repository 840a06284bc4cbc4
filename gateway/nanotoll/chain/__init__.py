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
- :mod:`.artifacts`: builds ``contracts/`` with forge and loads ABIs and bytecode; the
  runtime ABIs also ship inside the package (``nanotoll/abi/*.json``).

The chain builds on the ledger; it never imports the gateway.
"""

from __future__ import annotations

from .artifacts import Artifact, build_contracts, load_artifact, shipped_abi
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
    "Artifact",
    "ChainError",
    "ChannelSpec",
    "ChannelState",
    "EscrowClient",
    "RedeemResult",
    "RedeemedItem",
    "SkipReason",
    "SkippedItem",
    "TxReverted",
    "build_contracts",
    "load_artifact",
    "send_transaction",
    "shipped_abi",
]
