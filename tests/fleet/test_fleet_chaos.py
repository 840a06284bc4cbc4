"""Acceptance of the fleet simulation (issue 8): 100 devices running the real firmware
under MicroPython against two gateway processes, with chaos on: the broker is restarted
once and one gateway is SIGKILLed once (and restarted); devices and gateways connect with
TLS and their own credentials. Zero errors after the agents'
retries, zero double charges, settled = paid; then the report renders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.tools import require

pytestmark = pytest.mark.e2e


def test_hundred_devices_survive_broker_restart_and_gateway_kill(tmp_path: Path) -> None:
    require("tls")  # the devices connect to the broker with TLS
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "nanotoll.cli", "fleet", "run", "--devices", "100",
         "--rate", "0.4", "--duration", "30", "--warmup", "2", "--gateways", "2",
         "--chaos", "broker-restart,gateway-kill", "--settle-threshold", "30000",
         "--settle-interval", "8", "--run-dir", str(run_dir)],
        capture_output=True, text=True, timeout=170, check=False, env=dict(os.environ))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    summary = json.loads((run_dir / "summary.json").read_text())
    check = summary["check"]
    assert check["errors"] == 0, check
    assert check["double_charges"] == 0 and check["unrecorded"] == 0, check
    assert check["settled_equals_paid"] is True, check
    assert check["device_paid"] == check["ledger_accepted"] == check["chain_paid"] \
        == check["provider_received"] > 0
    # every scheduled purchase happened: 100 devices × 0.4/s × 30 s, plus the warm-up
    assert check["ok"] >= 100 * 12, check
    assert summary["device_transport"] == "tls", summary.get("device_transport")
    # every device checks receipts with the provider key's flash comb table, as in the field
    assert summary["provider_tables"] == summary["options"]["devices"]
    events = [e["event"] for e in summary["events"]]
    assert events.count("broker_restart") == 1 and "broker_back" in events, events
    assert events.count("gateway_kill") == 1 and "gateway_back" in events, events
    # the devices really were cut off: each of them connected again after the restart
    devices = [json.loads(line) for line in (run_dir / "devices.jsonl").open()]
    assert len(devices) == 100
    assert all(d["mqtt_connects"] >= 2 for d in devices), devices[:3]
    # per purchase records: device, product, latency and result
    first = json.loads((run_dir / "purchases.jsonl").open().readline())
    assert {"device", "product", "latency_ms", "result"} <= first.keys()
    assert {"weather", "nav", "route"} == set(summary["purchases"]["by_product"])

    report = subprocess.run([sys.executable, "-m", "nanotoll.cli", "fleet", "report",
                             str(run_dir)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert report.returncode == 0, report.stderr
    page = (run_dir / "report.html").read_text()
    for name in ("purchases_per_s", "latency", "revenue", "settlement", "gas"):
        assert (run_dir / f"{name}.png").stat().st_size > 5000
        assert f'src="{name}.png"' in page
