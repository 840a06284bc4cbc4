"""The figures an operator reads, computed one way for both places that show them: the
fleet report (after a run, from the devices' records) and the gateway's live dashboard
(while it runs, from its recent requests). Plain functions over plain values, so each
caller brings its own samples."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

PERCENTILES = ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"))


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (the value below which ``fraction`` of them lie)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency_summary(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p90, p99 and max; None each without values."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    summary: dict[str, float | None] = {name: round(percentile(values, fraction), 3)
                                        for fraction, name in PERCENTILES}
    summary["max"] = round(max(values), 3)
    return summary


def per_second(times: Iterable[float]) -> dict[int, int]:
    """How many events fell in each whole second."""
    counts: dict[int, int] = defaultdict(int)
    for t in times:
        counts[int(t)] += 1
    return dict(counts)


def rate_series(times: Iterable[float], start: int, end: int) -> list[int]:
    """Events per second for each second in start..end (zeros included)."""
    counts = per_second(times)
    return [counts.get(second, 0) for second in range(start, end + 1)]


def percentiles_over_time(samples: Iterable[tuple[float, float]], bucket: float
                          ) -> tuple[list[float], dict[str, list[float]]]:
    """(bucket middles, {p50: [...], p90: [...], p99: [...]}) of (time, latency) samples
    grouped by ``bucket`` seconds of time."""
    grouped: dict[int, list[float]] = defaultdict(list)
    for t, latency in samples:
        grouped[int(t // bucket)].append(latency)
    keys = sorted(grouped)
    middles = [(key + 0.5) * bucket for key in keys]
    return middles, {name: [percentile(grouped[key], fraction) for key in keys]
                     for fraction, name in PERCENTILES}


def revenue_by_product(sales: Iterable[tuple[str, int]]) -> tuple[dict[str, int], dict[str, int]]:
    """(units earned, purchases) by product, from (product, price paid) of each sale."""
    revenue: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    for product, paid in sales:
        revenue[product] += paid
        count[product] += 1
    return dict(revenue), dict(count)
