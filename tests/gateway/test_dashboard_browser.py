"""The operator's dashboard in a real browser: Debian's chromium, headless, driven by
playwright-core. A device on MicroPython's unix port buys through mosquitto and two real
gateway processes sharing one ledger (escrow on anvil); the page, opened with the
listener's login, updates live and shows the ledger's numbers, and each process's API its
own share of the requests. Without the login the listener answers 401. Screenshots go to
the test's temporary folder."""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.agent_helpers import Device, micropython
from support.paths import ROOT
from support.tools import require

USER, PASSWORD = "operator", "correct horse battery"
PURCHASES = 3


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
    from nanotoll.servers.process import free_port

    workdir = tmp_path_factory.mktemp("dashboard")
    with contextlib.ExitStack() as stack:
        chain = stack.enter_context(Anvil(workdir=workdir / "anvil"))
        deployer, payer = chain.new_account(), chain.new_account()
        provider = Account.create()
        escrow = EscrowClient.deploy(chain.w3, deployer)
        broker = stack.enter_context(Mosquitto(workdir=workdir / "broker", secure=False))
        secret = workdir / "web.password"
        secret.write_text(PASSWORD + "\n")
        ports = []
        for name in ("gw-a", "gw-b"):  # two processes on one ledger, one client id each
            port = free_port()
            config = workdir / f"{name}.toml"
            config.write_text(gateway_toml(
                mqtt_port=broker.port, rpc_url=chain.rpc_url, escrow=escrow.address,
                chain_id=chain.chain_id, ledger_path=workdir / "ledger.db", client_id=name,
                extra={"metrics": {"port": port, "username": USER,
                                   "password_file": str(secret)}}))
            stack.enter_context(GatewayProcess(config, provider.key, workdir / name))
            ports.append(port)
        yield {"chain": chain, "escrow": escrow, "payer": payer, "provider": provider,
               "broker": broker, "url": f"http://127.0.0.1:{ports[0]}/dashboard",
               "apis": [f"http://127.0.0.1:{port}/api/dashboard" for port in ports],
               "workdir": workdir, "ledger": workdir / "ledger.db"}


def buy(stack: dict[str, Any], count: int) -> None:
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
    rc, lines, err = dev.buy(count)
    assert rc == 0 and sum(1 for x in lines if "i" in x and x["ok"]) == count, (lines, err)


def ledger_totals(path: Path) -> dict[str, int]:
    from nanotoll.ledger import open_ledger

    ledger = open_ledger(f"sqlite:///{path}")
    try:
        return ledger.totals()
    finally:
        ledger.close()


def get(url: str) -> Any:
    request = urllib.request.Request(url)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def status_of(url: str, login: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if login is not None:
        token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_without_the_login_every_path_is_401(stack: dict[str, Any]) -> None:
    base = stack["url"].rsplit("/", 1)[0]
    for path in ("/dashboard", "/api/dashboard", "/dashboard/app.js", "/metrics"):
        assert status_of(base + path) == 401
        assert status_of(base + path, (USER, "wrong")) == 401
        assert status_of(base + path, (USER, PASSWORD)) == 200


@pytest.fixture(scope="module")
def bought(stack: dict[str, Any]) -> dict[str, int]:
    """The ledger's totals after the device's purchases."""
    buy(stack, PURCHASES)
    totals = ledger_totals(stack["ledger"])
    assert totals["purchases"] == PURCHASES
    return totals


def test_each_process_shows_the_shared_ledger_and_its_own_requests(
        stack: dict[str, Any], bought: dict[str, int]) -> None:
    documents = []
    for url in stack["apis"]:  # the ledger's part may be up to 2 s old: wait it out
        deadline = time.monotonic() + 10
        while (document := get(url))["ledger"]["totals"] != bought:
            assert time.monotonic() < deadline, document["ledger"]
            time.sleep(0.5)
        documents.append(document)
    mine = [d["process"]["totals"] for d in documents]
    assert sum(t["purchases"] for t in mine) == PURCHASES  # together, all of them
    assert sum(t["revenue"] for t in mine) == bought["accepted"]
    assert {d["process"]["client_id"] for d in documents} == {"gw-a", "gw-b"}
    assert all(d["health"]["ledger"]["ok"] and d["health"]["broker"]["ok"]
               and d["health"]["chain"]["ok"] for d in documents)
    assert [p["name"] for p in documents[0]["process"]["products"]] == ["weather", "nav",
                                                                        "route"]


def test_the_page_shows_the_ledger_live(stack: dict[str, Any], bought: dict[str, int],
                                        tmp_path: Path) -> None:
    require("chromium")
    totals = bought
    # three updates a second apart, then one more: past the ledger part's 2 s refresh
    done = subprocess.run(["node", str(ROOT / "tests" / "js" / "dashboard_page.mjs"),
                           stack["url"], USER, PASSWORD, str(tmp_path), "3"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout.strip().splitlines()[-1])
    assert shown["failed"] == [], shown["failed"]  # nothing refused, nothing from outside
    assert shown["ledger-accepted"] == f"{totals['accepted']:,}"
    assert shown["ledger-unredeemed"] == f"{totals['unredeemed']:,}"
    mine = get(stack["apis"][0])["process"]["totals"]  # the page is the first process's
    assert shown["purchases"] == str(mine["purchases"])
    assert shown["revenue"] == f"{mine['revenue']:,}"
    assert shown["channels"] == 1  # the device's channel, unredeemed
    assert shown["charts"] == 2  # uPlot drew both plots
    assert any(row.startswith("weather") for row in shown["products"])
    assert sorted(shown["health"]) == ["broker up", "chain up", "ledger up"]
    for name in ("dashboard-first.png", "dashboard.png"):
        assert (tmp_path / name).stat().st_size > 10_000
