"""The whole forge suite (unit, fuzz, invariant, vectors, gas snapshot) inside pytest, so
`make test` ends with one summary. The CI profile runs the invariant suite at full
strength; NANOTOLL_FORGE_PROFILE=default runs the quicker developer profile."""

from __future__ import annotations

import os
import re
import subprocess

from nanotoll.servers.tools import REPO_ROOT, forge_binary

CONTRACTS = REPO_ROOT / "contracts"


def _forge(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["FOUNDRY_PROFILE"] = os.environ.get("NANOTOLL_FORGE_PROFILE", "ci")
    return subprocess.run([forge_binary(), *args], cwd=CONTRACTS, env=env, capture_output=True,
                          text=True, timeout=1800, check=False)


def test_forge_suite_passes() -> None:
    result = _forge("test", "--offline")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = re.findall(r"Ran \d+ test suites?.*?(\d+) tests passed, (\d+) failed", output)
    assert summary, output[-2000:]
    passed, failed = map(int, summary[-1])
    assert failed == 0 and passed > 0


def test_gas_snapshot_is_current() -> None:
    """contracts/.gas-snapshot is committed; a change in gas must update it knowingly.
    Fuzz and invariant entries are left out of the check: their mean and median follow
    the fuzzer's inputs, which forge seeds with the constants of every test file, so a
    new test anywhere moves them. The unit tests' gas is exact and is checked."""
    result = subprocess.run([forge_binary(), "snapshot", "--check", "--offline",
                             "--no-match-test", "Fuzz|invariant"], cwd=CONTRACTS,
                            capture_output=True, text=True, timeout=900, check=False,
                            env={**os.environ, "FOUNDRY_PROFILE": "default"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
