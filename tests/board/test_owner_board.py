"""The owner's commands against the emulated board (QEMU mps2-an385, flashed and
provisioned with the real CLI, on the secure broker): the board spends the budget it was
provisioned with; the owner tops up, extends and publishes a signed policy with its own
broker client (`nanotoll broker owner`), read back and shown; the board, run again
untouched, applies it and buys more; `nanotoll device log` reads its purchase log over
the REPL and every receipt verifies; after settlement `channel show` agrees with chain
and ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import paths as _paths
from support.tools import require

ROOT = _paths.ROOT
PRICE = 1500  # weather, gateway_toml's default catalog
DEPOSIT = 2 * PRICE

pytestmark = pytest.mark.e2e


def nanotoll(*args: str, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "gateway"), environ.get("PYTHONPATH")) if p)
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "nanotoll.cli", *args], env=environ,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


@dataclass
class Board:
    anvil: Any
    escrow: Any
    owner: Any
    provider: Any
    broker: Any
    gateway: Any
    config: Path
    sim: Any

    def env(self) -> dict[str, str]:
        return {"NANOTOLL_OWNER_KEY": self.owner.key.hex()}

    def chain_args(self) -> list[str]:
        return ["--gateway-config", str(self.config)]

    def broker_args(self) -> list[str]:
        return ["--broker", f"{self.broker.host}:{self.broker.port}",
                "--broker-ca", str(self.broker.ca_file)]


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    require("qemu-board")
    import contextlib

    from eth_account import Account
    from nanotoll.broker.site import gateway_username
    from nanotoll.chain.client import EscrowClient
    from nanotoll.device.sim import BoardSim
    from nanotoll.servers.anvil import Anvil
    from nanotoll.servers.gateway import GatewayProcess, gateway_toml
    from nanotoll.servers.mosquitto import Mosquitto

    workdir = tmp_path_factory.mktemp("owner-board")
    with contextlib.ExitStack() as es:
        anvil = es.enter_context(Anvil(workdir=workdir / "anvil"))
        deployer, owner = anvil.new_account(), anvil.new_account()
        provider = Account.create()
        anvil.set_balance(provider.address, 10 * 10**18)
        escrow = EscrowClient.deploy(anvil.w3, deployer)
        escrow.mint(deployer, owner.address, 10**9)
        # The secure broker, as an operator runs it: the board's UART bridge makes the TLS
        # connection for it, provisioning enrols it and grants the owner its policy topic.
        provider_hex = provider.address[2:].lower()
        broker = es.enter_context(Mosquitto(workdir=workdir / "broker", secure=True,
                                            providers=[provider_hex]))
        assert broker.site is not None and broker.ca_file is not None
        config = workdir / "gateway.toml"
        config.write_text(gateway_toml(
            mqtt_port=broker.port, rpc_url=anvil.rpc_url, escrow=escrow.address,
            chain_id=anvil.chain_id, ledger_path=workdir / "ledger.db",
            extra={"chain": {"poll_interval": 0.1},
                   "settlement": {"threshold": 1, "interval": 1, "check_every": 0.5},
                   "mqtt": {"ca_file": str(broker.ca_file),
                            "username": gateway_username(provider_hex),
                            "password_file": str(broker.site.gateway_password_file(
                                provider_hex))}}))
        gateway = es.enter_context(GatewayProcess(config, provider.key, workdir / "gateway"))
        sim = es.enter_context(BoardSim(broker.host, broker.port, ca_file=broker.ca_file,
                                        log_path=workdir / "qemu.log"))
        yield Board(anvil, escrow, owner, provider, broker, gateway, config, sim)


def _buy(b: Board, count: int) -> list[dict[str, Any]]:
    result = nanotoll("device", "buy", "--port", b.sim.pty, "--product", "weather",
                      "--count", str(count))
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_owner_gives_the_board_more_budget_and_reads_its_log(board: Board) -> None:
    flashed = nanotoll("device", "flash", "--port", board.sim.pty, "--board", "qemu_mps2")
    assert flashed.returncode == 0, flashed.stdout + flashed.stderr
    made = nanotoll("device", "provision", "--port", board.sim.pty, "--board", "qemu_mps2",
                    "--rpc-url", board.anvil.rpc_url, "--escrow", board.escrow.address,
                    "--token", board.escrow.token_address, "--provider",
                    board.provider.address, "--deposit", str(DEPOSIT), "--broker",
                    f"{board.broker.host}:{board.broker.port}", "--broker-folder",
                    str(board.broker.site.root), "--json", env=board.env())
    assert made.returncode == 0, made.stdout + made.stderr
    channel = str(json.loads(made.stdout.strip().splitlines()[-1])["channel"])

    lines = _buy(board, 3)
    assert [x.get("ok") for x in lines] == [True, True, False], lines
    assert lines[2]["error"] == "BudgetExhausted"

    top = nanotoll("channel", "top-up", channel, *board.chain_args(), "--amount",
                   str(2 * PRICE), "--approve", env=board.env())
    assert top.returncode == 0, top.stderr
    ext = nanotoll("channel", "extend", channel, *board.chain_args(), "--lifetime",
                   str(30 * 86_400), env=board.env())
    assert ext.returncode == 0, ext.stderr
    # The owner's broker client, made by the operator; `set` reads the policy back with it.
    client = nanotoll("broker", "owner", str(board.broker.site.root), board.owner.address,
                      "--json")
    assert client.returncode == 0, client.stderr
    owner_env = {**board.env(),
                 "NANOTOLL_BROKER_PASSWORD": json.loads(client.stdout)["password"]}
    policy = nanotoll("device", "policy", "set", channel, *board.chain_args(),
                      *board.broker_args(), "--json", env=owner_env)
    assert policy.returncode == 0, policy.stderr
    made = json.loads(policy.stdout.strip().splitlines()[-1])
    assert made["budget"] == 4 * PRICE and made["signed_by_owner"]
    shown = nanotoll("device", "policy", "show", channel, *board.chain_args(),
                     *board.broker_args(), "--json", env=owner_env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout.strip().splitlines()[-1]) == made

    lines = _buy(board, 2)
    assert [x.get("ok") for x in lines] == [True, True], lines
    assert lines[-1]["cumulative"] == 4 * PRICE

    log = nanotoll("device", "log", "--port", board.sim.pty)
    assert log.returncode == 0, log.stdout + log.stderr
    document = json.loads(log.stdout.strip().splitlines()[-1])
    assert document["torn"] == 0 and document["entries"] == 64
    assert [(p["cumulative"], p["verified"]) for p in document["purchases"]] == [
        (PRICE * n, True) for n in range(1, 5)]
    csv_text = nanotoll("device", "log", "--port", board.sim.pty, "--format", "csv").stdout
    assert len(csv_text.strip().splitlines()) == 5

    import time

    deadline = time.monotonic() + 30
    while board.escrow.channel(int(channel)).paid != 4 * PRICE and time.monotonic() < deadline:
        time.sleep(0.3)
    shown = nanotoll("channel", "show", channel, *board.chain_args(), "--json")
    row = json.loads(shown.stdout.strip().splitlines()[-1])
    assert (row["deposit"], row["paid"], row["accepted"], row["unredeemed"]) == (
        4 * PRICE, 4 * PRICE, 4 * PRICE, 0), row
