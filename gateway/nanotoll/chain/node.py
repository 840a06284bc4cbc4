"""The escrow through one node, as the gateway's long-running parts use it.

:class:`EscrowChain` is the :class:`~.cache.ChannelReader` of the channel cache, the
:class:`~.settle.RedeemChain` of the settler and the :class:`~.eventlog.LogSource` of the
event follower. Calls, reads and the redeem transaction come from
:class:`~.client.EscrowClient` (with the ABI shipped in the package), logs are decoded by
:class:`~.eventlog.EscrowEventDecoder`. What this adapter adds: an HTTP connection with a
timeout, the provider key (it signs locally; only raw signed transactions reach the
node), and every node error sorted into the :mod:`.errors` family by :func:`classify`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import BlockNotFound, ContractLogicError, TransactionNotFound, Web3Exception
from web3.types import RPCEndpoint

from .channel import ChannelState
from .client import EscrowClient, RedeemResult, SignedTx
from .errors import (
    ChainError,
    NodeUnavailable,
    NonceTooLow,
    TxKnown,
    TxReverted,
    Underpriced,
)
from .eventlog import BlockRef, ChannelEvent, EscrowEventDecoder

T = TypeVar("T")


def classify(exc: BaseException) -> ChainError:
    """A node error as a member of the family (nodes say most of it only in the message)."""
    text = str(exc).lower()
    message = str(exc)[:300]
    if isinstance(exc, ContractLogicError) or "revert" in text:
        return TxReverted(message)
    if "already known" in text or "known transaction" in text or "already imported" in text:
        return TxKnown(message)
    if "nonce too low" in text or "nonce is too low" in text or "oldnonce" in text:
        return NonceTooLow(message)
    if "underpriced" in text or "fee too low" in text or "max fee per gas less" in text:
        return Underpriced(message)
    if isinstance(exc, OSError | TimeoutError) or "connection" in text or "timeout" in text:
        return NodeUnavailable(message)
    return ChainError(message)


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


class EscrowChain:
    def __init__(self, rpc_url: str, escrow: str, chain_id: int, secret: bytes | None = None,
                 timeout: float = 10.0) -> None:
        provider = Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout})
        # web3's validation asks the node for its chain id before every call: two more
        # round trips, most of a channel read's CPU. A node's chain id does not change
        # (and every transaction we send is signed for ours), so it is asked once.
        provider.cache_allowed_requests = True
        provider.cacheable_requests = {RPCEndpoint("eth_chainId")}
        self.w3 = Web3(provider)
        self.escrow = to_checksum_address(escrow)
        self.chain_id = chain_id
        self.client = EscrowClient(self.w3, self.escrow)
        self._account: LocalAccount | None = (Account.from_key(secret) if secret is not None
                                              else None)
        self._max_batch: int | None = None
        self._events = EscrowEventDecoder(self.client.escrow.abi)

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (Web3Exception, OSError, ValueError) as exc:
            raise classify(exc) from exc

    def _signer(self) -> LocalAccount:
        if self._account is None:
            raise ChainError("no provider key: read-only chain client")
        return self._account

    @property
    def address(self) -> str:
        return str(self._signer().address)

    def check_chain_id(self) -> None:
        actual = self._call(lambda: self.w3.eth.chain_id)
        if actual != self.chain_id:
            raise ChainError(f"the node at the RPC URL is chain {actual}, config says "
                             f"{self.chain_id}")
        # Checked once: web3's validation middleware would ask the node for its chain id
        # again before every eth_call and gas estimate (the cache's re-reads, each redeem),
        # a round trip each; transactions are signed here with this chain id anyway.
        with contextlib.suppress(ValueError):
            self.w3.middleware_onion.remove("validation")

    # ------------------------------------------------------- ChannelReader --

    def channel(self, channel_id: int) -> ChannelState | None:
        state = self._call(lambda: self.client.channel(channel_id))
        return state if state.exists else None

    # --------------------------------------------------------- RedeemChain --

    def max_batch(self) -> int:
        if self._max_batch is None:
            self._max_batch = self._call(self.client.max_redeem_batch)
        return self._max_batch

    def pending_nonce(self) -> int:
        return int(self._call(lambda: self.w3.eth.get_transaction_count(
            to_checksum_address(self.address), "pending")))

    def sign_redeem(self, route: int, vouchers: bytes, nonce: int, fee_bump: int = 0
                    ) -> SignedTx:
        account = self._signer()
        return self._call(lambda: self.client.sign_redeem(account, route, vouchers, nonce,
                                                          self.chain_id, fee_bump))

    def send(self, raw: bytes) -> None:
        self._call(lambda: self.w3.eth.send_raw_transaction(raw))

    def receipt(self, tx_hash: str) -> RedeemResult | None:
        """The mined transaction's outcome; None while it is not in a block."""
        try:
            found = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        except (Web3Exception, OSError, ValueError) as exc:
            raise classify(exc) from exc
        if found is None or found.get("blockNumber") is None:
            return None
        return self.client.redeem_result(found)

    def block_number(self) -> int:
        return int(self._call(lambda: self.w3.eth.block_number))

    def block_hash(self, number: int) -> str | None:
        try:
            block = self.w3.eth.get_block(number)
        except Exception:
            return None
        return _hex(block["hash"])

    def now(self) -> int:
        block = self._call(lambda: self.w3.eth.get_block("latest"))
        return int(block["timestamp"])

    # ------------------------------------------------------------ LogSource --

    def head(self) -> BlockRef:
        block = self._call(lambda: self.w3.eth.get_block("latest"))
        return BlockRef(int(block["number"]), _hex(block["hash"]))

    def canonical_hash(self, number: int) -> str | None:
        """The hash of block ``number`` on the node's chain; None when it has no such
        block. Node errors raise (unlike :meth:`block_hash`, a fork check must not read
        an outage as a missing block)."""
        try:
            block = self.w3.eth.get_block(number)
        except BlockNotFound:
            return None
        except (Web3Exception, OSError, ValueError) as exc:
            raise classify(exc) from exc
        return _hex(block["hash"])

    def channel_events(self, first: int, last: int) -> list[ChannelEvent]:
        """The channel changes the escrow logged in blocks ``first..last``, in order."""
        logs = self._call(lambda: self.w3.eth.get_logs({
            "address": self.escrow, "fromBlock": first, "toBlock": last,
            "topics": [self._events.topics]}))  # type: ignore[typeddict-item]
        return [change for log in logs for change in self._events.decode(log)]
