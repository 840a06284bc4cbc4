"""The device's MQTT socket turns Nagle's algorithm off (firmware/tcp_link.py, no_delay)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from support.agent_helpers import micropython, mp_env
from support.tools import require

SCRIPT = """
import sys, asyncio
from tcp_link import TcpLink
async def main():
    link = TcpLink("127.0.0.1", int(sys.argv[1]))
    stream = await link.open()
    print("nodelay", link.nodelay)
    link.close(stream)
asyncio.run(main())
"""


def _run(tmp_path: Path, prefix: list[str]) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "nodelay.py"
    script.write_text(SCRIPT)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        return subprocess.run([*prefix, micropython(), str(script), str(port)],
                              cwd=tmp_path, env=mp_env(), capture_output=True, text=True,
                              timeout=60, check=True)


def test_tcp_link_reports_nagle_off(tmp_path: Path) -> None:
    assert _run(tmp_path, []).stdout.split() == ["nodelay", "True"]


def test_tcp_link_sets_tcp_nodelay_on_its_socket(tmp_path: Path) -> None:
    strace = require("strace")
    done = _run(tmp_path, [strace, "-f", "-e", "trace=setsockopt"])
    calls = [line for line in done.stderr.splitlines() if "TCP_NODELAY" in line]
    assert calls, done.stderr
    assert all("[1]" in line and line.rstrip().endswith("= 0") for line in calls), calls
