"""Follow the escrow's events and keep the channel cache fresh from them.

Decoding. :class:`EscrowEventDecoder` turns the escrow's logs into the channel changes the
cache follows, and keeps only events that change what it holds: ``ChannelOpened`` (an id
that was unknown now exists), ``ChannelToppedUp`` (the new deposit), ``ExpiryExtended``
(the new expiry), ``Redeemed`` (one change per packed 20-byte item: the channel's new paid
total) and ``ChannelReclaimed`` (closed). ``VoucherSkipped`` and ``RouteCreated`` change no
channel. Topics and data types come from the ABI shipped in the package, so a contract
whose events moved fails loudly here (and in ``test_abi_drift``) instead of decoding
garbage.

Following. :class:`EventFollower` polls the chain head and reads the escrow's logs
(``eth_getLogs``, at most ``max_range`` blocks a call) from the block the gateway started
at, up to ``confirmations`` blocks below the head. The ledger has no place for a cursor,
so a restart starts at the head again: nothing is lost, because the cache starts empty
and reads every channel from the contract on first use. Each event touching a cached
channel is applied to it without an RPC, because each carries the new value in full: a
top-up the new deposit, an extension the new expiry, a redeem the new paid total, a
reclaim ``closed`` (the gateway's rules then refuse the channel on its next request).
Deposit, expiry and paid only grow, so a change is applied as a maximum and an event older
than the cached state cannot lower it. ``ChannelOpened`` drops a remembered miss of its id.

Reorgs: the hash of the last block of every range read is remembered (the last
:data:`REORG_WINDOW` ranges). When the newest one is no longer on the chain, the
follower walks back to the newest that is, re-reads from the contract every cached
channel that an abandoned range touched, and reads the logs again from there. Re-reading
state is reorg-safe; undoing applied deltas would not be. A fork older than the window
(or a node that came back with another chain) re-reads every cached channel and starts
again at the head.

Node errors: the poll is retried with exponential backoff (``poll_interval`` doubling up
to ``max_backoff``), with one warning line when an outage starts and one info line when
it ends; the thread never dies of it. Meanwhile the cache's own bounded-age re-reads
stay the safety net, as they are for anything else the follower could miss.

A thread, not asyncio: the gateway's parts are threads around blocking clients (web3's
HTTP provider, paho, the ledgers), and the follower spends its life waiting on the node
or on its stop event, which also makes ``stop`` prompt.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak

from ..logevent import event
from .abi import shipped_abi
from .cache import ChannelCache
from .channel import ChannelState
from .client import decode_redeemed_items
from .errors import ChainError

REORG_WINDOW = 256  # ranges whose last block hash is remembered to find a fork point


class EventKind(enum.Enum):
    OPENED = "ChannelOpened"
    TOPPED_UP = "ChannelToppedUp"
    EXTENDED = "ExpiryExtended"
    REDEEMED = "Redeemed"
    RECLAIMED = "ChannelReclaimed"


@dataclass(frozen=True, slots=True)
class ChannelEvent:
    """One change to one channel, as a log of block ``block_number`` says."""

    kind: EventKind
    channel_id: int
    block_number: int
    block_hash: str  # 0x-prefixed
    log_index: int
    deposit: int | None = None  # TOPPED_UP: the new total deposit
    expiry: int | None = None  # EXTENDED: the new expiry (unix seconds)
    paid: int | None = None  # REDEEMED: the channel's new paid total


class LogFormatError(ChainError):
    """A log of the escrow's address that does not decode as its ABI says."""


@dataclass(frozen=True, slots=True)
class _EventAbi:
    kind: EventKind
    topic: bytes
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]


def _raw(value: Any) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith(("0x", "0X")) else value)
    return bytes(value)


class EscrowEventDecoder:
    """Decodes the escrow's logs; built once from the ABI (the shipped one by default)."""

    def __init__(self, abi: Sequence[Mapping[str, Any]] | None = None) -> None:
        items = list(abi if abi is not None else shipped_abi("NanotollEscrow"))
        self._by_topic: dict[bytes, _EventAbi] = {}
        for kind in EventKind:
            found = [i for i in items if i.get("type") == "event" and i.get("name") == kind.value]
            if len(found) != 1:
                raise LogFormatError(f"the escrow ABI has {len(found)} events {kind.value}")
            inputs = found[0]["inputs"]
            signature = f"{kind.value}({','.join(str(i['type']) for i in inputs)})"
            data = [i for i in inputs if not i["indexed"]]
            spec = _EventAbi(kind, keccak(text=signature), tuple(str(i["name"]) for i in data),
                             tuple(str(i["type"]) for i in data))
            self._by_topic[spec.topic] = spec

    @property
    def topics(self) -> list[str]:
        """The topic0 of every followed event, for an ``eth_getLogs`` filter."""
        return ["0x" + topic.hex() for topic in self._by_topic]

    def decode(self, log: Mapping[str, Any]) -> list[ChannelEvent]:
        """The channel changes one log carries; [] for events that change no channel."""
        topics = [_raw(t) for t in log.get("topics", ())]
        spec = self._by_topic.get(topics[0]) if topics else None
        if spec is None:
            return []
        try:
            values = dict(zip(spec.data_names, abi_decode(spec.data_types, _raw(log["data"])),
                              strict=True))
            block, block_hash = int(log["blockNumber"]), "0x" + _raw(log["blockHash"]).hex()
            index = int(log["logIndex"])
            if spec.kind is EventKind.REDEEMED:
                return [ChannelEvent(EventKind.REDEEMED, item.channel_id, block, block_hash,
                                     index, paid=item.cumulative)
                        for item in decode_redeemed_items(bytes(values["items"]))]
            channel_id = int.from_bytes(topics[1], "big")
        # OverflowError: eth_abi's answer to a byte string (Redeemed's items) whose length
        # or offset does not fit an index.
        except (DecodingError, KeyError, IndexError, TypeError, ValueError, OverflowError
                ) as exc:
            raise LogFormatError(f"{spec.kind.value} log does not decode: {exc}") from exc
        change = ChannelEvent(spec.kind, channel_id, block, block_hash, index)
        if spec.kind is EventKind.TOPPED_UP:
            change = replace(change, deposit=int(values["deposit"]))
        elif spec.kind is EventKind.EXTENDED:
            change = replace(change, expiry=int(values["expiry"]))
        return [change]


@dataclass(frozen=True, slots=True)
class BlockRef:
    number: int
    hash: str  # 0x-prefixed


class LogSource(Protocol):
    """What the follower needs from the node (``node.EscrowChain`` implements it).
    Node errors raise; only a block that does not exist is ``None``."""

    def head(self) -> BlockRef: ...

    def canonical_hash(self, number: int) -> str | None: ...

    def channel_events(self, first: int, last: int) -> list[ChannelEvent]: ...


class ChainMoved(ChainError):
    """The chain changed under a read in a way the follower cannot resolve yet; the
    poll is retried (a block that should exist is gone)."""


class FollowerSettings(Protocol):
    """How the follower polls (the gateway's ``[events]`` config section)."""

    @property
    def poll_interval(self) -> float: ...  # seconds between polls of the chain head

    @property
    def confirmations(self) -> int: ...  # blocks below the head before a log is applied

    @property
    def max_range(self) -> int: ...  # blocks per eth_getLogs call

    @property
    def max_backoff(self) -> float: ...  # seconds between retries at most while the node fails


@dataclass(frozen=True, slots=True)
class _Range:
    last: int  # the range's last block
    hash: str  # that block's hash when the range was read
    channel_ids: frozenset[int]  # channels the range's events touched


@dataclass(slots=True)
class FollowerStats:
    cursor: int | None = None  # last block whose events are applied
    head: int | None = None  # chain head at the last poll
    events: int = 0  # channel events read
    applied: int = 0  # events applied to a cached channel
    reorgs: int = 0  # forks inside the window (abandoned ranges re-read)
    resyncs: int = 0  # restarts at the head after a deeper fork or a changed chain
    failures: int = 0  # polls that failed (node errors)


def apply_event(state: ChannelState, change: ChannelEvent) -> ChannelState:
    """``state`` after ``change``; values only grow, so older events never lower them."""
    if change.kind is EventKind.TOPPED_UP and change.deposit is not None:
        return dataclasses.replace(state, deposit=max(state.deposit, change.deposit))
    if change.kind is EventKind.EXTENDED and change.expiry is not None:
        return dataclasses.replace(state, expiry=max(state.expiry, change.expiry))
    if change.kind is EventKind.REDEEMED and change.paid is not None:
        return dataclasses.replace(state, paid=max(state.paid, change.paid))
    if change.kind is EventKind.RECLAIMED:
        return dataclasses.replace(state, closed=True)
    return state


class EventFollower:
    def __init__(self, source: LogSource, cache: ChannelCache, config: FollowerSettings,
                 logger: logging.Logger | None = None) -> None:
        self._source = source
        self._cache = cache
        self._config = config
        self._log = logger or logging.getLogger("nanotoll.chain.eventlog")
        self._ranges: deque[_Range] = deque(maxlen=REORG_WINDOW)
        self._seen_head: BlockRef | None = None  # the head we last caught up with
        self._stats = FollowerStats()
        self._stats_lock = threading.Lock()  # stats are read by the metrics thread
        self._failures = 0  # consecutive failed polls
        self._down_since = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- control --

    def start(self) -> None:
        """Take the cursor at the current head now (so it is the block the gateway started
        at), then follow in a daemon thread. A node that is down is retried there."""
        if self._thread is not None:
            raise RuntimeError("the event follower is already running")
        self._attempt()
        self._thread = threading.Thread(target=self._run, name="chain-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> FollowerStats:
        with self._stats_lock:
            return dataclasses.replace(self._stats)

    def _run(self) -> None:
        while not self._stop.is_set():
            more = self._attempt()
            if more:
                continue
            if self._failures:
                exponent = min(self._failures, 32)
                delay = min(self._config.max_backoff, self._config.poll_interval * 2 ** exponent)
            else:
                delay = self._config.poll_interval
            self._stop.wait(delay)

    def _attempt(self) -> bool:
        """One poll with its error handling; True when more blocks wait right now."""
        try:
            more = self.step()
        except Exception as exc:  # node errors above all; the thread must outlive them
            self._failed(exc)
            return False
        if self._failures:
            event(self._log, "chain_events_resumed", failures=self._failures,
                  down_seconds=round(time.monotonic() - self._down_since, 1),
                  cursor=self.stats().cursor)
            self._failures = 0
        return more

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        with self._stats_lock:
            self._stats.failures += 1
        if self._failures == 1:  # one line an outage, however long it lasts
            self._down_since = time.monotonic()
            config = self._config
            event(self._log, "chain_events_failed", logging.WARNING,
                  error=f"{type(exc).__name__}: {str(exc)[:300]}",
                  retry=f"backoff {config.poll_interval:g} s doubling to {config.max_backoff:g} s")

    # ------------------------------------------------------------------- poll --

    def step(self) -> bool:
        """One poll: check for a fork, then apply the next range of logs. True when more
        blocks are ready (the caller polls again without waiting). Raises node errors."""
        head = self._source.head()
        with self._stats_lock:
            self._stats.head = head.number
        if self._ranges and head == self._seen_head:
            return False  # the chain did not move since we caught up with it
        safe = head.number - self._config.confirmations
        if not self._ranges:
            self._resync(safe, first=True)
            self._seen_head = head
            return False
        newest = self._ranges[-1]
        if self._source.canonical_hash(newest.last) != newest.hash:
            self._rewind(safe)
            return True
        if safe <= newest.last:
            self._seen_head = head
            return False
        last = min(safe, newest.last + self._config.max_range)
        before = self._source.canonical_hash(last)
        if before is None:
            raise ChainMoved(f"block {last} is below the head but the node does not have it")
        changes = self._source.channel_events(newest.last + 1, last)
        after = self._source.canonical_hash(last)
        if before != after or any(c.block_number == last and c.block_hash != after
                                  for c in changes):
            return False  # the chain moved under the read: read the range again next poll
        touched = self._apply(changes)
        self._ranges.append(_Range(last, after, touched))
        with self._stats_lock:
            self._stats.cursor = last
        if last < safe:
            return True
        self._seen_head = head
        return False

    def _apply(self, changes: list[ChannelEvent]) -> frozenset[int]:
        touched: set[int] = set()
        applied = 0
        for change in changes:
            touched.add(change.channel_id)
            if change.kind is EventKind.OPENED:
                self._cache.forget_miss(change.channel_id)  # a remembered miss is wrong now
                continue
            if not self._cache.amend(change.channel_id, partial(apply_event, change=change)):
                continue
            applied += 1
            if change.kind is EventKind.RECLAIMED:
                event(self._log, "channel_reclaimed", channel=change.channel_id,
                      block=change.block_number)
        with self._stats_lock:
            self._stats.events += len(changes)
            self._stats.applied += applied
        if changes:
            event(self._log, "chain_events", logging.DEBUG, events=len(changes),
                  applied=applied, first=changes[0].block_number,
                  last=changes[-1].block_number)
        return frozenset(touched)

    def _rewind(self, safe: int) -> None:
        """The newest range's block left the chain: find the fork, re-read what the
        abandoned ranges touched, and continue from the fork."""
        self._seen_head = None
        abandoned: set[int] = set()
        keep = 0
        for index in range(len(self._ranges) - 1, -1, -1):
            kept = self._ranges[index]
            if self._source.canonical_hash(kept.last) == kept.hash:
                keep = index + 1
                break
            abandoned |= kept.channel_ids
        if keep == 0:
            self._resync(safe, first=False)
            return
        # Read first, forget the ranges after: a node error in between leaves the follower
        # where it was, and the next poll finds the same fork again.
        cached = set(self._cache.ids())
        refreshed = sorted(abandoned & cached)
        for channel_id in refreshed:
            if self._stop.is_set():
                return  # nothing changed yet: a stop does not wait for a thousand reads
            self._cache.refresh(channel_id)
        dropped_from = self._ranges[-1].last
        while len(self._ranges) > keep:
            self._ranges.pop()
        fork = self._ranges[-1].last
        with self._stats_lock:
            self._stats.reorgs += 1
            self._stats.cursor = fork
        event(self._log, "chain_reorg", logging.WARNING, fork_block=fork,
              abandoned_to=dropped_from, refreshed=len(refreshed))

    def _resync(self, safe: int, first: bool) -> None:
        """Start at ``safe`` with every cached channel read again (none on a first start)."""
        base = max(0, safe)
        base_hash = self._source.canonical_hash(base)
        if base_hash is None:
            raise ChainMoved(f"block {base} is below the head but the node does not have it")
        channel_ids = self._cache.ids()
        for channel_id in channel_ids:
            if self._stop.is_set():
                return
            self._cache.refresh(channel_id)
        self._ranges.clear()
        self._ranges.append(_Range(base, base_hash, frozenset()))
        with self._stats_lock:
            self._stats.cursor = base
            if not first:
                self._stats.resyncs += 1
        if first:
            event(self._log, "chain_events_following", block=base,
                  confirmations=self._config.confirmations)
        else:
            event(self._log, "chain_events_resync", logging.WARNING, block=base,
                  refreshed=len(channel_ids),
                  reason="fork deeper than the remembered ranges, or another chain")
