"""The escrow contract from Python: forge artifacts, a local anvil, a typed web3.py client.

- :mod:`.artifacts` builds ``contracts/`` with forge and loads ABIs and bytecode; the runtime
  ABIs also ship inside the package (``nanotoll/abi/*.json``) for the gateway.
- :mod:`.client` deploys the escrow and the test stablecoin and calls every function.
"""

from __future__ import annotations

from .artifacts import Artifact, build_contracts, load_artifact, shipped_abi
from .client import (
    ChainTxError,
    ChannelInfo,
    ChannelSpec,
    EscrowClient,
    RedeemedItem,
    RedeemResult,
    SkippedItem,
    SkipReason,
    send_transaction,
)

__all__ = [
    "Artifact",
    "ChainTxError",
    "ChannelInfo",
    "ChannelSpec",
    "EscrowClient",
    "RedeemResult",
    "RedeemedItem",
    "SkipReason",
    "SkippedItem",
    "build_contracts",
    "load_artifact",
    "send_transaction",
    "shipped_abi",
]
