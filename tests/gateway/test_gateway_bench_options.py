"""``nanotoll bench gateway --gateways N``: the count reaches the bench, and a bad one is
refused with a clear error before anything starts (the bench itself is timed work and
is not run here)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from nanotoll import cli
from nanotoll.bench.gateway import MAX_GATEWAYS, check_gateways, run_gateway_bench


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nanotoll.cli", "bench", *args],
                          capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ))


@pytest.mark.parametrize(("args", "message"), [
    (["gateway", "--json", "--gateways", "0"], "--gateways must be in 1..16, got 0"),
    (["gateway", "--json", "--gateways", "-3"], "--gateways must be in 1..16, got -3"),
    (["gateway", "--json", "--gateways", "17"], "--gateways must be in 1..16, got 17"),
    (["all", "--json", "--gateways", "0"], "--gateways must be in 1..16, got 0"),
    (["device", "--json", "--gateways", "2"],
     "--gateways is an option of the gateway bench, not of device"),
    (["gateway", "--json", "--gateways", "two"], "invalid int value: 'two'"),
])
def test_bad_gateway_counts_are_refused_before_anything_starts(args: list[str],
                                                               message: str) -> None:
    result = _bench(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stdout == ""  # no bench ran, not even the device bench of `all`


def test_the_count_reaches_the_gateway_bench_only(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    calls: dict[str, dict[str, Any]] = {}

    def fake_load(module: str, function: str) -> Callable[..., Any]:
        if function == "check_gateways":
            return check_gateways

        def bench(**kwargs: Any) -> dict[str, Any]:
            calls[function] = kwargs
            return {"gateways": kwargs.get("gateways", 0)}
        return bench

    monkeypatch.setattr(cli, "_load", fake_load)
    assert cli.main(["bench", "gateway", "--json", "--gateways", "2"]) == 0
    assert calls == {"run_gateway_bench": {"gateways": 2}}
    assert capsys.readouterr().out.strip() == '{"gateways": 2}'

    calls.clear()
    assert cli.main(["bench", "all", "--json", "--gateways", str(MAX_GATEWAYS)]) == 0
    assert calls["run_gateway_bench"] == {"gateways": MAX_GATEWAYS}
    assert all(kwargs == {} for name, kwargs in calls.items() if name != "run_gateway_bench")

    calls.clear()
    assert cli.main(["bench", "gateway", "--json"]) == 0
    assert calls == {"run_gateway_bench": {}}  # the bench's own default: one process


@pytest.mark.parametrize("count", [0, -1, MAX_GATEWAYS + 1, True, 2.0])
def test_the_bench_refuses_a_bad_count_itself(count: Any) -> None:
    with pytest.raises(ValueError, match="--gateways must be in 1..16"):
        run_gateway_bench(count)  # refused before anvil or the broker start


def test_a_good_count_passes() -> None:
    assert [check_gateways(n) for n in (1, 2, MAX_GATEWAYS)] == [1, 2, MAX_GATEWAYS]
