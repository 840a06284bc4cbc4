"""Open, top up, extend and reclaim channels, one or a whole fleet.

Every operation runs in three steps: read each channel from the chain and refuse the whole
request if any of them cannot take it (unknown, another payer's, reclaimed, not expired,
an expiry that does not move later, a deposit that would overflow); check the payer's token
balance, allowance and ether; estimate every transaction (an ``eth_call`` that would revert
is refused with the contract's error). Only then is anything sent, so a refusal leaves the
chain as it was. Fleets go in batches of the contract's ``MAX_FUNDING_BATCH`` (``topUpMany``,
``extendMany``) or ``OPEN_BATCH`` (``openMany``); reclaiming has no batch entry point and
sends one transaction a channel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import is_address, to_checksum_address
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD

from ..chain.channel import ChannelState
from ..chain.client import EscrowClient
from ..chain.errors import ChainError, TxReverted
from .errors import OwnerError

U64 = 2**64 - 1
U40 = 2**40 - 1
# openMany has no cap of its own; 200 channels stay well inside a transaction's gas.
OPEN_BATCH = 200
# Problems listed in one refusal before the rest are counted.
SHOWN_PROBLEMS = 5

# Called after each transaction: (channels done, channels in all).
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SentTx:
    """One mined transaction of an operation and the channels it touched."""

    tx_hash: str
    channels: tuple[int, ...]
    gas_used: int

    def as_dict(self) -> dict[str, Any]:
        return {"tx": self.tx_hash, "channels": list(self.channels), "gas_used": self.gas_used}


def chain_time(client: EscrowClient) -> int:
    """The latest block's timestamp: what the contract compares expiries with."""
    return int(client.w3.eth.get_block("latest")["timestamp"])


def read_channels(client: EscrowClient, channel_ids: Sequence[int]) -> list[ChannelState]:
    return [client.channel(channel_id) for channel_id in channel_ids]


def _refuse(problems: list[str]) -> None:
    if not problems:
        return
    shown = problems[:SHOWN_PROBLEMS]
    more = len(problems) - len(shown)
    tail = f"\n  ... and {more} more" if more else ""
    raise OwnerError("nothing was sent:\n  " + "\n  ".join(shown) + tail)


def _ownership_problems(states: Sequence[ChannelState], payer: str,
                        client: EscrowClient) -> list[str]:
    problems = []
    for state in states:
        if not state.exists:
            problems.append(f"channel {state.channel_id} does not exist on escrow "
                            f"{client.address} (check the id and --escrow)")
        elif state.payer != payer:
            problems.append(f"channel {state.channel_id} is paid for by {state.payer}, not by "
                            f"{payer}: use that account's keystore or key")
        elif state.closed:
            problems.append(f"channel {state.channel_id} was reclaimed and cannot be funded or "
                            "extended again: open a new one")
    return problems


def _one_token(states: Sequence[ChannelState]) -> str:
    tokens = sorted({state.token for state in states})
    if len(tokens) != 1:
        raise OwnerError("nothing was sent: these channels lock different tokens "
                         f"({', '.join(tokens)}); top up the channels of each token separately")
    return tokens[0]


def _estimate_all(client: EscrowClient, payer: LocalAccount,
                  calls: Sequence[ContractFunction]) -> list[int]:
    estimates = []
    for call in calls:
        try:
            estimates.append(client.estimate(payer.address, call))
        except TxReverted as exc:
            raise OwnerError(f"nothing was sent: the escrow would refuse it with "
                             f"{exc.error or exc}") from None
    return estimates


def _check_ether(client: EscrowClient, payer: LocalAccount, gas: int) -> None:
    block = client.w3.eth.get_block("latest")
    fee = 2 * int(block.get("baseFeePerGas", 0) or 0) + int(client.w3.eth.max_priority_fee)
    need = gas * fee
    have = int(client.w3.eth.get_balance(payer.address))
    if have < need:
        raise OwnerError(f"nothing was sent: {payer.address} holds {have} wei, and the "
                         f"transactions may cost up to {need} wei of gas: send it ether first")


def _check_funds(client: EscrowClient, payer: LocalAccount, total: int, approve: bool) -> bool:
    """Refuse if the payer cannot pay ``total``; True if an approval must be sent first."""
    balance = client.balance_of(payer.address)
    if balance < total:
        raise OwnerError(f"nothing was sent: {payer.address} holds {balance} units of token "
                         f"{client.token_address}, {total} are needed: fund the payer first")
    allowance = client.allowance(payer.address)
    if allowance >= total:
        return False
    if not approve:
        raise OwnerError(f"nothing was sent: the escrow may pull {allowance} units from "
                         f"{payer.address}, {total} are needed: add --approve (or approve "
                         f"the escrow {client.address} for the token yourself)")
    return True


def _batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _run(client: EscrowClient, payer: LocalAccount, calls: Sequence[ContractFunction],
         groups: Sequence[Sequence[int]], progress: Progress | None) -> list[SentTx]:
    sent: list[SentTx] = []
    total = sum(len(group) for group in groups)
    done = 0
    for call, group in zip(calls, groups, strict=True):
        try:
            receipt = client.send(payer, call)
        except ChainError as exc:
            finished = ", ".join(tx.tx_hash for tx in sent) or "none"
            raise OwnerError(f"transaction for channels {group[0]}..{group[-1]} failed after "
                             f"{done} of {total} channels were done (mined: {finished}): "
                             f"{exc}") from exc
        sent.append(SentTx(receipt["transactionHash"].to_0x_hex(), tuple(group),
                           int(receipt["gasUsed"])))
        done += len(group)
        if progress is not None:
            progress(done, total)
    return sent


def top_up(client: EscrowClient, payer: LocalAccount, channel_ids: Sequence[int],
           amount: int, approve: bool = False,
           progress: Progress | None = None) -> list[SentTx]:
    """Add ``amount`` to each channel's deposit."""
    if not 0 < amount <= U64:
        raise OwnerError(f"--amount must be between 1 and {U64}")
    states = read_channels(client, channel_ids)
    problems = _ownership_problems(states, payer.address, client)
    problems += [f"channel {s.channel_id}: a deposit of {s.deposit} + {amount} does not fit "
                 "the contract's 64 bits" for s in states if s.exists and s.deposit + amount > U64]
    _refuse(problems)
    funded = EscrowClient(client.w3, client.address, _one_token(states))
    total = amount * len(channel_ids)
    must_approve = _check_funds(funded, payer, total, approve)
    groups = _batches(list(channel_ids), funded.max_funding_batch())
    calls = [funded.top_up_many_call(group, [amount] * len(group)) for group in groups]
    if must_approve:
        # Checked above: the payer holds the tokens. The approval alone moves no funds.
        funded.approve(payer, total)
    _check_ether(funded, payer, sum(_estimate_all(funded, payer, calls)))
    return _run(funded, payer, calls, groups, progress)


def extend(client: EscrowClient, payer: LocalAccount, channel_ids: Sequence[int],
           expiry: int, progress: Progress | None = None) -> list[SentTx]:
    """Move every channel's expiry to ``expiry`` (unix seconds)."""
    if not 0 < expiry <= U40:
        raise OwnerError(f"the new expiry must be a unix time below {U40}")
    now = chain_time(client)
    if expiry <= now:
        raise OwnerError(f"nothing was sent: the new expiry {expiry} is not after the chain's "
                         f"time {now}")
    states = read_channels(client, channel_ids)
    problems = _ownership_problems(states, payer.address, client)
    problems += [f"channel {s.channel_id} already expires at {s.expiry}, not before {expiry}: "
                 "pick a later expiry or leave it out" for s in states
                 if s.exists and s.expiry >= expiry]
    _refuse(problems)
    groups = _batches(list(channel_ids), client.max_funding_batch())
    calls = [client.extend_many_call(group, expiry) for group in groups]
    _check_ether(client, payer, sum(_estimate_all(client, payer, calls)))
    return _run(client, payer, calls, groups, progress)


def reclaim(client: EscrowClient, payer: LocalAccount, channel_ids: Sequence[int],
            progress: Progress | None = None) -> list[SentTx]:
    """Take back what each expired channel holds beyond what was paid, and close it."""
    now = chain_time(client)
    states = read_channels(client, channel_ids)
    problems = _ownership_problems(states, payer.address, client)
    problems += [f"channel {s.channel_id} expires at {s.expiry}, {s.expiry - now} s from now: "
                 "it can be reclaimed from then on" for s in states
                 if s.exists and not s.closed and s.expiry > now]
    _refuse(problems)
    calls = [client.escrow.functions.reclaim(channel_id) for channel_id in channel_ids]
    _check_ether(client, payer, sum(_estimate_all(client, payer, calls)))
    return _run(client, payer, calls, [[channel_id] for channel_id in channel_ids], progress)


def open_channels(client: EscrowClient, payer: LocalAccount, signers: Sequence[str],
                  payee: str, deposit: int, expiry: int, approve: bool = False,
                  progress: Progress | None = None) -> tuple[list[int], list[SentTx]]:
    """Open one channel per signer, each funded with ``deposit``; returns the new ids."""
    bad = [address for address in (*signers, payee) if not is_address(address)]
    if bad:
        raise OwnerError(f"not an address: {bad[0]}")
    if not 0 < deposit <= U64:
        raise OwnerError(f"--deposit must be between 1 and {U64}")
    now = chain_time(client)
    if not now < expiry <= U40:
        raise OwnerError(f"nothing was sent: the expiry {expiry} must be after the chain's "
                         f"time {now}")
    total = deposit * len(signers)
    must_approve = _check_funds(client, payer, total, approve)
    groups = _batches([to_checksum_address(s) for s in signers], OPEN_BATCH)
    calls = [client.escrow.functions.openMany(client.token_address, [
        (signer, to_checksum_address(payee), deposit, expiry) for signer in group])
        for group in groups]
    if must_approve:
        client.approve(payer, total)
    _check_ether(client, payer, sum(_estimate_all(client, payer, calls)))
    ids: list[int] = []
    sent: list[SentTx] = []
    for call in calls:
        try:
            receipt = client.send(payer, call)
        except ChainError as exc:
            raise OwnerError(f"opening failed after {len(ids)} of {len(signers)} channels "
                             f"were opened (ids: {ids or 'none'}): {exc}") from exc
        opened = [int(event["args"]["channelId"]) for event in
                  client.escrow.events.ChannelOpened().process_receipt(receipt, errors=DISCARD)]
        ids.extend(opened)
        sent.append(SentTx(receipt["transactionHash"].to_0x_hex(), tuple(opened),
                           int(receipt["gasUsed"])))
        if progress is not None:
            progress(len(ids), len(signers))
    return ids, sent


__all__ = ["OPEN_BATCH", "SentTx", "chain_time", "extend", "open_channels",
           "read_channels", "reclaim", "top_up"]
