"""The agent bench's latency figure: the firmware on the unix port buys through mosquitto
and the real gateway on loopback (nanotoll.bench.latency); every purchase must succeed."""

from __future__ import annotations

from support.tools import require


def test_unix_latency_reports_purchase_milliseconds() -> None:
    require("micropython")
    require("mosquitto")
    require("anvil")
    from nanotoll.bench.latency import run_unix_latency

    figures = run_unix_latency(purchases=5)
    assert figures["latency_purchases_unix"] == 5
    assert 0 < figures["latency_ms_p50_unix"] <= figures["latency_ms_max_unix"] < 10_000
