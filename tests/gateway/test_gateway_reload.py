"""Prices and products change without a restart: ``nanotoll gateway reload`` (SIGHUP)
while devices on MicroPython's unix port keep buying through mosquitto, paid on channels
of the escrow on anvil. No purchase fails: a device that priced from the replaced catalog
is served at that price until it learns the new one, or is answered PRICE_CHANGED and
re-signs at once. A config that fails to load is refused and the running catalog kept."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.agent_helpers import Device, micropython
from support.paths import ROOT
from support.tools import require

OLD, NEW = 1500, 2000
DEVICES = 3
PURCHASES = 40  # at 250 ms apart: the reload lands mid-run


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    micropython()
    require("mosquitto")
    require("anvil")
    from eth_account import Account
    from nanotoll.chain.client import EscrowClient
    from nanotoll.servers.anvil import Anvil
    from nanotoll.servers.gateway import GatewayProcess, gateway_toml
    from nanotoll.servers.mosquitto import Mosquitto

    workdir = tmp_path_factory.mktemp("reload")
    with contextlib.ExitStack() as stack:
        chain = stack.enter_context(Anvil(workdir=workdir / "anvil"))
        deployer, payer = chain.new_account(), chain.new_account()
        provider = Account.create()
        escrow = EscrowClient.deploy(chain.w3, deployer)
        broker = stack.enter_context(Mosquitto(workdir=workdir / "broker", secure=False))
        config = workdir / "gateway.toml"

        def write(price: int, extra: str = "") -> None:
            config.write_text(gateway_toml(
                mqtt_port=broker.port, rpc_url=chain.rpc_url, escrow=escrow.address,
                chain_id=chain.chain_id, ledger_path=workdir / "ledger.db",
                products=[("weather", price, "nowcast")]) + extra)

        write(OLD)
        gateway = stack.enter_context(GatewayProcess(config, provider.key, workdir / "gw"))
        yield {"chain": chain, "escrow": escrow, "payer": payer, "provider": provider,
               "broker": broker, "gateway": gateway, "config": config, "write": write,
               "workdir": workdir, "ledger": workdir / "ledger.db"}


def device(stack: dict[str, Any], name: str) -> tuple[Device, int]:
    chain, escrow, payer = stack["chain"], stack["escrow"], stack["payer"]
    dev = Device(stack["workdir"] / name, stack["broker"].port,
                 policy={"deposit": 1_000_000, "budget": 1_000_000},
                 chain_id=chain.chain_id, escrow=escrow.address,
                 provider=stack["provider"].address, timeout_ms=10000)
    (dev.folder / "device.key").unlink()
    rc, lines, err = dev.run("--init-key")
    assert rc == 0, err
    escrow.mint(payer, payer.address, 1_000_000)
    expiry = int(chain.w3.eth.get_block("latest")["timestamp"]) + 7 * 86400
    channel, _ = escrow.open_channel(payer, lines[0]["address"], stack["provider"].address,
                                     1_000_000, expiry)
    config = json.loads(dev.config.read_text())
    config["channel"] = channel
    dev.config.write_text(json.dumps(config))
    return dev, channel


def reload_cli(config: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "gateway"))
    return subprocess.run([sys.executable, "-m", "nanotoll.cli", "gateway", "reload",
                           "--config", str(config)], capture_output=True, text=True,
                          timeout=60, env=env)


def accepted(ledger: Path, channel: int) -> int:
    from nanotoll.ledger import open_ledger

    opened = open_ledger(f"sqlite:///{ledger}")
    try:
        record = opened.lookup(channel)
        return record.cumulative if record else 0
    finally:
        opened.close()


def log_events(stack: dict[str, Any], name: str) -> list[dict[str, Any]]:
    lines = stack["gateway"].log_path.read_text(errors="replace").splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in events if e.get("event") == name]


def test_a_price_changes_while_devices_buy(stack: dict[str, Any]) -> None:
    devices = [device(stack, f"dev{i}") for i in range(DEVICES)]
    runs = [dev.popen("--buy", "weather", "--count", str(PURCHASES), "--interval-ms", "250")
            for dev, _ in devices]
    try:
        deadline = time.monotonic() + 60
        while not all(accepted(stack["ledger"], channel) >= 2 * OLD for _, channel in devices):
            assert time.monotonic() < deadline, "the devices did not start buying"
            time.sleep(0.2)
        stack["write"](NEW)
        done = reload_cli(stack["config"])
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["signalled"] == [stack["gateway"].process.pid]
        outputs = [run.communicate(timeout=180) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    for (_, channel), (stdout, stderr) in zip(devices, outputs, strict=True):
        lines = [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]
        purchases = [x for x in lines if "i" in x]
        assert [x["ok"] for x in purchases] == [True] * PURCHASES, (purchases, stderr)
        prices = [x["price"] for x in purchases]
        assert prices[0] == OLD and prices[-1] == NEW, prices
        assert prices == sorted(prices)  # once a device pays the new price it keeps it
        assert accepted(stack["ledger"], channel) == sum(prices)
    reloaded = log_events(stack, "catalog_reloaded")
    assert reloaded and reloaded[-1]["products"] == {"weather": NEW}
    assert reloaded[-1]["seq"] > 1


def test_a_bad_config_is_refused_and_the_running_catalog_kept(stack: dict[str, Any]) -> None:
    stack["write"](3000, '[[catalog.products]]\nname = "extra"\nkind = "nonesuch"\n')
    done = reload_cli(stack["config"])
    assert done.returncode == 2
    assert "product extra (kind nonesuch)" in done.stderr and '"signalled"' not in done.stdout
    # the gateway itself refuses it too when signalled directly
    seen = len(log_events(stack, "reload_refused"))
    os.kill(stack["gateway"].process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while len(log_events(stack, "reload_refused")) == seen and time.monotonic() < deadline:
        time.sleep(0.1)
    refused = log_events(stack, "reload_refused")
    assert len(refused) == seen + 1 and "nonesuch" in refused[-1]["error"]
    dev, channel = device(stack, "after")
    rc, lines, err = dev.buy(1)
    purchase = [x for x in lines if "i" in x][0]
    assert purchase["ok"] and purchase["price"] != 3000, (lines, err)
    assert accepted(stack["ledger"], channel) == purchase["price"]
