"""Helpers for the tests that interrupt a running `nanotoll` command (demo, fleet run)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from nanotoll.servers.process import port_in_use


def assert_ctrl_c_stops_everything(process: subprocess.Popen[str], lines: Iterable[str],
                                   ready: Callable[[str], bool], folder: Path,
                                   wait: float) -> str:
    """Read ``lines`` (the process's output) until ``ready`` says a line shows it is
    running, or ``wait`` seconds pass; then Ctrl-C it and check that it exits with 130
    saying "interrupted", that the two loopback ports it printed (anvil and mosquitto)
    are free again, and that no process naming ``folder`` is left. Returns its output."""
    seen: list[str] = []
    deadline = time.monotonic() + wait
    for line in lines:
        seen.append(line)
        if ready(line) or time.monotonic() > deadline:
            break
    ports = [int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", "".join(seen))]
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    output = "".join(seen) + (out or "") + (err or "")
    assert process.returncode == 130, output
    assert "interrupted" in output
    assert len(ports) == 2, output  # anvil and mosquitto
    assert not [port for port in ports if port_in_use(port)], output
    leftover = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True,
                              check=False)
    assert leftover.stdout.strip() == "", f"processes left running: {leftover.stdout}"
    return output
