"""Power cut at every flash operation of a run of purchases (littlefs on a RAM block
device, under the real MicroPython unix port): tests/agent_powercut_mp.py does the work."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support.agent_helpers import mp_env
from support.paths import MPY_TESTS
from support.tools import require

SCRIPT = MPY_TESTS / "agent_powercut_mp.py"


def test_power_cut_at_every_flash_operation(tmp_path: Path) -> None:
    binary = require("littlefs")
    done = subprocess.run([binary, str(SCRIPT)], cwd=tmp_path, env=mp_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result))
    assert result["faults"] == []
    # every program/erase of the run was a cut point, and the run without a cut passed too
    assert result["cut_points"] == result["flash_ops_per_run"] >= 5 * 2
    assert result["outcomes"] == {"cut": result["cut_points"], "no cut": 1}
    # some cuts fell after the voucher left: those requests were re-sent and answered once
    assert result["rebooted_with_pending_request"] > 0
    assert result["answered_again_from_the_ledger"] > 0
