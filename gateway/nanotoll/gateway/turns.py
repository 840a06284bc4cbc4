"""Per-channel turn-taking: one request of a channel between the rules and its durable
write at a time.

A device sends one request at a time, and a retry of the same bytes must see the first
one's outcome (a replay), not race it. So while a channel is taken, later requests of it
wait here, and whoever releases the channel gets them back to run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class ChannelTurns(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken: set[int] = set()
        self._waiting: dict[int, list[T]] = {}

    def take(self, channel_id: int, job: T) -> bool:
        """True when ``job`` has the channel now; False when it was queued behind the
        job that has it."""
        with self._lock:
            if channel_id in self._taken:
                self._waiting.setdefault(channel_id, []).append(job)
                return False
            self._taken.add(channel_id)
            return True

    def release(self, channel_ids: Iterable[int]) -> list[T]:
        """Free the channels; returns the jobs that waited for them, to run again."""
        again: list[T] = []
        with self._lock:
            for channel_id in channel_ids:
                self._taken.discard(channel_id)
                again.extend(self._waiting.pop(channel_id, ()))
        return again
