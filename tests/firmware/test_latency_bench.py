"""The agent bench's latency figures: the firmware on the unix port buys through mosquitto
and the real gateway on loopback (nanotoll.bench.latency), over TLS with each party's own
login (the default) and on the plain listener; every purchase must succeed."""

from __future__ import annotations

import pytest
from support.tools import require


@pytest.mark.parametrize("secure", [True, False], ids=["tls", "plain"])
def test_unix_latency_reports_purchase_milliseconds(secure: bool) -> None:
    require("micropython")
    require("mosquitto")
    require("anvil")
    from nanotoll.bench.latency import run_unix_latency

    figures = run_unix_latency(purchases=5, secure=secure)
    suffix = "" if secure else "_plain"
    assert figures[f"latency_purchases_unix{suffix}"] == 5
    assert 0 < figures[f"latency_ms_p50_unix{suffix}"] \
        <= figures[f"latency_ms_max_unix{suffix}"] < 10_000
