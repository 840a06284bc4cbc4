"""Fleets of emulated boards (issue 18): ``fleet run --board qemu_mps2`` runs one QEMU
mps2-an385 per device, flashed with the firmware's ROMFS image, its key made on the
board, its MQTT over the UART bridge, through the same gateways and checks as the
unix-port fleet; and a fleet larger than the machine holds is refused before anything
starts, naming the figure it used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nanotoll.fleet.boards import BOARD_RSS_KIB, available_kib, capacity_problems
from support.tools import require


def _fleet(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nanotoll.cli", "fleet", "run", *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env=dict(os.environ), stdin=subprocess.DEVNULL)


def test_more_boards_than_memory_holds_are_refused_with_the_figure() -> None:
    def sizing(devices: int, rate: float, cores: int) -> list[str]:
        # (a host without QEMU adds its own problem: not what this test is about)
        return [p for p in capacity_problems(devices, rate, cores) if "emulated boards" in p]

    boards = available_kib() // BOARD_RSS_KIB + 1
    problems = sizing(boards, 0.01, cores=1000)
    assert len(problems) == 1 and f"{BOARD_RSS_KIB // 1024} MiB resident per board" \
        in problems[0], problems
    assert sizing(2, 0.5, cores=2) == []


def test_more_boards_than_the_cores_carry_are_refused_before_anything_starts(
        tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = _fleet("--board", "qemu_mps2", "--devices", "40", "--rate", "1",
                    "--duration", "10", "--run-dir", str(run_dir), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "40 emulated boards at 1.0/s need about" in result.stderr
    assert "ms of CPU a purchase" in result.stderr
    assert not run_dir.exists()  # nothing started, nothing written


@pytest.mark.e2e
def test_four_emulated_boards_with_chaos(tmp_path: Path) -> None:
    require("qemu-board")
    run_dir = tmp_path / "run"
    result = _fleet("--board", "qemu_mps2", "--devices", "4", "--rate", "0.5",
                    "--duration", "24", "--chaos", "broker-restart,top-up,gateway-kill",
                    "--settle-threshold", "30000", "--settle-interval", "8",
                    "--run-dir", str(run_dir), timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["options"]["board"] == "qemu_mps2"
    assert summary["device_kind"].startswith("emulated qemu_mps2 boards")
    check = summary["check"]
    assert check["errors"] == 0, check
    assert check["double_charges"] == 0 and check["unrecorded"] == 0, check
    assert check["settled_equals_paid"] is True, check
    assert check["device_paid"] == check["ledger_accepted"] == check["chain_paid"] \
        == check["provider_received"] > 0
    at = {e["event"]: e["t"] for e in summary["events"]}
    for name in ("broker_restart", "broker_back", "top_up_done", "gateway_kill",
                 "gateway_back"):
        assert name in at, at
    # A board hears of a broker restart only by the silence on its UART (its resends,
    # then its keepalive) and skips the slots it missed meanwhile; so the check is that
    # every board bought before the chaos and again after the last event.
    rows = [json.loads(line) for line in (run_dir / "purchases.jsonl").open()]
    for device in range(4):
        times = [r["t"] for r in rows if r["device"] == device and r["result"] == "ok"]
        assert any(t < at["broker_restart"] for t in times), (device, times)
        assert any(t > at["gateway_back"] for t in times), (device, times)
    devices = [json.loads(line) for line in (run_dir / "devices.jsonl").open()]
    assert len(devices) == 4
    assert all(d["mqtt_connects"] >= 2 for d in devices), devices  # cut off and back
    assert len({d["address"] for d in devices}) == 4  # a key each, made on its board
