"""A typed web3.py client for NanotollEscrow and the test stablecoin.

Transactions are signed locally by the ``LocalAccount`` passed to each call and sent raw, as a
gateway does in production; each call waits for its receipt and raises
:class:`~.errors.TxReverted` when the transaction reverted. The settler's redeem is the
exception: :meth:`EscrowClient.sign_redeem` only builds and signs it, because the settler
stores each signed transaction before it is broadcast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, cast

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD
from web3.types import TxParams, TxReceipt

from .abi import shipped_abi
from .channel import ChannelState
from .errors import ChainError, TxReverted

if TYPE_CHECKING:
    from .artifacts import Artifact

REDEEMED_RECORD_BYTES = 20


def decode_revert(abi: Sequence[Mapping[str, Any]], data: bytes) -> str | None:
    """Name and arguments of the custom error in ``data`` (4-byte selector + ABI args)."""
    if len(data) < 4:
        return None
    for item in abi:
        if item.get("type") != "error":
            continue
        types = [str(arg["type"]) for arg in item.get("inputs", [])]
        signature = f"{item['name']}({','.join(types)})"
        if keccak(text=signature)[:4] == data[:4]:
            try:
                args = abi_decode(types, data[4:])
            except Exception:
                return signature
            return f"{item['name']}({', '.join(str(a) for a in args)})"
    return None


def _revert_data(exc: ContractLogicError) -> bytes:
    data = exc.data if isinstance(exc.data, str) else None
    if data is None and exc.args and isinstance(exc.args[0], str):
        data = exc.args[0]
    if data and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return b""
    return b""


class SkipReason(IntEnum):
    """``NanotollEscrow.SkipReason``, same order."""

    UNKNOWN_CHANNEL = 0
    WRONG_ROUTE = 1
    EXPIRED = 2
    STALE = 3
    OVER_DEPOSIT = 4
    BAD_SIGNATURE = 5


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One channel of :meth:`EscrowClient.open_many`."""

    signer: str
    payee: str
    deposit: int
    expiry: int


@dataclass(frozen=True, slots=True)
class RedeemedItem:
    channel_id: int
    cumulative: int
    amount: int


@dataclass(frozen=True, slots=True)
class SkippedItem:
    channel_id: int
    index: int
    cumulative: int
    reason: SkipReason


@dataclass(frozen=True, slots=True)
class RedeemResult:
    """A mined redeem transaction and what it did to each voucher (nothing if it reverted)."""

    tx_hash: str  # 0x-prefixed
    status: int  # 1 success, 0 reverted
    block_number: int
    block_hash: str  # 0x-prefixed
    gas_used: int
    total: int
    redeemed: tuple[RedeemedItem, ...]
    skipped: tuple[SkippedItem, ...]
    receipt: TxReceipt

    @property
    def amounts(self) -> dict[int, int]:
        """Channel id -> units this transaction paid out of it."""
        paid: dict[int, int] = {}
        for item in self.redeemed:
            paid[item.channel_id] = paid.get(item.channel_id, 0) + item.amount
        return paid


@dataclass(frozen=True, slots=True)
class SignedTx:
    raw: bytes
    tx_hash: str  # 0x-prefixed


def decode_redeemed_items(items: bytes) -> tuple[RedeemedItem, ...]:
    """The ``items`` of a ``Redeemed`` event: 20-byte records channelId u32 | cumulative u64 |
    amount u64, big-endian."""
    if len(items) % REDEEMED_RECORD_BYTES:
        raise ValueError(f"Redeemed items length {len(items)} is not a multiple of 20")
    out = []
    for i in range(0, len(items), REDEEMED_RECORD_BYTES):
        record = items[i:i + REDEEMED_RECORD_BYTES]
        out.append(RedeemedItem(
            channel_id=int.from_bytes(record[0:4], "big"),
            cumulative=int.from_bytes(record[4:12], "big"),
            amount=int.from_bytes(record[12:20], "big"),
        ))
    return tuple(out)


def send_transaction(w3: Web3, account: LocalAccount,
                     call: ContractFunction | ContractConstructor | TxParams,
                     timeout: float = 60.0,
                     abi: Sequence[Mapping[str, Any]] = ()) -> TxReceipt:
    """Sign ``call`` with ``account``, send it, wait for the receipt; raise
    :class:`~.errors.TxReverted` if it reverts (``abi`` decodes custom errors)."""
    try:
        return _send_transaction(w3, account, call, timeout)
    except ContractLogicError as exc:
        error = decode_revert(abi, _revert_data(exc))
        raise TxReverted(f"transaction reverted: {error or exc}", None, error) from exc


def _send_transaction(w3: Web3, account: LocalAccount,
                      call: ContractFunction | ContractConstructor | TxParams,
                      timeout: float) -> TxReceipt:
    base: dict[str, Any] = {
        "from": account.address,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "chainId": w3.eth.chain_id,
    }
    if isinstance(call, ContractFunction | ContractConstructor):
        tx = call.build_transaction(cast(TxParams, base))
    else:
        merged: dict[str, Any] = {**base, **call}
        if "gas" not in merged:
            merged["gas"] = w3.eth.estimate_gas(cast(TxParams, merged))
        if "maxFeePerGas" not in merged and "gasPrice" not in merged:
            tip = int(w3.eth.max_priority_fee)
            base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
            merged["maxPriorityFeePerGas"] = tip
            merged["maxFeePerGas"] = 2 * base_fee + tip
        tx = cast(TxParams, merged)
    signed = account.sign_transaction(cast(dict[str, Any], tx))
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
    if receipt["status"] != 1:
        raise TxReverted(f"transaction {tx_hash.to_0x_hex()} reverted", receipt)
    return receipt


def deploy_contract(w3: Web3, account: LocalAccount, artifact: Artifact, *args: Any) -> str:
    """Deploy ``artifact`` with constructor ``args``; returns the checksummed address."""
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = send_transaction(w3, account, factory.constructor(*args))
    address = receipt["contractAddress"]
    if address is None:
        raise ChainError(f"deployment {receipt['transactionHash'].to_0x_hex()} has no "
                         "contract address")
    return to_checksum_address(address)


class EscrowClient:
    """NanotollEscrow at ``escrow`` and the ERC-20 ``token`` its channels use here."""

    def __init__(self, w3: Web3, escrow: str, token: str | None = None,
                 escrow_abi: list[dict[str, Any]] | None = None,
                 token_abi: list[dict[str, Any]] | None = None) -> None:
        self.w3 = w3
        self.escrow: Contract = w3.eth.contract(
            address=to_checksum_address(escrow),
            abi=escrow_abi if escrow_abi is not None else shipped_abi("NanotollEscrow"))
        # channel() is the gateway's hot chain read (first requests, cache refreshes, the
        # settler's expiry scans): its call data and result types are taken from the ABI
        # once, so that a read skips web3's per-call ABI matching and validation.
        entry: dict[str, Any] = next(
            dict(e) for e in self.escrow.abi
            if e.get("type") == "function" and e.get("name") == "channel")
        inputs = ",".join(str(i["type"]) for i in entry["inputs"])
        self._channel_selector = keccak(text=f"channel({inputs})")[:4]
        self._channel_outputs = tuple(str(o["type"]) for o in entry["outputs"])
        self.token: Contract | None = None
        if token is not None:
            self.token = w3.eth.contract(
                address=to_checksum_address(token),
                abi=token_abi if token_abi is not None else shipped_abi("TestStablecoin"))

    # ------------------------------------------------------------------ deploy --

    @classmethod
    def deploy(cls, w3: Web3, deployer: LocalAccount, token: str | None = None) -> EscrowClient:
        """Deploy the escrow (and, unless ``token`` is given, a fresh TestStablecoin) from
        forge's artifacts (built on demand)."""
        # Imported here: forge artifacts are a development tool, and a running gateway
        # never deploys.
        from .artifacts import load_artifact

        escrow_artifact = load_artifact("NanotollEscrow")
        if token is None:
            token_artifact = load_artifact("TestStablecoin")
            token = deploy_contract(w3, deployer, token_artifact)
        escrow = deploy_contract(w3, deployer, escrow_artifact)
        return cls(w3, escrow, token, escrow_artifact.abi)

    @property
    def address(self) -> str:
        return str(self.escrow.address)

    @property
    def token_address(self) -> str:
        return str(self._token().address)

    def _token(self) -> Contract:
        if self.token is None:
            raise ValueError("this client was made without a token address")
        return self.token

    def _send(self, account: LocalAccount, call: ContractFunction) -> TxReceipt:
        return send_transaction(self.w3, account, call, abi=self.escrow.abi)

    # ------------------------------------------------------------------- token --

    def mint(self, sender: LocalAccount, to: str, amount: int) -> TxReceipt:
        """TestStablecoin only: anyone may mint."""
        return self._send(sender, self._token().functions.mint(to_checksum_address(to), amount))

    def approve(self, owner: LocalAccount, amount: int) -> TxReceipt:
        """Let the escrow pull ``amount`` of the token from ``owner``."""
        return self._send(owner, self._token().functions.approve(self.address, amount))

    def balance_of(self, address: str) -> int:
        return int(self._token().functions.balanceOf(to_checksum_address(address)).call())

    def allowance(self, owner: str) -> int:
        """What the escrow may still pull from ``owner``."""
        return int(self._token().functions.allowance(to_checksum_address(owner),
                                                     self.address).call())

    # ---------------------------------------------------------------- channels --

    def open_channel(self, payer: LocalAccount, signer: str, payee: str, deposit: int,
                     expiry: int, approve: bool = True) -> tuple[int, TxReceipt]:
        """Open one channel funded by ``payer``; returns (channel id, receipt)."""
        if approve:
            self.approve(payer, deposit)
        receipt = self._send(payer, self.escrow.functions.open(
            to_checksum_address(signer), to_checksum_address(payee), self.token_address,
            deposit, expiry))
        ids = self._opened_ids(receipt)
        if len(ids) != 1:
            raise ChainError(f"expected one ChannelOpened event in "
                             f"{receipt['transactionHash'].to_0x_hex()}, got {len(ids)}")
        return ids[0], receipt

    def open_many(self, payer: LocalAccount, specs: Sequence[ChannelSpec],
                  approve: bool = True) -> tuple[list[int], TxReceipt]:
        """Open ``specs`` in one transaction (consecutive ids); returns (ids, receipt)."""
        total = sum(spec.deposit for spec in specs)
        if approve:
            self.approve(payer, total)
        params = [(to_checksum_address(s.signer), to_checksum_address(s.payee), s.deposit,
                   s.expiry) for s in specs]
        receipt = self._send(payer, self.escrow.functions.openMany(self.token_address, params))
        return self._opened_ids(receipt), receipt

    def _opened_ids(self, receipt: TxReceipt) -> list[int]:
        events = self.escrow.events.ChannelOpened().process_receipt(receipt, errors=DISCARD)
        return [int(event["args"]["channelId"]) for event in events]

    def top_up(self, payer: LocalAccount, channel_id: int, amount: int,
               approve: bool = True) -> TxReceipt:
        if approve:
            self.approve(payer, amount)
        return self._send(payer, self.escrow.functions.topUp(channel_id, amount))

    def extend_expiry(self, payer: LocalAccount, channel_id: int, expiry: int) -> TxReceipt:
        return self._send(payer, self.escrow.functions.extendExpiry(channel_id, expiry))

    def top_up_many(self, payer: LocalAccount, channel_ids: Sequence[int],
                    amounts: Sequence[int], approve: bool = True) -> TxReceipt:
        """Fund ``channel_ids[i]`` with ``amounts[i]`` each, in one transaction and one
        token transfer (at most ``max_funding_batch()`` channels)."""
        if approve:
            self.approve(payer, sum(amounts))
        return self._send(payer, self.top_up_many_call(channel_ids, amounts))

    def top_up_many_call(self, channel_ids: Sequence[int],
                         amounts: Sequence[int]) -> ContractFunction:
        return self.escrow.functions.topUpMany(list(channel_ids), list(amounts))

    def extend_many(self, payer: LocalAccount, channel_ids: Sequence[int],
                    expiry: int) -> TxReceipt:
        """Move every channel's expiry to ``expiry`` in one transaction."""
        return self._send(payer, self.extend_many_call(channel_ids, expiry))

    def extend_many_call(self, channel_ids: Sequence[int], expiry: int) -> ContractFunction:
        return self.escrow.functions.extendMany(list(channel_ids), expiry)

    def estimate(self, sender: str, call: ContractFunction) -> int:
        """Gas ``call`` would use if ``sender`` sent it now; :class:`~.errors.TxReverted`
        (the contract's error decoded) if it would revert. Sends nothing."""
        try:
            return int(call.estimate_gas({"from": to_checksum_address(sender)}))
        except ContractLogicError as exc:
            error = decode_revert(self.escrow.abi, _revert_data(exc))
            raise TxReverted(f"the call would revert: {error or exc}", None, error) from exc

    def send(self, sender: LocalAccount, call: ContractFunction) -> TxReceipt:
        """Sign and send a call built here (``*_call``), wait for its receipt."""
        return self._send(sender, call)

    def reclaim(self, payer: LocalAccount, channel_id: int) -> tuple[int, TxReceipt]:
        """After expiry: refund the unredeemed deposit to the payer; returns (refund, receipt)."""
        receipt = self._send(payer, self.escrow.functions.reclaim(channel_id))
        events = self.escrow.events.ChannelReclaimed().process_receipt(receipt, errors=DISCARD)
        return (int(events[0]["args"]["refund"]) if events else 0), receipt

    # ------------------------------------------------------------------ redeem --

    def redeem(self, sender: LocalAccount, route: int, vouchers: bytes) -> RedeemResult:
        """Redeem N × 76 packed voucher bytes for ``route``; anyone may send it, the route's
        payee is paid. Returns the per-item outcome decoded from the events."""
        receipt = self._send(sender, self.escrow.functions.redeem(route, vouchers))
        return self.redeem_result(receipt)

    def sign_redeem(self, account: LocalAccount, route: int, vouchers: bytes, nonce: int,
                    chain_id: int, fee_bump: int = 0) -> SignedTx:
        """The redeem transaction, signed by ``account`` and not sent. ``fee_bump`` raises
        the fees by that many percent (a replacement of a stuck transaction)."""
        function = self.escrow.functions.redeem(route, vouchers)
        gas = function.estimate_gas({"from": account.address})
        block = self.w3.eth.get_block("latest")
        base_fee = int(block.get("baseFeePerGas", 0) or 0)
        priority = int(self.w3.eth.max_priority_fee) or 1
        priority = priority * (100 + fee_bump) // 100 + (1 if fee_bump else 0)
        tx = function.build_transaction(cast(TxParams, {
            "from": account.address, "nonce": nonce, "chainId": chain_id,
            "gas": int(gas) * 5 // 4 + 20_000,
            "maxPriorityFeePerGas": priority,
            "maxFeePerGas": (2 * base_fee + priority) * (100 + fee_bump) // 100,
        }))
        signed = account.sign_transaction(cast(dict[str, Any], tx))
        return SignedTx(bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex())

    def redeem_result(self, receipt: TxReceipt) -> RedeemResult:
        """Decode a redeem receipt's ``Redeemed`` and ``VoucherSkipped`` events."""
        redeemed: list[RedeemedItem] = []
        total = 0
        for event in self.escrow.events.Redeemed().process_receipt(receipt, errors=DISCARD):
            total += int(event["args"]["total"])
            redeemed.extend(decode_redeemed_items(bytes(event["args"]["items"])))
        skipped = tuple(
            SkippedItem(channel_id=int(e["args"]["channelId"]), index=int(e["args"]["index"]),
                        cumulative=int(e["args"]["cumulative"]),
                        reason=SkipReason(int(e["args"]["reason"])))
            for e in self.escrow.events.VoucherSkipped().process_receipt(receipt, errors=DISCARD)
        )
        return RedeemResult(
            tx_hash=receipt["transactionHash"].to_0x_hex(),
            status=int(receipt["status"]),
            block_number=int(receipt["blockNumber"]),
            block_hash="0x" + bytes(receipt["blockHash"]).hex(),
            gas_used=int(receipt["gasUsed"]),
            total=total,
            redeemed=tuple(redeemed),
            skipped=skipped,
            receipt=receipt,
        )

    # ------------------------------------------------------------------- views --

    def channel(self, channel_id: int) -> ChannelState:
        """The channel as the contract holds it; all zeros (``exists`` False) for an id it
        never opened."""
        if not 0 <= channel_id < 1 << 32:  # the contract's channel ids are uint32
            raise ValueError(f"channel id {channel_id} is not a uint32")
        result = self.w3.eth.call({
            "to": self.escrow.address,
            "data": self._channel_selector + channel_id.to_bytes(32, "big")})
        try:
            (payer, signer, payee, token, route, deposit, paid, expiry,
             closed) = abi_decode(self._channel_outputs, bytes(result))
        except DecodingError as exc:  # no contract there, or not the escrow
            raise ChainError(f"channel({channel_id}) at {self.escrow.address} returned "
                             f"{len(result)} bytes that are no channel: is this the "
                             f"escrow on the right chain? ({exc})") from exc
        return ChannelState(channel_id=channel_id, payer=to_checksum_address(payer),
                            signer=to_checksum_address(signer),
                            payee=to_checksum_address(payee), token=to_checksum_address(token),
                            route=int(route), deposit=int(deposit), paid=int(paid),
                            expiry=int(expiry), closed=bool(closed))

    def route_of(self, payee: str, token: str | None = None) -> int:
        """Route id of (payee, token); 0 if no channel uses the pair yet."""
        return int(self.escrow.functions.routeOf(
            to_checksum_address(payee), to_checksum_address(token or self.token_address)).call())

    def domain_separator(self) -> bytes:
        return bytes(self.escrow.functions.domainSeparator().call())

    def voucher_digest(self, channel_id: int, cumulative: int) -> bytes:
        return bytes(self.escrow.functions.voucherDigest(channel_id, cumulative).call())

    def max_redeem_batch(self) -> int:
        return int(self.escrow.functions.maxRedeemBatch().call())

    def max_funding_batch(self) -> int:
        return int(self.escrow.functions.MAX_FUNDING_BATCH().call())

    def last_channel_id(self) -> int:
        return int(self.escrow.functions.lastChannelId().call())
