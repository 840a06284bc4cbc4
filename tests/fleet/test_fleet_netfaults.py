"""Acceptance of network faults (issue 13): 20 devices running the real firmware reach the
secure broker through the fault proxy, TLS on both of its sides and each device logged in
with its own credentials, with 10 % of the MQTT packets lost and 10 % duplicated in each
direction. The agents' re-sends and the MQTT reconnects carry every purchase: no
errors, no double charge, no voucher lost, each device's own spending equal to what the
ledger accepted and to what the chain paid, settled = paid.

This bounded run makes about 700 purchases; the full 2,000 take longer than a test should:
``nanotoll fleet run --devices 20 --rate 2 --duration 155 --warmup 2 --net-faults
loss=0.1,dup=0.1,seed=1`` makes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAULTS = "loss=0.1,dup=0.1,seed=1"


def _fleet(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nanotoll.cli", "fleet", "run", *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env=dict(os.environ))


@pytest.mark.e2e
def test_twenty_devices_buy_through_lost_and_duplicated_packets(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = _fleet("--devices", "20", "--rate", "2", "--duration", "50", "--warmup", "2",
                    "--net-faults", FAULTS, "--run-dir", str(run_dir), timeout=280)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "fault proxy: up" in output

    summary = json.loads((run_dir / "summary.json").read_text())
    # TLS from the devices to the proxy and from the proxy to the broker
    assert summary["device_transport"] == "tls"
    assert summary["net_faults"]["proxy_transport"] == "tls"
    check = summary["check"]
    assert check["purchases"] >= 450 and check["ok"] == check["purchases"], check
    assert check["errors"] == 0 and check["double_charges"] == 0, check
    assert check["unrecorded"] == 0 and check["duplicate_receipts"] == 0, check
    assert check["settled_equals_paid"] is True, check
    assert check["device_paid"] == check["ledger_accepted"] == check["chain_paid"] \
        == check["provider_received"] > 0

    devices = [json.loads(line) for line in (run_dir / "devices.jsonl").open()]
    assert len(devices) == 20
    for device in devices:
        # what the device spent, product by product, is what the ledger took and the
        # chain paid: no voucher lost on the way, none taken twice
        spent = sum(device["by_product"].values())
        assert spent == device["device_acked"] == device["ledger_accepted"] \
            == device["chain_paid"] > 0, device
    # the devices' own QoS 1 re-sends carried the requests the proxy lost
    assert sum(d["mqtt_retransmits"] for d in devices) > 0

    # the faults really happened, at about the rates asked, in both directions
    assert summary["options"]["net_faults"] == FAULTS
    packets = summary["net_faults"]["counts"]["packets"]
    for direction in ("up", "down"):
        kinds = packets[direction]
        seen = sum(row["packets"] for row in kinds.values())
        dropped = sum(row["dropped"] for row in kinds.values())
        duplicated = sum(row["duplicated"] for row in kinds.values())
        assert seen > 1500, (direction, seen)
        assert 0.07 < dropped / seen < 0.13, (direction, dropped, seen)
        assert 0.06 < duplicated / seen < 0.12, (direction, duplicated, seen)
        assert kinds["PUBLISH"]["dropped"] > 0 and kinds["PUBLISH"]["duplicated"] > 0
        assert kinds["PUBACK"]["dropped"] > 0 and kinds["PUBACK"]["duplicated"] > 0


@pytest.mark.parametrize(("spec", "message"), [
    ("loss=0.9", "--net-faults: up.loss must be in [0, 0.5]"),
    ("sideways.dup=0.1", "--net-faults: unknown direction"),
    ("delay=0.5", "needs delay_ms above 0"),
])
def test_a_bad_fault_specification_is_refused_before_anything_starts(
        spec: str, message: str, tmp_path: Path) -> None:
    result = _fleet("--devices", "2", "--rate", "0.5", "--duration", "10", "--net-faults",
                    spec, "--run-dir", str(tmp_path / "run"), timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "run").exists()
