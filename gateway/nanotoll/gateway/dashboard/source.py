"""The dashboard's JSON document: this process's figures, the shared ledger's, health.

Every gateway process on one ledger serves its own page: the ``ledger`` part reads the
ledger they share (the same in each), the ``process`` part is this process's own
requests. Each part is computed on request; a part that fails (the ledger away) is
replaced by its error, and the health says which dependency it was.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ...chain.cache import ChannelCache
from ...figures import latency_summary, rate_series, revenue_by_product
from ...ledger import Ledger
from ...protocol.messages import Catalog
from ..metrics import Metrics

WINDOW = 120  # seconds of per-second history the page plots
MAX_CHANNELS = 200  # channel rows sent (largest unredeemed first)
MAX_SETTLEMENTS = 50  # settlement rows sent (newest first)
# The ledger's part is read at most this often, however many pages poll: its totals read
# every voucher ever accepted.
LEDGER_EVERY = 2.0


@dataclass(frozen=True, slots=True)
class Health:
    """One dependency's state: ``ok`` and a word on it."""

    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


def probe(check: Callable[[], str]) -> Health:
    """Run ``check`` (it returns a detail or raises): its health."""
    try:
        return Health(True, check())
    except Exception as exc:  # the dependency's failure is what is being reported
        return Health(False, f"{type(exc).__name__}: {exc}")


class DashboardSource:
    def __init__(self, metrics: Metrics, ledger: Ledger, channels: ChannelCache,
                 catalog: Callable[[], Catalog],
                 products: Callable[[], list[dict[str, Any]]], process: Mapping[str, Any],
                 broker: Callable[[], str], chain: Callable[[], str] | None,
                 clock: Callable[[], float] = time.time) -> None:
        """``process`` names this process (provider, client id); ``broker`` and ``chain``
        return a detail on their dependency or raise when it is down."""
        self._metrics = metrics
        self._ledger = ledger
        self._channels = channels
        self._catalog = catalog
        self._products = products
        self._process = dict(process)
        self._broker = broker
        self._chain = chain
        self._clock = clock
        self._lock = threading.Lock()
        self._ledger_read: tuple[float, dict[str, Any], Health] | None = None

    def _ledger_part(self, now: float) -> tuple[dict[str, Any], Health]:
        with self._lock:
            if self._ledger_read is not None and now - self._ledger_read[0] < LEDGER_EVERY:
                return self._ledger_read[1], self._ledger_read[2]
            started = time.perf_counter()
            try:
                part = self.ledger(now)
                health = Health(True, f"read in {(time.perf_counter() - started) * 1000:.0f} ms")
            except Exception as exc:  # the ledger away: say so, keep the page up
                health = Health(False, f"{type(exc).__name__}: {exc}")
                part = {"error": health.detail}
            self._ledger_read = (now, part, health)
            return part, health

    def document(self) -> dict[str, Any]:
        now = self._clock()
        ledger, ledger_health = self._ledger_part(now)
        health = {"broker": probe(self._broker).as_dict(),
                  "chain": (probe(self._chain) if self._chain is not None
                            else Health(False, "no chain configured")).as_dict(),
                  "ledger": ledger_health.as_dict()}
        return {"now": round(now, 3), "process": self.process(now), "ledger": ledger,
                "health": health}

    def process(self, now: float) -> dict[str, Any]:
        """This process's figures: totals since start, and the last WINDOW seconds."""
        end = int(now)
        start = end - WINDOW + 1
        recent = self._metrics.recent(since=start)
        sales = [r for r in recent if r.increment]
        catalog = self._catalog()
        revenue, count = revenue_by_product((r.product, r.increment) for r in sales)
        counters = self._metrics.counters()
        return {
            **self._process,
            "uptime": round(now - counters["started"], 1),
            "catalog": {"seq": catalog.seq, "valid_until": catalog.valid_until,
                        "products": {p.name: p.unit_price for p in catalog.products}},
            "products": self._products(),
            "totals": counters,
            "window": {"start": start, "seconds": WINDOW,
                       "purchases_per_s": rate_series((r.at for r in sales), start, end),
                       "errors_per_s": rate_series(
                           (r.at for r in recent if r.code != "OK"), start, end),
                       "latency_ms": latency_summary([r.latency_ms for r in recent]),
                       "latency_by_second": self._latency_by_second(recent, start, end),
                       "revenue_by_product": revenue, "purchases_by_product": count,
                       "errors_by_code": self._errors(recent)},
        }

    @staticmethod
    def _errors(recent: list[Any]) -> dict[str, int]:
        errors: dict[str, int] = {}
        for r in recent:
            if r.code != "OK":
                errors[r.code] = errors.get(r.code, 0) + 1
        return errors

    @staticmethod
    def _latency_by_second(recent: list[Any], start: int, end: int
                           ) -> dict[str, list[float | None]]:
        """p50/p90/p99 of each second's requests (None for a second without any)."""
        by_second: dict[int, list[float]] = {}
        for r in recent:
            by_second.setdefault(int(r.at), []).append(r.latency_ms)
        series: dict[str, list[float | None]] = {"p50": [], "p90": [], "p99": []}
        for second in range(start, end + 1):
            summary = latency_summary(by_second.get(second, []))
            for name in series:
                series[name].append(summary[name])
        return series

    def ledger(self, now: float) -> dict[str, Any]:
        """The shared ledger: totals, channels with unredeemed amounts (with expiry when
        this process has the channel cached), settlements."""
        totals = self._ledger.totals()
        records = sorted(self._ledger.unredeemed(), key=lambda r: -r.unredeemed)
        channels = []
        for record in records[:MAX_CHANNELS]:
            state = self._channels.channel(record.channel_id) \
                if record.channel_id in set(self._channels.ids()) else None
            channels.append({
                "channel": record.channel_id, "accepted": record.cumulative,
                "redeemed": record.redeemed, "unredeemed": record.unredeemed,
                "waiting_s": round(max(0.0, now - record.first_unredeemed_ms / 1000), 1),
                "expiry": state.expiry if state is not None else None,
                "deposit": state.deposit if state is not None else None})
        settlements = sorted(self._ledger.settlements(), key=lambda s: -s.settlement_id)
        return {
            "totals": totals,
            "channels_unredeemed": len(records),
            "channels": channels,
            "settlements": [
                {"id": s.settlement_id, "state": s.state.value, "tx": s.tx_hash,
                 "nonce": s.nonce, "items": len(s.items), "amount": s.amount,
                 "gas_used": s.gas_used, "block": s.block_number,
                 "updated": s.updated_ms / 1000, "error": s.error}
                for s in settlements[:MAX_SETTLEMENTS]],
        }
