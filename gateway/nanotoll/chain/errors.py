"""The chain's errors: one family, so that a caller catches :class:`ChainError` or exactly
the case it handles.

The settler needs to tell a node that is away (try again later) from a transaction the
node refused (each refusal handled its own way) and from one that reverted (for good);
``node.classify`` sorts what web3 and the HTTP stack raise into these.
"""

from __future__ import annotations

from web3.types import TxReceipt


class ChainError(RuntimeError):
    """The chain could not do what was asked."""


class NodeUnavailable(ChainError):
    """The node could not be reached or did not answer in time: try again later."""


class ChannelUnavailable(NodeUnavailable):
    """A channel that is not cached (or must be re-read) could not be read.

    After a failed read, reads fail at once for a back-off (1 s, doubling to 30 s) instead
    of each waiting out the RPC timeout: the ingress verifies in one thread, and a node
    that hangs must not hold every request behind it."""


class TxReverted(ChainError):
    """A transaction (or a call) that reverted: in gas estimation (``receipt`` None) or
    once mined.

    ``error`` is the contract's custom error decoded from the ABI, e.g.
    ``"NotExpired(1, 1767229200)"``, when the node returned revert data.
    """

    def __init__(self, message: str, receipt: TxReceipt | None = None,
                 error: str | None = None) -> None:
        super().__init__(message)
        self.receipt = receipt
        self.error = error


class TxRefused(ChainError):
    """The node refused a signed transaction."""


class TxKnown(TxRefused):
    """The node has this exact transaction already: it counts as sent."""


class NonceTooLow(TxRefused):
    """A transaction with this nonce was mined already (this one, or another)."""


class Underpriced(TxRefused):
    """A replacement needs higher fees than the transaction it replaces."""

