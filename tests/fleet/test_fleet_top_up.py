"""``fleet run --chaos top-up`` (issue 15): mid-run, the owner tops up and extends every
device's channel with the owner tools' code (topUpMany, extendMany); the run still has no
errors and no double charge, settles what was paid, and every channel ends with the new
deposit and expiry on chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_fleet_tops_up_every_channel_mid_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "nanotoll.cli", "fleet", "run", "--devices", "12",
         "--rate", "0.3", "--duration", "20", "--warmup", "2", "--chaos", "top-up",
         "--run-dir", str(run_dir)],
        capture_output=True, text=True, timeout=240, check=False, env=dict(os.environ))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    check = summary["check"]
    assert check["errors"] == 0 and check["double_charges"] == 0, check
    assert check["settled_equals_paid"] is True, check
    deposit = summary["provisioning"]["deposit_per_channel"]
    top_up = summary["top_up"]
    assert top_up == {"channels": 12, "added_per_channel": deposit // 2, "transactions": 2,
                      "channels_not_topped_up": []}
    events = {e["event"]: e for e in summary["events"]}
    done = events["top_up_done"]
    assert done["top_up_transactions"] == done["extend_transactions"] == 1
    assert 0 < done["top_up_gas_per_channel"] < 60_000
    assert events["top_up"]["t"] < events["top_up_done"]["t"]
