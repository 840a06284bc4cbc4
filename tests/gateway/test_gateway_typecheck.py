"""The gateway package type-checks (mypy, configured in pyproject.toml)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from support import paths as _paths

ROOT = _paths.ROOT


def test_the_gateway_package_type_checks() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is not installed: it is in the dev extra, run make setup")
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
