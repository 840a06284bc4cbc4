"""Fleet bad input: a clear error before anything starts; Ctrl-C stops every process the
run started; the report's settlement curves on a hand-made ledger."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from nanotoll.fleet.options import FleetError, FleetOptions, parse_chaos, validate
from nanotoll.fleet.report import settlement_curves
from nanotoll.servers.process import free_port
from support.process_support import assert_ctrl_c_stops_everything


def _fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nanotoll.cli", "fleet", "run", *args],
                          capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ))


@pytest.mark.parametrize(("args", "message"), [
    (["--devices", "0", "--rate", "0.2", "--duration", "10"], "--devices must be at least 1"),
    (["--devices", "1000", "--rate", "1", "--duration", "10"],
     "more than this machine can hold"),
    (["--devices", "10", "--rate", "5", "--duration", "10"], "a device has one purchase"),
    (["--devices", "10", "--rate", "0", "--duration", "10"], "--rate must be above 0"),
    (["--devices", "10", "--rate", "0.2", "--duration", "0"], "--duration must be in"),
    (["--devices", "10", "--rate", "0.2", "--duration", "10", "--gateways", "0"],
     "--gateways must be in"),
    (["--devices", "10", "--rate", "0.2", "--duration", "10", "--chaos", "meteor"],
     "unknown event 'meteor'"),
    (["--devices", "10", "--rate", "0.2", "--duration", "10", "--chaos", "gateway-kill"],
     "--chaos needs --duration of at least"),
])
def test_bad_options_are_refused_before_anything_starts(args: list[str], message: str,
                                                        tmp_path: Path) -> None:
    result = _fleet(*args, "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "chain http" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_an_unreachable_ledger_is_refused(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = _fleet("--devices", "10", "--rate", "0.2", "--duration", "10", "--ledger",
                    f"postgresql://nanotoll@127.0.0.1:{port}/fleet",
                    "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert f"--ledger postgresql://nanotoll@127.0.0.1:{port}/fleet: cannot connect" \
        in result.stderr
    assert not (tmp_path / "run").exists()


def test_every_problem_is_listed_at_once() -> None:
    options = FleetOptions(devices=0, rate=-1, duration=0, gateways=99, ledger="mysql://x")
    with pytest.raises(FleetError) as caught:
        validate(options)
    text = str(caught.value)
    for part in ("--devices", "--rate", "--duration", "--gateways", "--ledger must be"):
        assert part in text
    assert parse_chaos("gateway-kill, broker-restart") == ("gateway-kill", "broker-restart")


@pytest.mark.e2e
def test_ctrl_c_stops_every_process_it_started(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    fleet = subprocess.Popen(
        [sys.executable, "-m", "nanotoll.cli", "fleet", "run", "--devices", "20", "--rate",
         "0.5", "--duration", "120", "--gateways", "2", "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert fleet.stderr is not None
    # purchases are flowing once it reports ten or more
    assert_ctrl_c_stops_everything(fleet, fleet.stderr,
                                   lambda line: re.search(r"ok \d{2,}", line) is not None,
                                   run_dir, wait=90)


def test_settlement_curves_follow_acceptance_and_confirmation() -> None:
    go_ms = 1_000_000.0
    vouchers = [  # channel 1: 100 at t=1, 300 at t=3; channel 2: 50 at t=2
        {"channel": 1, "cumulative": 100, "increment": 100, "accepted_ms": go_ms + 1000},
        {"channel": 1, "cumulative": 300, "increment": 200, "accepted_ms": go_ms + 3000},
        {"channel": 2, "cumulative": 50, "increment": 50, "accepted_ms": go_ms + 2000},
    ]
    settlements = [  # t=4: channel 1 up to 100 and channel 2; t=6: channel 1 up to 300
        {"state": "confirmed", "updated_ms": go_ms + 4000, "items": [[1, 100, "paid"],
                                                                    [2, 50, "paid"]]},
        {"state": "failed", "updated_ms": go_ms + 4500, "items": [[1, 300, None]]},
        {"state": "confirmed", "updated_ms": go_ms + 6000, "items": [[1, 300, "paid"]]},
    ]
    times, unredeemed, lag = settlement_curves(vouchers, settlements, go_ms)
    at = dict(zip(times, zip(unredeemed, lag, strict=True), strict=True))
    assert at[0.0] == (0, 0.0)
    assert at[1.0] == (100, 0.0)
    assert at[2.0] == (150, 1.0)
    assert at[3.0] == (350, 2.0)
    assert at[4.0] == (200, 1.0)  # only the voucher of t=3 is left
    assert at[5.0] == (200, 2.0)
    assert at[6.0] == (0, 0.0)
