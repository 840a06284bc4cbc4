"""Settlement: redeem the highest unredeemed voucher of each channel, in batches.

One :class:`Settler` owns the provider key's nonce in a process (a lock around every
signing and broadcast). Each transaction is signed, **stored** (state ``signed``), and
only then broadcast; it moves ``sent`` → ``mined`` → ``confirmed`` as receipts and
confirmations arrive. Because the signed bytes are stored first, a crash at any point is
recovered by ``advance``: a ``signed`` transaction is broadcast again (a node that
already has it says so, which counts as sent), a ``sent`` one is watched for its
receipt, a ``mined`` one whose receipt disappeared (a reorg) goes back to ``sent`` and is
broadcast again. At ``confirmed`` the channels' on-chain ``paid`` is read back: each item
is ``paid`` when the chain reached its amount, else ``skipped`` (the contract skips stale,
expired or over-deposit items without reverting), and the ledger's redeemed amounts
follow the chain, never the other way round.

One signer across processes: the key's nonce is shared by every process that settles
through the same ledger (a running gateway, ``nanotoll settle now``, a second gateway on
the same PostgreSQL ledger). Each takes the ledger's ``settlement`` lease before it
signs or advances anything, renews it before every signature, and gives it up when its
round ends; a gateway whose round finds the lease taken skips that round, and
``settle now`` waits for a running gateway's round to end.

The lease names its holder. A gateway is named by its configured MQTT client id, which
outlives the process: restarted after a crash, it finds its own name on the lease and
takes it back at once, then broadcasts or replaces what it had signed. Two gateways with
different client ids exclude each other as before. A holder without a stable name
(``settle now``, a gateway whose client id is left random) is one process, and its lease
runs out :data:`LEASE_SECONDS` after a crash.

Policy (``due``): a channel is redeemed when its unredeemed amount reaches the threshold,
when its oldest unredeemed voucher is older than the interval, or when its expiry is
near; ``settle_now`` redeems everything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..ledger import (
    ChannelRecord,
    LeaseBusy,
    Ledger,
    Settlement,
    SettlementItem,
    SettlementState,
)
from ..logevent import event
from .channel import ChannelState
from .client import RedeemResult, SignedTx
from .errors import ChainError, NodeUnavailable, NonceTooLow, TxKnown, Underpriced

LEASE = "settlement"
LEASE_SECONDS = 60.0
EXPIRY_SCAN_SECONDS = 60.0  # the background worker checks channel expiries this often
# A pause between the expiry scan's chain reads. Each read is Python work (web3) that
# takes the GIL from the thread answering requests; read back to back, a hundred of them
# held every purchase of a 1,000-device fleet for a second or more, once a minute.
EXPIRY_SCAN_PAUSE = 0.01


def gateway_holder(client_id: str) -> str:
    """The lease holder's name for a gateway with this configured client id; "" (a
    process-only name) when the client id is left random."""
    return f"gateway:{client_id}" if client_id else ""


class RedeemChain(Protocol):
    """What settlement needs from the chain (``node.EscrowChain`` implements it). Node
    errors raise members of the :mod:`.errors` family."""

    def channel(self, channel_id: int) -> ChannelState | None: ...

    def max_batch(self) -> int: ...

    def pending_nonce(self) -> int: ...

    def sign_redeem(self, route: int, vouchers: bytes, nonce: int, fee_bump: int = 0
                    ) -> SignedTx: ...

    def send(self, raw: bytes) -> None: ...

    def receipt(self, tx_hash: str) -> RedeemResult | None: ...

    def block_number(self) -> int: ...

    def block_hash(self, number: int) -> str | None: ...

    def now(self) -> int: ...


class SettlementPolicy(Protocol):
    """When a channel is due (the gateway's ``[settlement]`` config section)."""

    @property
    def threshold(self) -> int: ...  # units unredeemed on one channel that make it due

    @property
    def interval(self) -> int: ...  # seconds an accepted voucher may wait unredeemed

    @property
    def expiry_window(self) -> int: ...  # a channel expiring this close is due

    @property
    def batch_size(self) -> int: ...  # vouchers per transaction; 0: the contract's cap


@dataclass(slots=True)
class SettlementSummary:
    transactions: list[str] = field(default_factory=list)
    vouchers: int = 0  # items confirmed paid
    skipped: int = 0  # items the contract skipped
    amount: int = 0  # units newly redeemed on-chain by these transactions
    gas_used: int = 0
    pending: int = 0  # settlements still not confirmed when settle_now returned
    unredeemable: list[int] = field(default_factory=list)  # channels expired or closed

    def as_dict(self) -> dict[str, object]:
        return {"transactions": self.transactions, "vouchers": self.vouchers,
                "skipped": self.skipped, "amount": self.amount, "gas_used": self.gas_used,
                "pending": self.pending, "unredeemable": self.unredeemable}


class Settler:
    def __init__(self, ledger: Ledger, chain: RedeemChain, config: SettlementPolicy,
                 confirmations: int = 1, receipt_timeout: float = 120.0,
                 clock: Callable[[], float] = time.time,
                 logger: logging.Logger | None = None, holder: str = "") -> None:
        self.ledger = ledger
        self.chain = chain
        self.config = config
        self.confirmations = confirmations
        self.receipt_timeout = receipt_timeout
        self._clock = clock
        self._lock = threading.RLock()  # the one owner of the key's nonce in this process
        self._log = logger or logging.getLogger("nanotoll.chain.settle")
        self._last_sent: dict[int, float] = {}
        # The name on the lease: stable across restarts when given (see the module's
        # docstring), else this process alone.
        self.holder = holder or \
            f"process:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held = 0  # nesting depth of lease-holding sections in this process
        self._next_expiry_scan = 0.0  # monotonic time of the next near-expiry scan
        self._expiry_seen: dict[int, int] = {}  # channel id -> expiry as last read

    # ------------------------------------------------------------- lease --

    def _renew(self) -> None:
        """Take or renew the cross-process lease; LeaseBusy when another process has it."""
        if not self.ledger.acquire_lease(LEASE, self.holder, LEASE_SECONDS):
            raise LeaseBusy(LEASE)

    @contextlib.contextmanager
    def leased(self, wait: float = 0.0, poll: float = 0.1) -> Iterator[None]:
        """Hold the settlement lease (waiting up to ``wait`` seconds for it) and the
        in-process lock for the block; the lease is released at the end."""
        deadline = time.monotonic() + wait
        with self._lock:
            if self._held == 0:
                while True:
                    try:
                        self._renew()
                        break
                    except LeaseBusy:
                        if time.monotonic() >= deadline:
                            raise
                        time.sleep(poll)
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
                if self._held == 0:
                    try:
                        self.ledger.release_lease(LEASE, self.holder)
                    except Exception as exc:  # it runs out by itself
                        event(self._log, "lease_release_failed", logging.WARNING,
                              error=str(exc))

    # ------------------------------------------------------------ policy --

    def due(self, everything: bool = False) -> list[ChannelRecord]:
        """Channels to redeem now; those already covered by an open settlement excluded."""
        covered: dict[int, int] = {}
        for settlement in self.ledger.settlements(open_only=True):
            for item in settlement.items:
                covered[item.channel_id] = max(covered.get(item.channel_id, 0), item.cumulative)
        now_ms = int(self._clock() * 1000)
        chosen = []
        for record in self.ledger.unredeemed():
            if covered.get(record.channel_id, 0) >= record.cumulative:
                continue
            if not everything and record.channel_id in covered:
                # A redemption of it is on its way: the rest waits for its confirmation
                # (re-submitting every busy channel each round would keep the worker on
                # RPC).
                continue
            if everything or record.unredeemed >= self.config.threshold \
                    or now_ms - record.first_unredeemed_ms >= self.config.interval * 1000:
                chosen.append(record)
        return chosen

    def near_expiry(self, records: Sequence[ChannelRecord], states: dict[int, ChannelState]
                    ) -> list[ChannelRecord]:
        now = self.chain.now()
        return [r for r in records if r.channel_id in states
                and states[r.channel_id].expiry - now <= self.config.expiry_window]

    # -------------------------------------------------------- submission --

    def _batch_size(self) -> int:
        cap = self.chain.max_batch()
        wanted = self.config.batch_size or cap
        return max(1, min(wanted, cap))

    def _next_nonce(self) -> int:
        chain_nonce = self.chain.pending_nonce()
        stored = [s.nonce for s in self.ledger.settlements(open_only=True)]
        return max([chain_nonce, *(n + 1 for n in stored)])

    def submit(self, records: Sequence[ChannelRecord], summary: SettlementSummary
               ) -> list[Settlement]:
        """Sign, store and broadcast redeem transactions for ``records``."""
        by_route: dict[int, list[SettlementItem]] = defaultdict(list)
        now = self.chain.now()
        for record in records:
            state = self.chain.channel(record.channel_id)
            if state is None or state.closed or state.expiry <= now:
                summary.unredeemable.append(record.channel_id)
                event(self._log, "unredeemable", logging.WARNING, channel=record.channel_id,
                      unredeemed=record.unredeemed)
                continue
            if state.paid >= record.cumulative:  # redeemed elsewhere (another relayer)
                self.ledger.record_redeemed(record.channel_id, state.paid)
                continue
            by_route[state.route].append(
                SettlementItem(record.channel_id, record.cumulative, record.voucher))
        size = self._batch_size()
        created = []
        with self.leased():
            for route, items in sorted(by_route.items()):
                for start in range(0, len(items), size):
                    chunk = items[start:start + size]
                    created.append(self._sign_store_send(route, chunk))
        return created

    def _sign_store_send(self, route: int, items: Sequence[SettlementItem]) -> Settlement:
        self._renew()  # a nonce is about to be used: the lease must still be ours
        nonce = self._next_nonce()
        vouchers = b"".join(item.voucher for item in items)
        signed = self.chain.sign_redeem(route, vouchers, nonce)
        settlement = self.ledger.create_settlement(nonce, signed.tx_hash, signed.raw, items,
                                                   route)
        event(self._log, "settlement_signed", id=settlement.settlement_id, nonce=nonce,
              tx=signed.tx_hash, items=len(items), route=route)
        return self._broadcast(settlement)

    def _broadcast(self, settlement: Settlement) -> Settlement:
        try:
            self.chain.send(settlement.raw_tx)
        except ChainError as exc:
            if isinstance(exc, TxKnown):
                pass  # the node has it already: it is sent
            elif isinstance(exc, NonceTooLow):
                # Mined already (ours, found by a receipt) or replaced by another tx.
                if self._find_receipt(settlement) is None:
                    event(self._log, "settlement_replaced_by_other", logging.ERROR,
                          id=settlement.settlement_id, nonce=settlement.nonce)
                    return self.ledger.update_settlement(
                        settlement.settlement_id, SettlementState.REPLACED, error=str(exc))
            elif isinstance(exc, NodeUnavailable | Underpriced):
                event(self._log, "broadcast_deferred", logging.WARNING,
                      id=settlement.settlement_id, error=str(exc))
                # Stays as it is: advance() sends it again, or bumps its fees when stuck.
                self._last_sent.setdefault(settlement.settlement_id, time.monotonic())
                return settlement
            else:
                event(self._log, "settlement_failed", logging.ERROR,
                      id=settlement.settlement_id, error=str(exc))
                return self.ledger.update_settlement(settlement.settlement_id,
                                                     SettlementState.FAILED, error=str(exc))
        self._last_sent[settlement.settlement_id] = time.monotonic()
        if settlement.state is SettlementState.SIGNED:
            settlement = self.ledger.update_settlement(settlement.settlement_id,
                                                       SettlementState.SENT)
            event(self._log, "settlement_sent", id=settlement.settlement_id,
                  tx=settlement.tx_hash)
        return settlement

    # ----------------------------------------------------------- progress --

    def advance(self, summary: SettlementSummary | None = None) -> list[Settlement]:
        """Move every open settlement as far as the chain allows; returns the open ones."""
        summary = summary or SettlementSummary()
        still_open = []
        with self.leased():
            for settlement in self.ledger.settlements(open_only=True):
                settlement = self._advance_one(settlement, summary)
                if settlement.state.open:
                    still_open.append(settlement)
        return still_open

    def _find_receipt(self, settlement: Settlement) -> RedeemResult | None:
        for tx_hash in settlement.hashes:  # the newest replacement first
            receipt = self.chain.receipt(tx_hash)
            if receipt is not None:
                return receipt
        return None

    def _advance_one(self, settlement: Settlement, summary: SettlementSummary) -> Settlement:
        sid = settlement.settlement_id
        if settlement.state is SettlementState.SIGNED:
            return self._broadcast(settlement)
        receipt = self._find_receipt(settlement)
        if receipt is None:
            if settlement.state is SettlementState.MINED:  # reorged out: send it again
                event(self._log, "settlement_reorged", logging.WARNING, id=sid,
                      block=settlement.block_number)
                settlement = self.ledger.update_settlement(sid, SettlementState.SENT)
                return self._broadcast(settlement)
            sent = self._last_sent.get(sid)
            if sent is None:
                return self._broadcast(settlement)  # after a restart: the node may not know it
            if time.monotonic() - sent > self.receipt_timeout:
                return self._replace(settlement)  # stuck: same nonce, higher fees
            return settlement
        if receipt.status != 1:
            event(self._log, "settlement_reverted", logging.ERROR, id=sid, tx=receipt.tx_hash)
            return self.ledger.update_settlement(sid, SettlementState.FAILED,
                                                 block_number=receipt.block_number,
                                                 gas_used=receipt.gas_used, error="reverted")
        if settlement.state is not SettlementState.MINED \
                or settlement.block_number != receipt.block_number:
            settlement = self.ledger.update_settlement(sid, SettlementState.MINED,
                                                       block_number=receipt.block_number,
                                                       gas_used=receipt.gas_used)
            event(self._log, "settlement_mined", id=sid, block=receipt.block_number,
                  gas=receipt.gas_used, tx=receipt.tx_hash)
        head = self.chain.block_number()
        if head - receipt.block_number + 1 < self.confirmations:
            return settlement
        if self.chain.block_hash(receipt.block_number) != receipt.block_hash:
            return settlement  # the block is being replaced; look again next time
        return self._confirm(settlement, receipt, summary)

    def _replace(self, settlement: Settlement) -> Settlement:
        """Re-sign a stuck transaction with the same nonce and fees raised by a quarter per
        replacement (nodes want at least +10%); store it, then broadcast it."""
        bump = 25 * (len(settlement.previous_hashes) + 1)
        vouchers = b"".join(item.voucher for item in settlement.items)
        self._renew()
        try:
            signed = self.chain.sign_redeem(settlement.route, vouchers, settlement.nonce, bump)
        except ChainError as exc:
            event(self._log, "replacement_failed", logging.WARNING,
                  id=settlement.settlement_id, error=str(exc))
            self._last_sent[settlement.settlement_id] = time.monotonic()
            return settlement
        replaced = self.ledger.update_settlement(settlement.settlement_id, SettlementState.SENT,
                                                 tx_hash=signed.tx_hash, raw_tx=signed.raw)
        event(self._log, "settlement_replaced", logging.WARNING, id=settlement.settlement_id,
              nonce=settlement.nonce, old=settlement.tx_hash, new=signed.tx_hash, bump=bump)
        return self._broadcast(replaced)

    def _confirm(self, settlement: Settlement, receipt: RedeemResult,
                 summary: SettlementSummary) -> Settlement:
        # Outcomes come from this transaction's events; the ledger's redeemed amounts from
        # the channels' on-chain paid (which also counts redemptions relayed by others).
        outcomes: dict[int, str] = {}
        amounts = receipt.amounts
        for item in settlement.items:
            paid_here = item.channel_id in amounts
            outcomes[item.channel_id] = "paid" if paid_here else "skipped"
            state = self.chain.channel(item.channel_id)
            if state is not None:
                self.ledger.record_redeemed(item.channel_id, state.paid)
        summary.amount += sum(amounts.values())
        confirmed = self.ledger.update_settlement(
            settlement.settlement_id, SettlementState.CONFIRMED,
            block_number=receipt.block_number, gas_used=receipt.gas_used, outcomes=outcomes)
        paid_items = sum(1 for o in outcomes.values() if o == "paid")
        summary.vouchers += paid_items
        summary.skipped += len(outcomes) - paid_items
        summary.gas_used += receipt.gas_used
        summary.transactions.append(receipt.tx_hash)
        event(self._log, "settlement_confirmed", id=settlement.settlement_id,
              tx=receipt.tx_hash, paid=paid_items, skipped=len(outcomes) - paid_items,
              gas=receipt.gas_used)
        self._last_sent.pop(settlement.settlement_id, None)
        return confirmed

    # -------------------------------------------------------------- runs --

    def run_once(self) -> SettlementSummary:
        """One pass of the background worker: progress, then redeem what is due. Skipped
        (an empty summary) while another process holds the settlement lease."""
        summary = SettlementSummary()
        try:
            with self.leased():
                self._run_once(summary)
        except LeaseBusy:
            event(self._log, "settlement_lease_busy", logging.INFO)
        return summary

    def _run_once(self, summary: SettlementSummary) -> None:
        self.advance(summary)
        due = self.due()
        if not due and time.monotonic() >= self._next_expiry_scan:
            # A chain read per unredeemed channel not known to expire far off, so it
            # runs at most once per EXPIRY_SCAN_SECONDS, which is far inside the expiry
            # window.
            self._next_expiry_scan = time.monotonic() + EXPIRY_SCAN_SECONDS
            # Near-expiry channels are due whatever their amount.
            candidates = self.due(everything=True)
            # Expiry only grows (extendExpiry) and a channel closes only after it: one
            # known to expire well past the window is not read again until it nears.
            now = self.chain.now()
            window = self.config.expiry_window
            candidates = [r for r in candidates if self._expiry_seen.get(r.channel_id, 0)
                          - now <= window]
            # At most a tenth (100 or more) per scan, those known to be near first: each
            # channel is read within ten scans, well inside the window, with no burst.
            candidates.sort(key=lambda r: (r.channel_id not in self._expiry_seen,
                                           self._expiry_seen.get(r.channel_id, 0)))
            candidates = candidates[:max(100, len(candidates) // 10)]
            states: dict[int, ChannelState] = {}
            for number, record in enumerate(candidates):
                if number:
                    time.sleep(EXPIRY_SCAN_PAUSE)
                if (state := self.chain.channel(record.channel_id)) is not None:
                    states[record.channel_id] = state
            self._expiry_seen.update({c: s.expiry for c, s in states.items()})
            due = self.near_expiry(candidates, states)
        if due:
            self.submit(due, summary)

    def settle_now(self, timeout: float = 120.0, poll: float = 0.2) -> SettlementSummary:
        """Redeem every accepted voucher and wait until the transactions are confirmed.
        Waits (within ``timeout``) for another process's settlement round to end."""
        started = time.monotonic()
        with self.leased(wait=timeout, poll=poll):
            return self._settle_now(max(0.0, timeout - (time.monotonic() - started)), poll)

    def _settle_now(self, timeout: float, poll: float) -> SettlementSummary:
        summary = SettlementSummary()
        self.advance(summary)
        self.submit(self.due(everything=True), summary)
        deadline = time.monotonic() + timeout
        rounds = 1
        while True:
            still_open = self.advance(summary)
            if not still_open and rounds < 3:
                # A settlement that ended replaced leaves its vouchers due: submit again.
                left = [r for r in self.due(everything=True)
                        if r.channel_id not in summary.unredeemable]
                if left:
                    rounds += 1
                    self.submit(left, summary)
                    continue
            if not still_open or time.monotonic() >= deadline:
                summary.pending = len(still_open)
                return summary
            time.sleep(poll)
            self._renew()  # still ours while we wait for confirmations
