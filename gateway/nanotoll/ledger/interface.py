"""The ledger's interface: the records it keeps, its errors, and the contract every store keeps.

:class:`Ledger` has a SQLite implementation (:mod:`.sqlite`) and a PostgreSQL one
(:mod:`.postgres`) behind the same methods. The contract every implementation keeps:

* ``accept`` is an atomic per-channel compare-and-set on the last accepted cumulative
  amount. It stores the voucher, the request hash and the exact response bytes, and
  returns only after they are durable. Two callers (threads or processes) that verified
  against the same previous amount can never both succeed: the loser gets ``CONFLICT``
  with the row that won, and re-runs the rules against it.
* A voucher is stored before its response is published, and the broker's PUBACK follows
  the response: what was acknowledged is in the ledger.
* Amounts are uint64: implementations keep them exactly (SQLite as fixed-width decimal
  text, since its INTEGER is signed 64-bit).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class LedgerError(RuntimeError):
    """The ledger could not store or read; the request is answered BUSY and not charged."""


class LeaseBusy(LedgerError):
    """Another holder has the lease: whatever it guards was not done (nothing was signed)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"another process holds the {name} lease (a running gateway or "
                         "settle now); try again shortly")
        self.name = name


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """The highest voucher accepted on one channel, and what was redeemed of it."""

    channel_id: int
    cumulative: int
    voucher: bytes  # the 76-byte wire form
    request_hash: bytes
    response: bytes  # the response bytes sent for it, for idempotent replay
    accepted_at_ms: int
    redeemed: int  # the channel's on-chain paid as last confirmed
    first_unredeemed_ms: int  # when the oldest accepted-but-unredeemed voucher came in

    @property
    def unredeemed(self) -> int:
        return max(0, self.cumulative - self.redeemed)


# The columns of a channel row, in the order :func:`channel_record` reads them.
CHANNEL_COLUMNS = ("channel_id, cumulative, voucher, request_hash, response, accepted_ms, "
                   "redeemed, first_unredeemed_ms")


def channel_record(row: Sequence[Any]) -> ChannelRecord:
    """A :class:`ChannelRecord` from a row of ``CHANNEL_COLUMNS``, whatever the driver
    returns for its fields (amounts as decimal text or numerics, blobs as memoryviews)."""
    return ChannelRecord(
        channel_id=int(row[0]), cumulative=int(row[1]), voucher=bytes(row[2]),
        request_hash=bytes(row[3]), response=bytes(row[4]), accepted_at_ms=int(row[5]),
        redeemed=int(row[6]), first_unredeemed_ms=int(row[7]),
    )


@dataclass(frozen=True, slots=True)
class AcceptItem:
    """One voucher to accept: the arguments of :meth:`Ledger.accept`."""

    channel_id: int
    cumulative: int
    voucher: bytes
    request_hash: bytes
    response: bytes
    increment: int

    def check(self) -> None:
        if not 1 <= self.increment <= self.cumulative:
            raise ValueError(f"increment {self.increment} must be in 1..{self.cumulative}")
        if self.cumulative >= 1 << 64:
            raise ValueError(f"amount {self.cumulative} is not a uint64")


class AcceptStatus(enum.Enum):
    ACCEPTED = "accepted"
    CONFLICT = "conflict"  # another acceptance moved the channel past ``previous``


@dataclass(frozen=True, slots=True)
class AcceptResult:
    status: AcceptStatus
    record: ChannelRecord  # the channel after this call: ours, or the one that won


class SettlementState(enum.Enum):
    """sent → mined → confirmed; signed is stored before broadcast."""

    SIGNED = "signed"  # signed and stored, not yet broadcast
    SENT = "sent"  # broadcast; no receipt yet
    MINED = "mined"  # receipt seen, waiting for confirmations
    CONFIRMED = "confirmed"  # final: outcomes recorded on the channels
    REPLACED = "replaced"  # another transaction with the same nonce was mined instead
    FAILED = "failed"  # reverted on-chain, or refused by the node for good

    @property
    def open(self) -> bool:
        return self in (SettlementState.SIGNED, SettlementState.SENT, SettlementState.MINED)


@dataclass(frozen=True, slots=True)
class SettlementItem:
    channel_id: int
    cumulative: int
    voucher: bytes
    outcome: str | None = None  # "paid" or "skipped" once confirmed


@dataclass(frozen=True, slots=True)
class Settlement:
    settlement_id: int
    state: SettlementState
    nonce: int
    tx_hash: str
    raw_tx: bytes
    items: tuple[SettlementItem, ...]
    created_ms: int
    updated_ms: int
    block_number: int | None = None
    gas_used: int | None = None
    error: str | None = None
    route: int = 0
    previous_hashes: tuple[str, ...] = ()  # replaced transactions with the same nonce

    @property
    def hashes(self) -> tuple[str, ...]:
        return (self.tx_hash, *self.previous_hashes)

    @property
    def amount(self) -> int:
        return sum(item.cumulative for item in self.items)


class Ledger(ABC):
    """Durable per-channel voucher store; every method is safe from any thread."""

    @abstractmethod
    def accept(self, channel_id: int, cumulative: int, voucher_bytes: bytes,
               request_hash: bytes, response_bytes: bytes, increment: int) -> AcceptResult:
        """Compare-and-set: store this voucher if the channel's last accepted amount is at
        most ``cumulative - increment`` (the amount the rules were checked against)."""

    def accept_many(self, items: Sequence[AcceptItem]) -> list[AcceptResult]:
        """``accept`` for each item, committed together (one durable write for the batch);
        results in the order of ``items``. Each item is its own compare-and-set: a
        conflict on one leaves the others accepted. Implementations override this with a
        single transaction; this fallback commits them one by one."""
        return [self.accept(i.channel_id, i.cumulative, i.voucher, i.request_hash,
                            i.response, i.increment) for i in items]

    @abstractmethod
    def lookup(self, channel_id: int) -> ChannelRecord | None:
        """The channel's highest accepted voucher and the response stored with it."""

    def lookup_many(self, channel_ids: Sequence[int]) -> dict[int, ChannelRecord]:
        """``lookup`` for several channels at once; absent channels are left out."""
        found = {}
        for channel_id in channel_ids:
            record = self.lookup(channel_id)
            if record is not None:
                found[channel_id] = record
        return found

    @abstractmethod
    def channels(self) -> list[ChannelRecord]:
        """Every channel with an accepted voucher."""

    def unredeemed(self) -> list[ChannelRecord]:
        """Channels whose highest accepted voucher is above what is confirmed redeemed."""
        return [record for record in self.channels() if record.unredeemed > 0]

    @abstractmethod
    def record_redeemed(self, channel_id: int, paid: int) -> None:
        """Raise the channel's confirmed on-chain ``paid`` (never lowers it)."""

    @abstractmethod
    def create_settlement(self, nonce: int, tx_hash: str, raw_tx: bytes,
                          items: Sequence[SettlementItem], route: int = 0) -> Settlement:
        """Store a signed transaction before it is broadcast (state ``SIGNED``)."""

    @abstractmethod
    def update_settlement(self, settlement_id: int, state: SettlementState, *,
                          tx_hash: str | None = None, raw_tx: bytes | None = None,
                          block_number: int | None = None, gas_used: int | None = None,
                          error: str | None = None,
                          outcomes: dict[int, str] | None = None) -> Settlement:
        """Move a settlement to ``state``; ``outcomes`` maps channel id → paid/skipped.
        A new ``tx_hash`` (a fee-bumped replacement) keeps the old one in
        ``previous_hashes``, since either may be the one that gets mined."""

    @abstractmethod
    def settlements(self, open_only: bool = False) -> list[Settlement]:
        """Settlements, oldest first."""

    @abstractmethod
    def totals(self) -> dict[str, int]:
        """Counters for status and metrics: purchases, channels, accepted (units charged),
        redeemed, unredeemed, settlements_open."""

    @abstractmethod
    def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the named lease for ``seconds``; False while another holder has
        an unexpired one. The settlement key's nonce is guarded by the lease
        ``settlement``: one signer at a time across every process on this ledger."""

    @abstractmethod
    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up (only if ``holder`` has it)."""

    @abstractmethod
    def close(self) -> None:
        """Finish pending writes and release the store."""

