"""Where things are, for every test: the repository, the shared vectors, the MicroPython scripts."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
VECTORS_DIR = TESTS / "vectors"
MPY_TESTS = TESTS / "mpy"
