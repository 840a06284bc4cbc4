"""``nanotoll bench fleet``'s gateway CPU figures from two runs' summaries: per purchase
while the schedule ran (the warm-up's channel reads left out), at a steady rate beside
saturation, and the whole-run figures apart. The fleet runs themselves are timed work and
are not run here."""

from __future__ import annotations

from typing import Any

import pytest
from nanotoll.bench.fleet import gateway_cpu_figures, gateway_cpu_ms_steady, saturated


def _summary(per_s: float, steady_cores: float | None, seconds: float, ok: int,
             warmup_ok: int = 0, offered: float | None = None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "purchases": {"per_s": per_s, "ok": ok, "warmup_ok": warmup_ok,
                      "target_per_s": per_s if offered is None else offered},
        "cpu": {"gateways": {"seconds": seconds, "cores": 0.0}},
    }
    if steady_cores is not None:
        summary["cpu_steady_cores"] = {"gateways": steady_cores, "broker": 0.1}
    return summary


def test_the_steady_window_gives_the_figures_and_their_ratio() -> None:
    # 0.3 cores at 200/s is 1.5 ms a purchase; 0.8 cores at 800/s is 1 ms.
    at_rate = _summary(200.0, 0.3, seconds=30.0, ok=12_000, warmup_ok=1_000)
    saturated = _summary(800.0, 0.8, seconds=26.0, ok=24_000, warmup_ok=2_000,
                         offered=1_000.0)
    figures = gateway_cpu_figures(at_rate, saturated)
    assert figures["gateway_cpu_ms_per_purchase"] == pytest.approx(1.5)
    assert figures["gateway_cpu_saturation_reached"] is True
    assert figures["gateway_cpu_ms_per_purchase_saturation"] == pytest.approx(1.0)
    assert figures["gateway_cpu_ratio_200_to_saturation"] == pytest.approx(1.5)
    # The whole run counts the warm-up's purchases and its CPU as well.
    assert figures["gateway_cpu_ms_per_purchase_whole_run"] == pytest.approx(30_000 / 13_000,
                                                                              abs=1e-3)
    assert figures["gateway_cpu_ms_per_purchase_saturation_whole_run"] == pytest.approx(1.0)


def test_a_run_without_steady_samples_or_purchases_has_no_steady_figure() -> None:
    assert gateway_cpu_ms_steady(_summary(200.0, None, seconds=1.0, ok=10)) is None
    assert gateway_cpu_ms_steady(_summary(0.0, 0.2, seconds=1.0, ok=0)) is None
    figures = gateway_cpu_figures(_summary(200.0, 0.3, seconds=1.0, ok=10),
                                  _summary(0.0, 0.2, seconds=1.0, ok=0, offered=800.0))
    assert figures["gateway_cpu_ms_per_purchase"] == pytest.approx(1.5)
    assert figures["gateway_cpu_ms_per_purchase_saturation"] is None
    assert figures["gateway_cpu_ratio_200_to_saturation"] is None


def test_a_run_that_kept_up_with_its_offer_gives_no_figure_at_saturation() -> None:
    # 400/s offered and 396/s done: the machine carried it, so that run's CPU a purchase
    # is what 400/s costs, not what the most it carries costs
    kept_up = _summary(396.0, 0.25, seconds=30.0, ok=11_880, offered=400.0)
    assert saturated(kept_up) is False
    assert saturated(_summary(678.1, 0.16, seconds=30.0, ok=20_000, offered=800.0)) is True
    figures = gateway_cpu_figures(_summary(200.0, 0.13, seconds=60.0, ok=12_000), kept_up)
    assert figures["gateway_cpu_saturation_reached"] is False
    assert figures["gateway_cpu_ms_per_purchase_saturation"] is None
    assert figures["gateway_cpu_ratio_200_to_saturation"] is None
    # the whole-run figure stays: it says what that run cost, saturated or not
    assert figures["gateway_cpu_ms_per_purchase_saturation_whole_run"] == pytest.approx(
        30_000 / 11_880, abs=1e-3)
