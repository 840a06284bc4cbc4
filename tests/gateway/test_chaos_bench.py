"""``nanotoll bench chaos``, bounded: 500 purchases over 10 channels, the gateway process
SIGKILLed at 5 seeded moments. Nothing acknowledged lost, nothing charged twice, settled =
paid, and every settlement open at a kill closed within 5 s of the restart."""

from __future__ import annotations

import pytest
from nanotoll.bench.chaos import check_chaos, run_chaos_bench
from support.tools import require


def test_bounded_chaos_run_meets_the_targets() -> None:
    require("mosquitto")
    figures = run_chaos_bench(purchases=500, kills=5, devices=10, seed=13, timeout=240)
    assert figures["purchases"] == 500 and figures["kills"] == 5, figures
    assert figures["lost"] == 0 and figures["double_charges"] == 0, figures
    assert figures["settled_equals_paid"] is True, figures
    assert figures["refusals"] == 0, figures
    assert figures["max_settlement_stall_s"] <= 5.0, figures


@pytest.mark.parametrize(("purchases", "kills", "devices"),
                         [(0, 0, 1), (10, 10, 1), (10, -1, 1), (10, 1, 0), (True, 0, 1)])
def test_figures_it_cannot_run_are_refused_before_anything_starts(
        purchases: int, kills: int, devices: int) -> None:
    with pytest.raises(ValueError):
        check_chaos(purchases, kills, devices)
