"""The escrow contract through the chain package's client: channel reads, redeems, events.

:class:`EscrowChain` implements :class:`~.channels.ChannelReader`,
:class:`~.settle.RedeemChain` and :class:`~.events.LogSource`. Reads and the contract
object come from :class:`nanotoll.chain.EscrowClient` (the ABI shipped in the package),
logs are decoded by :mod:`.chainlog`; redeem transactions are built here, because the
settler must store each signed transaction before it is broadcast, which a send-and-wait
call cannot do. The provider key signs locally; only
raw signed transactions reach the node. Node errors are classified for the settler.
"""

from __future__ import annotations

from typing import Any, cast

from eth_account import Account
from eth_utils import to_checksum_address
from web3 import Web3
from web3.exceptions import BlockNotFound, ContractLogicError, TransactionNotFound, Web3Exception
from web3.types import TxParams

from ..chain.client import EscrowClient
from .chainlog import ChannelEvent, EscrowEventDecoder
from .channels import ChannelState
from .events import BlockRef
from .settle import ChainError, SignedTx, TxReceipt


def classify(exc: BaseException) -> ChainError:
    """A node error as the settler sees it."""
    text = str(exc).lower()
    if isinstance(exc, ContractLogicError) or "revert" in text:
        kind = ChainError.REVERTED
    elif "already known" in text or "known transaction" in text or "already imported" in text:
        kind = ChainError.KNOWN
    elif "nonce too low" in text or "nonce is too low" in text or "oldnonce" in text:
        kind = ChainError.NONCE_LOW
    elif "underpriced" in text or "fee too low" in text or "max fee per gas less" in text:
        kind = ChainError.UNDERPRICED
    elif isinstance(exc, OSError | TimeoutError) or "connection" in text or "timeout" in text:
        kind = ChainError.TRANSIENT
    else:
        kind = ChainError.OTHER
    return ChainError(kind, str(exc)[:300])


class EscrowChain:
    def __init__(self, rpc_url: str, escrow: str, chain_id: int, secret: bytes | None = None,
                 timeout: float = 10.0) -> None:
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        self.escrow = to_checksum_address(escrow)
        self.chain_id = chain_id
        self.client = EscrowClient(self.w3, self.escrow)
        self.contract = self.client.escrow
        self._account = Account.from_key(secret) if secret is not None else None
        self._max_batch: int | None = None
        self._events = EscrowEventDecoder(self.contract.abi)

    def _call(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except (Web3Exception, OSError, ValueError) as exc:
            raise classify(exc) from exc

    @property
    def address(self) -> str:
        if self._account is None:
            raise ChainError(ChainError.OTHER, "no provider key: read-only chain client")
        return str(self._account.address)

    def check_chain_id(self) -> None:
        actual = self._call("chain_id", lambda: self.w3.eth.chain_id)
        if actual != self.chain_id:
            raise ChainError(ChainError.OTHER,
                             f"the node at the RPC URL is chain {actual}, config says "
                             f"{self.chain_id}")

    # ------------------------------------------------------- ChannelReader --

    def channel(self, channel_id: int) -> ChannelState | None:
        info = self._call("channel", lambda: self.client.channel(channel_id))
        if not info.exists:
            return None
        return ChannelState(channel_id=channel_id, signer=info.signer, payee=info.payee,
                            token=info.token, deposit=info.deposit, paid=info.paid,
                            expiry=info.expiry, route=info.route, closed=info.closed)

    # --------------------------------------------------------- RedeemChain --

    def max_batch(self) -> int:
        if self._max_batch is None:
            self._max_batch = int(self._call("maxRedeemBatch", self.client.max_redeem_batch))
        return self._max_batch

    def pending_nonce(self) -> int:
        return int(self._call("nonce", lambda: self.w3.eth.get_transaction_count(
            to_checksum_address(self.address), "pending")))

    def sign_redeem(self, route: int, vouchers: bytes, nonce: int, fee_bump: int = 0
                    ) -> SignedTx:
        assert self._account is not None
        function = self.contract.functions.redeem(route, vouchers)
        gas = self._call("estimate", lambda: function.estimate_gas({"from": self.address}))
        block = self._call("block", lambda: self.w3.eth.get_block("latest"))
        base_fee = int(block.get("baseFeePerGas", 0) or 0)
        priority = int(self._call("tip", lambda: self.w3.eth.max_priority_fee)) or 1
        priority = priority * (100 + fee_bump) // 100 + (1 if fee_bump else 0)
        tx = function.build_transaction(cast(TxParams, {
            "from": self.address, "nonce": nonce, "chainId": self.chain_id,
            "gas": int(gas) * 5 // 4 + 20_000,
            "maxPriorityFeePerGas": priority,
            "maxFeePerGas": (2 * base_fee + priority) * (100 + fee_bump) // 100,
        }))
        signed = self._account.sign_transaction(tx)
        return SignedTx(bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex())

    def send(self, raw: bytes) -> None:
        self._call("send", lambda: self.w3.eth.send_raw_transaction(raw))

    def receipt(self, tx_hash: str) -> TxReceipt | None:
        try:
            found = self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        except (Web3Exception, OSError, ValueError) as exc:
            raise classify(exc) from exc
        if found is None or found.get("blockNumber") is None:
            return None
        redeemed: dict[int, int] = {}
        skipped: frozenset[int] = frozenset()
        if int(found["status"]) == 1:
            result = self.client.redeem_result(found)
            for item in result.redeemed:
                redeemed[item.channel_id] = redeemed.get(item.channel_id, 0) + item.amount
            skipped = frozenset(item.channel_id for item in result.skipped)
        return TxReceipt(tx_hash=tx_hash, status=int(found["status"]),
                         block_number=int(found["blockNumber"]),
                         block_hash="0x" + bytes(found["blockHash"]).hex(),
                         gas_used=int(found["gasUsed"]), redeemed=redeemed, skipped=skipped)

    def block_number(self) -> int:
        return int(self._call("block_number", lambda: self.w3.eth.block_number))

    def block_hash(self, number: int) -> str | None:
        try:
            block = self.w3.eth.get_block(number)
        except Exception:
            return None
        return "0x" + bytes(block["hash"]).hex()

    def now(self) -> int:
        block = self._call("block", lambda: self.w3.eth.get_block("latest"))
        return int(block["timestamp"])

    # ------------------------------------------------------------ LogSource --

    def head(self) -> BlockRef:
        block = self._call("head", lambda: self.w3.eth.get_block("latest"))
        return BlockRef(int(block["number"]), "0x" + bytes(block["hash"]).hex())

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
        return "0x" + bytes(block["hash"]).hex()

    def channel_events(self, first: int, last: int) -> list[ChannelEvent]:
        """The channel changes the escrow logged in blocks ``first..last``, in order."""
        logs = self._call("logs", lambda: self.w3.eth.get_logs({
            "address": self.escrow, "fromBlock": first, "toBlock": last,
            "topics": [self._events.topics]}))  # type: ignore[typeddict-item]
        return [change for log in logs for change in self._events.decode(log)]
