"""The Robot Framework device suites in renode/tests, written with Renode's keywords,
run here on the emulated QEMU board through renode/lib/qemu.resource (Renode itself
cannot be installed on these machines; renode/README.md says how to run them there)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import paths as _paths
from support.tools import require

ROOT = _paths.ROOT


@pytest.mark.e2e
def test_robot_device_suites_on_qemu(tmp_path: Path) -> None:
    require("qemu-board")
    require("robotframework")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "gateway"), env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-m", "robot", "--variable",
         f"RENODEKEYWORDS:{ROOT / 'renode' / 'lib' / 'qemu.resource'}",
         "--outputdir", str(tmp_path), "--consolewidth", "90", str(ROOT / "renode" / "tests")],
        capture_output=True, text=True, timeout=540, env=env, stdin=subprocess.DEVNULL,
        check=False)
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "6 tests, 6 passed, 0 failed" in result.stdout
