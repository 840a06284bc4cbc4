"""The last accepted record of each channel, kept in memory for rules 6–8.

A record cached here can only be behind the ledger (amounts only grow), never ahead, and
the ledger's compare-and-set is checked against the ledger itself: a stale entry costs a
retry, never a double charge. Bounded, least recently stored first out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

from ..ledger import ChannelRecord

RECORD_CACHE = 100_000  # channels whose last accepted voucher is kept in memory


class RecordCache:
    def __init__(self, capacity: int = RECORD_CACHE) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._records: OrderedDict[int, ChannelRecord] = OrderedDict()

    def get(self, channel_id: int) -> ChannelRecord | None:
        with self._lock:
            return self._records.get(channel_id)

    def missing(self, channel_ids: Iterable[int]) -> list[int]:
        """Those of ``channel_ids`` with no record here."""
        with self._lock:
            return [channel_id for channel_id in channel_ids if channel_id not in self._records]

    def remember(self, records: Iterable[ChannelRecord]) -> None:
        """Keep each record unless a later one of its channel is already kept."""
        with self._lock:
            for record in records:
                cached = self._records.get(record.channel_id)
                if cached is None or cached.cumulative <= record.cumulative:
                    self._records[record.channel_id] = record
                self._records.move_to_end(record.channel_id)
            while len(self._records) > self._capacity:
                self._records.popitem(last=False)

    def forget(self, channel_ids: Iterable[int]) -> None:
        """Drop the channels' records: the next request reads them from the ledger."""
        with self._lock:
            for channel_id in channel_ids:
                self._records.pop(channel_id, None)
