"""The demo refuses to start on a taken port or a missing tool, and stops every process it
started when interrupted."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from support.process_support import assert_ctrl_c_stops_everything


def _nanotoll(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nanotoll.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})}, check=False)


def test_a_taken_port_is_refused_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _nanotoll("demo", "--broker-port", str(port))
    assert result.returncode == 2
    assert f"--broker-port {port} is taken" in result.stdout
    assert "anvil on" not in result.stdout


def test_a_missing_tool_says_how_to_fix_it() -> None:
    result = _nanotoll("demo", env={"NANOTOLL_MICROPYTHON": "/nonexistent/micropython"})
    assert result.returncode == 2
    assert "NANOTOLL_MICROPYTHON=/nonexistent/micropython does not exist" in result.stdout
    assert "make setup" in result.stdout


def test_zero_purchases_is_refused() -> None:
    result = _nanotoll("demo", "--purchases", "0")
    assert result.returncode == 2
    assert "--purchases must be at least 1" in result.stdout


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    demo = subprocess.Popen(
        [sys.executable, "-m", "nanotoll.cli", "demo", "--purchases", "500",
         "--workdir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert demo.stdout is not None
    assert_ctrl_c_stops_everything(demo, demo.stdout, lambda line: "purchase   2/500" in line,
                                   workdir, wait=120)
