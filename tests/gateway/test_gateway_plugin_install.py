"""The example plugin package (examples/metar-nowcast) installed into a fresh virtual
environment, offline, and sold end to end: its own tests pass there, the gateway run from
that environment finds it through its entry point, and a device on MicroPython's unix
port buys its data through mosquitto, paid on a channel of the escrow on anvil."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from support.agent_helpers import Device, micropython
from support.paths import ROOT
from support.tools import require

EXAMPLE = ROOT / "examples" / "metar-nowcast"
BERLIN = {"lat": 52_520_008, "lon": 13_404_954}
PRICE = 900


def fresh_venv(folder: Path) -> Path:
    """A new environment that sees this one's packages (nanotoll and its dependencies,
    pytest, setuptools and wheel to build with) through a .pth file, so nothing is
    fetched; returns its python."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(folder)], check=True, capture_output=True,
                   timeout=120)
    python = folder / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site, "nanotoll-env.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return python


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("plugin-venv")
    source = workdir / "metar-nowcast"  # the build writes beside the sources: a copy
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    python = fresh_venv(workdir / "venv")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation",
         "--no-deps", str(source)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python


def test_the_plugin_installs_and_its_own_tests_pass_there(venv: Path) -> None:
    where = subprocess.run([str(venv), "-c", "import nanotoll_metar as m; print(m.__file__)"],
                           capture_output=True, text=True, check=True).stdout
    assert "site-packages" in where  # the installed copy, not the sources
    found = subprocess.run(
        [str(venv), "-c", "from nanotoll.gateway.serve.loader import find_plugin; "
         "print(find_plugin('metar').__name__)"], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "MetarNowcast"
    tests = subprocess.run([str(venv), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(EXAMPLE / "tests")], capture_output=True, text=True,
                           timeout=300, cwd=EXAMPLE)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout


@pytest.fixture(scope="module")
def stack(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    micropython()
    require("mosquitto")
    require("anvil")
    from eth_account import Account
    from nanotoll.chain.client import EscrowClient
    from nanotoll.servers.anvil import Anvil
    from nanotoll.servers.gateway import DEFAULT_PRODUCTS, GatewayProcess, gateway_toml
    from nanotoll.servers.mosquitto import Mosquitto

    workdir = tmp_path_factory.mktemp("plugin-e2e")
    with contextlib.ExitStack() as stack:
        chain = stack.enter_context(Anvil(workdir=workdir / "anvil"))
        deployer, payer = chain.new_account(), chain.new_account()
        provider = Account.create()
        escrow = EscrowClient.deploy(chain.w3, deployer)
        broker = stack.enter_context(Mosquitto(workdir=workdir / "broker", secure=False))
        ledger_path = workdir / "ledger.db"
        config = workdir / "gateway.toml"
        text = gateway_toml(mqtt_port=broker.port, rpc_url=chain.rpc_url,
                            escrow=escrow.address, chain_id=chain.chain_id,
                            ledger_path=ledger_path, products=DEFAULT_PRODUCTS[:1])
        config.write_text(text + '[[catalog.products]]\nname = "metar"\nkind = "metar"\n')
        stack.enter_context(GatewayProcess(config, provider.key, workdir / "gw",
                                           python=str(venv)))
        yield {"chain": chain, "escrow": escrow, "payer": payer, "provider": provider,
               "broker": broker, "ledger": ledger_path, "workdir": workdir}


def test_a_device_buys_the_plugins_data(stack: dict[str, Any]) -> None:
    from nanotoll.ledger import open_ledger
    from nanotoll.protocol.messages import decode_response

    chain, escrow, payer = stack["chain"], stack["escrow"], stack["payer"]
    dev = Device(stack["workdir"] / "device", stack["broker"].port,
                 policy={"deposit": 100_000, "budget": 100_000},
                 chain_id=chain.chain_id, escrow=escrow.address,
                 provider=stack["provider"].address, timeout_ms=10000)
    (dev.folder / "device.key").unlink()
    rc, lines, err = dev.run("--init-key")
    assert rc == 0, err
    escrow.mint(payer, payer.address, 100_000)
    expiry = int(chain.w3.eth.get_block("latest")["timestamp"]) + 7 * 86400
    channel, _ = escrow.open_channel(payer, lines[0]["address"], stack["provider"].address,
                                     100_000, expiry)
    config = json.loads(dev.config.read_text())
    config["channel"] = channel
    dev.config.write_text(json.dumps(config))

    rc, lines, err = dev.buy(2, "metar", "--params", json.dumps(BERLIN))
    purchases = [line for line in lines if "i" in line]
    assert [line["ok"] for line in purchases] == [True, True], (lines, err)
    assert all(line["receipt_verified"] and line["price"] == PRICE for line in purchases)

    ledger = open_ledger(f"sqlite:///{stack['ledger']}")
    try:
        record = ledger.lookup(channel)
    finally:
        ledger.close()
    assert record is not None and record.cumulative == 2 * PRICE
    served = cbor2.loads(decode_response(record.response).data)
    assert served["station"] == "EDDB" and served["raw"].startswith("EDDB ")
