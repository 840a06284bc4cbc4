"""Running the firmware under the real MicroPython unix port from pytest.

The binary is $NANOTOLL_MICROPYTHON, else .toolchain/bin/micropython (built by
`make setup`); a missing binary fails the test under CI (support.tools.require), so CI
never passes without having run the firmware.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support import paths as _paths
from support.tools import require

ROOT = _paths.ROOT
FIRMWARE = ROOT / "firmware"
MPY_TESTS = _paths.MPY_TESTS
VECTORS = _paths.VECTORS_DIR


def micropython_binary() -> Path:
    return Path(require("micropython"))


def run_micropython(
    script: Path,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 300,
    heap: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a MicroPython script with firmware/ and tests/mpy/ importable."""
    command = [str(micropython_binary())]
    if heap:
        command += ["-X", f"heapsize={heap}"]
    command += [str(script), *args]
    full_env = dict(os.environ)
    full_env["MICROPYPATH"] = f"{FIRMWARE}:{MPY_TESTS}:.frozen"
    full_env.update(env or {})
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
    )
