"""The figures the fleet report and the dashboard share (nanotoll.figures)."""

from __future__ import annotations

from nanotoll.figures import (
    latency_summary,
    per_second,
    percentile,
    percentiles_over_time,
    rate_series,
    revenue_by_product,
)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == 51
    assert percentile(values, 0.99) == 100
    assert percentile([7.0], 0.9) == 7
    assert latency_summary(values) == {"p50": 51, "p90": 91, "p99": 100, "max": 100}
    assert latency_summary([]) == {"p50": None, "p90": None, "p99": None, "max": None}


def test_rates_per_second_with_the_empty_seconds() -> None:
    times = [10.1, 10.9, 12.0, 12.5, 12.99]
    assert per_second(times) == {10: 2, 12: 3}
    assert rate_series(times, 9, 13) == [0, 2, 0, 3, 0]


def test_percentiles_over_time_by_bucket() -> None:
    samples = [(0.5, 1.0), (1.5, 3.0), (2.5, 10.0), (3.0, 20.0)]
    middles, curves = percentiles_over_time(samples, 2.0)
    assert middles == [1.0, 3.0]
    assert curves["p50"] == [3.0, 20.0] and curves["p99"] == [3.0, 20.0]


def test_revenue_and_sales_by_product() -> None:
    revenue, count = revenue_by_product([("weather", 1500), ("nav", 4000), ("weather", 1500)])
    assert revenue == {"weather": 3000, "nav": 4000}
    assert count == {"weather": 2, "nav": 1}
