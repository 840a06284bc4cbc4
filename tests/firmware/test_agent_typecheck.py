"""The agent's modules and each board's glue type-check against that board's MicroPython
stubs (micropython-esp32-stubs, micropython-rp2-stubs) with mypy --check-untyped-defs.

The stub packages overwrite each other when installed into one environment, so each
lives in its own folder: NANOTOLL_STUBS/<board> or .toolchain/stubs/<board>, made with
`pip install --no-deps --target .toolchain/stubs/esp32 micropython-esp32-stubs
micropython-stdlib-stubs` (and the same for rp2). The crypto core is followed silently
(its owner checks it); everything else here must be clean.
"""

from __future__ import annotations

from support import paths as _paths

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = _paths.ROOT
AGENT = ("agent", "mqtt", "store", "policy", "errors", "wallet", "device", "console")
BOARDS = {"esp32": "esp32", "rp2": "rp2040_picow"}


def stubs_dir(kind: str) -> Path:
    base = Path(os.environ.get("NANOTOLL_STUBS", ROOT / ".toolchain" / "stubs"))
    path = base / kind
    if not (path / "stdlib").is_dir() or not (path / "machine.pyi").exists():
        pytest.fail(f"no {kind} stubs at {path}: make setup installs them (step 'stubs')")
    return path


@pytest.mark.parametrize("kind", sorted(BOARDS))
def test_agent_type_checks_against_board_stubs(kind: str, tmp_path: Path) -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is not installed: it is in the dev extra, run make setup")
    stubs = stubs_dir(kind)
    for path in (ROOT / "firmware").glob("*.py"):
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(ROOT / "boards" / BOARDS[kind] / "board.py", tmp_path / "board.py")
    shutil.copy(ROOT / "examples" / "drone" / "flight.py", tmp_path / "flight.py")
    checked = [f"{name}.py" for name in (*AGENT, "board", "flight")]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--custom-typeshed-dir", str(stubs),
         "--python-version", "3.11", "--follow-imports=silent", "--check-untyped-defs",
         "--explicit-package-bases", "--no-incremental", *checked],
        cwd=tmp_path, env={**os.environ, "MYPYPATH": str(stubs)},
        capture_output=True, text=True, timeout=300,
    )
    ours = [line for line in done.stdout.splitlines()
            if line.split(":", 1)[0] in checked]
    assert ours == [], "\n".join(ours)
