"""``python -m nanotoll.bench.wake``: the pipeline's CPU per purchase by batch size and
pause runs real purchases to their durable write, every one answered OK (the figures are
timed work; here only that they are measured over what they claim)."""

from __future__ import annotations

import pytest
from nanotoll.bench import wake


def test_every_purchase_of_the_wake_bench_is_accepted(monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    monkeypatch.setattr(wake, "SINGLES", 12)
    monkeypatch.setattr(wake, "PAUSE", 0.001)
    figures = wake.run_wake_bench()  # raises unless every response was OK
    for name in ("pipeline_cpu_us_batch", "pipeline_cpu_us_single",
                 "pipeline_cpu_us_single_after_pause", "plain_python_us",
                 "plain_python_us_after_pause"):
        assert figures[name] > 0, name
    assert figures["batch"] == wake.BATCH
    assert figures["pause_ms"] == pytest.approx(1.0)


def test_a_refused_purchase_fails_the_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wake, "SINGLES", 4)
    monkeypatch.setattr(wake, "PRICE", 1)  # not the catalog's price: every request refused
    with pytest.raises(RuntimeError, match="purchases failed in the wake bench"):
        wake.run_wake_bench()
