"""Shared pytest set-up: import paths and real local servers on free loopback ports."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
if str(ROOT / "gateway") not in sys.path:
    sys.path.insert(0, str(ROOT / "gateway"))

from nanotoll.servers.mosquitto import Mosquitto  # noqa: E402
from support.tools import require  # noqa: E402

# Fixtures shared by several folders: PostgreSQL servers and ledgers.
pytest_plugins = ["support.gateway_pg"]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real mosquitto on a free loopback port, stopped after the test: the plain,
    anonymous one, for tests of other parts than the broker's security (tests/broker
    runs the secure one)."""
    require("mosquitto")
    with Mosquitto(workdir=tmp_path / "broker", secure=False) as broker:
        yield broker
