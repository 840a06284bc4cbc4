"""The device's MQTT socket turns Nagle's algorithm off (firmware/tcp_link.py, no_delay),
over TLS too: the TCP socket is set before the TLS context wraps it. open() returns once
TCP connects; the handshake comes with the first write, so a plain listener serves both."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from support.agent_helpers import micropython, mp_env
from support.tools import require

SCRIPT = """
import sys, asyncio
from tcp_link import TcpLink
async def main():
    link = TcpLink("127.0.0.1", int(sys.argv[1]), ssl=sys.argv[2] == "tls" or None)
    stream = await link.open()
    print("nodelay", link.nodelay)
    link.close(stream)
asyncio.run(main())
"""


def _run(tmp_path: Path, prefix: list[str], transport: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "nodelay.py"
    script.write_text(SCRIPT)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        return subprocess.run([*prefix, micropython(), str(script), str(port), transport],
                              cwd=tmp_path, env=mp_env(), capture_output=True, text=True,
                              timeout=60, check=True)


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_tcp_link_reports_nagle_off(tmp_path: Path, transport: str) -> None:
    assert _run(tmp_path, [], transport).stdout.split() == ["nodelay", "True"]


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_tcp_link_sets_tcp_nodelay_on_its_socket(tmp_path: Path, transport: str) -> None:
    strace = require("strace")
    done = _run(tmp_path, [strace, "-f", "-e", "trace=setsockopt"], transport)
    calls = [line for line in done.stderr.splitlines() if "TCP_NODELAY" in line]
    assert calls, done.stderr
    assert all("[1]" in line and line.rstrip().endswith("= 0") for line in calls), calls
