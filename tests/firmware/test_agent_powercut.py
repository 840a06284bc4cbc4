"""Power cut at every flash operation of a run of purchases, and of a run in which the
owner's signed policy is applied (littlefs on a RAM block device, under the real
MicroPython unix port): tests/mpy/agent_powercut_mp.py does the work."""

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
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-2])
    policy = json.loads(lines[-1])
    print(json.dumps(policy))
    # the policy run: every flash operation cut; each boot found the provisioned policy
    # (seq 0) or policy 2 whole, spent within the one in force, and ended on policy 2
    assert policy["policy_faults"] == []
    assert policy["policy_cut_points"] == policy["policy_flash_ops_per_run"] >= 8 * 2 + 2
    assert policy["policy_uncut"] == [policy["policy_flash_ops_per_run"] + 1]
    assert set(policy["booted_with_seq"]) == {"0", "2"}
    print(json.dumps(result))
    assert result["faults"] == []
    # every program/erase of the run was a cut point, and the run without a cut passed too
    assert result["cut_points"] == result["flash_ops_per_run"] >= 5 * 2
    assert result["outcomes"] == {"cut": result["cut_points"], "no cut": 1}
    # some cuts fell after the voucher left: those requests were re-sent and answered once
    assert result["rebooted_with_pending_request"] > 0
    assert result["answered_again_from_the_ledger"] > 0
