"""Reading channels without an RPC per request: the channel cache.

:class:`ChannelReader` is what the cache needs from the chain: one channel's state, or
``None`` when the channel does not exist (``node.EscrowChain`` implements it).
:class:`ChannelCache` wraps any reader with a bounded-age cache so that the hot path costs
no RPC: an entry is refreshed when it is older than ``max_age``, a miss is remembered for
``miss_age`` (so unknown ids cannot flood the node), and a caller that sees a rule fail on
cached state (a top-up may have raised the deposit) asks for a fresh read with
``refresh``. The event follower (``eventlog``) feeds ``amend``, ``refresh`` and
``forget_miss``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Protocol

from .channel import ChannelState
from .errors import ChannelUnavailable

REFRESH_SHARE = 0.8  # the background refresh re-reads every channel within this x max_age
OUTAGE_BACKOFF_MIN = 1.0  # seconds reads fail fast after a failed read; doubles per failure
OUTAGE_BACKOFF_MAX = 30.0


class ChannelReader(Protocol):
    def channel(self, channel_id: int) -> ChannelState | None: ...


class ChannelCache:
    """A thread-safe, age-bounded cache in front of a :class:`ChannelReader`.

    A known channel is served as cached; from half ``max_age`` on, one background thread,
    paced, reads it again (on the hot path only past twice ``max_age``), so that a
    thousand channels cached at once do not hold every request behind a burst of RPCs
    each ``max_age``. Serving it a little longer is safe for the
    rules: deposit and expiry only grow, and a rule that fails on the cached state asks
    for a fresh read.
    """

    def __init__(self, reader: ChannelReader, max_age: float = 30.0, miss_age: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._reader = reader
        self._max_age = max_age
        self._miss_age = miss_age
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[float, ChannelState | None]] = {}
        self._stale: dict[int, None] = {}  # ids waiting for the background refresh
        self._wake = threading.Event()
        self._refresher: threading.Thread | None = None
        self._down_until = 0.0  # reads fail fast before this clock reading
        self._backoff = 0.0

    @property
    def max_age(self) -> float:
        return self._max_age

    def channel(self, channel_id: int) -> ChannelState | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(channel_id)
        if entry is not None:
            fetched, state = entry
            age = self._max_age if state is not None else self._miss_age
            if now - fetched < age / 2 or (state is None and now - fetched < age):
                return state
            if state is not None and now - fetched < 2 * age:
                self._refresh_later(channel_id)
                return state
            if state is not None:
                # Too old to serve without trying a read; if the node is away, serve it
                # anyway: deposit and expiry only grow, and a channel can only be
                # reclaimed after its expiry, which the rules keep a margin from.
                try:
                    return self.refresh(channel_id)
                except ChannelUnavailable:
                    return state
        return self.refresh(channel_id)

    def _refresh_later(self, channel_id: int) -> None:
        with self._lock:
            self._stale[channel_id] = None
            if self._refresher is None:
                self._refresher = threading.Thread(target=self._refresh_loop, daemon=True,
                                                   name="channel-refresh")
                self._refresher.start()
        self._wake.set()

    def _refresh_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while True:
                with self._lock:
                    if not self._stale:
                        break
                    channel_id = next(iter(self._stale))
                    del self._stale[channel_id]
                # The node may be away: the hot path reads the channel itself when due.
                started = time.monotonic()
                with contextlib.suppress(Exception):
                    self.refresh(channel_id)
                # Paced: every cached channel once per REFRESH_SHARE of max_age, evenly,
                # so that a thousand channels that came due together are re-read over
                # many seconds instead of in one burst that takes the GIL from the thread
                # that checks requests; at full speed only when the oldest one waiting
                # nears the age at which the hot path would read it itself.
                with self._lock:
                    slot = REFRESH_SHARE * self._max_age / max(1, len(self._entries))
                rest = slot - (time.monotonic() - started)
                if rest > 0 and not self._behind():
                    time.sleep(min(1.0, rest))

    def _behind(self) -> bool:
        with self._lock:
            if not self._stale:
                return False
            entry = self._entries.get(next(iter(self._stale)))
        return entry is not None and self._clock() - entry[0] > 1.5 * self._max_age

    def refresh(self, channel_id: int) -> ChannelState | None:
        """Read the channel now; :class:`ChannelUnavailable` when the chain can't be read
        (or failed to be read less than a back-off ago)."""
        with self._lock:
            wait = self._down_until - self._clock()
        if wait > 0:
            raise ChannelUnavailable(f"chain node unavailable (next read in {wait:.1f} s)")
        try:
            state = self._reader.channel(channel_id)
        except Exception as exc:
            with self._lock:
                self._backoff = min(OUTAGE_BACKOFF_MAX,
                                    max(OUTAGE_BACKOFF_MIN, 2 * self._backoff))
                self._down_until = self._clock() + self._backoff
            raise ChannelUnavailable(f"chain node unavailable: {exc}") from exc
        with self._lock:
            self._backoff = 0.0
        self.update(channel_id, state)
        return state

    def update(self, channel_id: int, state: ChannelState | None) -> None:
        with self._lock:
            self._entries[channel_id] = (self._clock(), state)

    def forget(self, channel_id: int) -> None:
        with self._lock:
            self._entries.pop(channel_id, None)

    def amend(self, channel_id: int, change: Callable[[ChannelState], ChannelState]) -> bool:
        """Apply ``change`` to a cached channel atomically (the event follower's path); False
        when no state is cached. The entry keeps its age, so the background re-read stays
        the safety net for anything the change does not cover."""
        with self._lock:
            entry = self._entries.get(channel_id)
            if entry is None or entry[1] is None:
                return False
            self._entries[channel_id] = (entry[0], change(entry[1]))
            return True

    def forget_miss(self, channel_id: int) -> None:
        """Drop a remembered miss (the channel was just opened); a cached state stays."""
        with self._lock:
            entry = self._entries.get(channel_id)
            if entry is not None and entry[1] is None:
                del self._entries[channel_id]

    def ids(self) -> list[int]:
        """Ids of the channels cached with a state (remembered misses left out)."""
        with self._lock:
            return [cid for cid, (_, state) in self._entries.items() if state is not None]


class MemoryChannels:
    """Channels held in memory: a ChannelReader for unit tests of the rules only."""

    def __init__(self, *states: ChannelState) -> None:
        self.states = {state.channel_id: state for state in states}

    def channel(self, channel_id: int) -> ChannelState | None:
        return self.states.get(channel_id)
