"""The device agent against the real parts: the firmware under MicroPython's unix port,
mosquitto, the gateway process and the escrow on anvil. Each test gets its own device
(key made on the device with --init-key) and its own funded channel; the gateway's
ledger says what was accepted on that channel.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.agent_helpers import Device, micropython
from support.tools import require

PRICE = 1500  # weather in the gateway's default catalog


@dataclass
class Stack:
    chain: Any
    escrow: Any
    payer: Any
    provider: Any
    broker: Any
    gateway: Any
    ledger_url: str
    workdir: Path

    def device(self, name: str, deposit: int, policy: dict[str, Any]) -> tuple[Device, int]:
        """A device that made its own key, with a channel of ``deposit`` opened for it."""
        dev = Device(self.workdir / name, self.broker.port, policy=policy,
                     chain_id=self.chain.chain_id, escrow=self.escrow.address,
                     provider=self.provider.address, timeout_ms=10000)
        (dev.folder / "device.key").unlink()
        rc, lines, err = dev.run("--init-key")
        assert rc == 0, err
        address = lines[0]["address"]
        self.escrow.mint(self.payer, self.payer.address, deposit)
        expiry = int(self.chain.w3.eth.get_block("latest")["timestamp"]) + 7 * 86400
        channel, _ = self.escrow.open_channel(self.payer, address, self.provider.address,
                                              deposit, expiry)
        config = json.loads(dev.config.read_text())
        config["channel"] = channel
        dev.config.write_text(json.dumps(config))
        return dev, channel

    def accepted(self, channel: int) -> int:
        from nanotoll.ledger import open_ledger

        ledger = open_ledger(self.ledger_url)
        try:
            record = ledger.lookup(channel)
            return record.cumulative if record else 0
        finally:
            ledger.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    micropython()
    require("mosquitto")
    require("anvil")
    from eth_account import Account
    from nanotoll.chain.client import EscrowClient
    from nanotoll.servers.anvil import Anvil
    from nanotoll.servers.gateway import GatewayProcess, gateway_toml
    from nanotoll.servers.mosquitto import Mosquitto

    workdir = tmp_path_factory.mktemp("agent-gateway")
    with contextlib.ExitStack() as stack:
        chain = stack.enter_context(Anvil(workdir=workdir / "anvil"))
        deployer, payer = chain.new_account(), chain.new_account()
        provider = Account.create()
        chain.set_balance(provider.address, 10 * 10**18)
        escrow = EscrowClient.deploy(chain.w3, deployer)
        broker = stack.enter_context(Mosquitto(workdir=workdir / "broker", secure=False))
        ledger_path = workdir / "ledger.db"
        config = workdir / "gateway.toml"
        config.write_text(gateway_toml(mqtt_port=broker.port, rpc_url=chain.rpc_url,
                                       escrow=escrow.address, chain_id=chain.chain_id,
                                       ledger_path=ledger_path))
        gateway = stack.enter_context(GatewayProcess(config, provider.key, workdir / "gw"))
        yield Stack(chain, escrow, payer, provider, broker, gateway,
                    f"sqlite:///{ledger_path.resolve()}", workdir)


def rows(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [x for x in lines if "i" in x]


def test_purchases_and_budget_limit(stack: Stack) -> None:
    dev, channel = stack.device("budget", 100_000, {"deposit": 100_000, "budget": 4000})
    rc, lines, err = dev.buy(3)
    assert [x["error"] for x in rows(lines)] == [None, None, "BudgetExhausted"], err
    assert all(x["receipt_verified"] for x in rows(lines)[:2])
    assert lines[-1]["spent"] == 3000 <= 4000
    assert stack.accepted(channel) == 3000


def test_gateway_overdraft_is_budget_exhausted(stack: Stack) -> None:
    # the owner's policy claims more deposit than the channel holds: the gateway stops it
    dev, channel = stack.device("overdraft", 3000, {"deposit": 10**6, "budget": 10**6})
    rc, lines, _ = dev.buy(3)
    assert [x["error"] for x in rows(lines)] == [None, None, "BudgetExhausted"]
    assert stack.accepted(channel) == 3000


def test_broker_restart_mid_flight_loses_and_doubles_nothing(stack: Stack) -> None:
    dev, channel = stack.device("restart", 100_000, {"deposit": 100_000, "budget": 100_000})
    proc = dev.popen("--buy", "weather", "--count", "6", "--interval-ms", "200")
    lines: list[dict[str, Any]] = []
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            lines.append(json.loads(raw))
            if len(lines) == 2:
                stack.broker.restart()
            if lines[-1].get("summary"):
                break
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [x["ok"] for x in rows(lines)] == [True] * 6, lines
    assert lines[-1]["cumulative"] == 6 * PRICE
    deadline = time.monotonic() + 10
    while stack.accepted(channel) != 6 * PRICE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stack.accepted(channel) == 6 * PRICE


def test_device_that_lost_its_state_resyncs(stack: Stack) -> None:
    dev, channel = stack.device("resync", 100_000, {"deposit": 100_000, "budget": 100_000})
    assert dev.buy(3)[0] == 0
    shutil.rmtree(dev.folder / "state")
    rc, lines, err = dev.buy(2)
    assert rc == 0, err
    assert [x["cumulative"] for x in rows(lines)] == [4 * PRICE, 5 * PRICE]
    assert lines[-1]["spent"] == 5 * PRICE
    assert stack.accepted(channel) == 5 * PRICE
