"""Issue 15 end to end: a device (the firmware on MicroPython's unix port) spends its
budget in flight; its owner tops up and extends the channel on-chain and publishes a new
signed policy, all with the nanotoll commands; the running device applies the policy and
buys again without being touched. The gateway settles, and ``channel show`` agrees with
the chain and the gateway's ledger; the device's purchase log verifies offline."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from nanotoll.cli import main
from nanotoll.device.purchases import RECORD, purchases
from nanotoll.owner import funding
from nanotoll.owner.payer import PAYER_KEY_ENV
from support.agent_helpers import Device, micropython
from support.tools import require

PRICE = 1500  # weather in the gateway's default catalog
FIRST = 3 * PRICE  # the provisioned budget and deposit
MORE = 6 * PRICE  # the owner's top-up


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

    workdir = tmp_path_factory.mktemp("in-flight")
    with contextlib.ExitStack() as stack:
        chain = stack.enter_context(Anvil(workdir=workdir / "anvil"))
        payer = chain.new_account()
        provider = Account.create()
        chain.set_balance(provider.address, 10 * 10**18)
        escrow = EscrowClient.deploy(chain.w3, chain.new_account())
        escrow.mint(payer, payer.address, 10**9)
        broker = stack.enter_context(Mosquitto(workdir=workdir / "broker", secure=False))
        config = workdir / "gateway.toml"
        # Settle every accepted voucher within a fraction of a second.
        config.write_text(gateway_toml(
            mqtt_port=broker.port, rpc_url=chain.rpc_url, escrow=escrow.address,
            chain_id=chain.chain_id, ledger_path=workdir / "ledger.db",
            extra={"settlement": {"threshold": 1, "interval": 1, "check_every": 0.2}}))
        stack.enter_context(GatewayProcess(config, provider.key, workdir / "gw"))
        yield {"chain": chain, "escrow": escrow, "payer": payer, "provider": provider,
               "broker": broker, "config": config, "workdir": workdir}


def _owner(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_owner_tops_up_a_device_in_flight(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    escrow, payer, chain = stack["escrow"], stack["payer"], stack["chain"]
    monkeypatch.setenv(PAYER_KEY_ENV, payer.key.hex())
    dev = Device(stack["workdir"] / "drone", stack["broker"].port,
                 policy={"deposit": FIRST, "budget": FIRST}, chain_id=chain.chain_id,
                 escrow=escrow.address, provider=stack["provider"].address, timeout_ms=10000,
                 owner=payer.address, purchase_log=16)
    (dev.folder / "device.key").unlink()
    rc, lines, err = dev.run("--init-key")
    assert rc == 0, err
    ids, _ = funding.open_channels(escrow, payer, [lines[0]["address"]],
                                   stack["provider"].address, FIRST,
                                   funding.chain_time(escrow) + 86_400, approve=True)
    channel = ids[0]
    config = json.loads(dev.config.read_text())
    config["channel"] = channel
    dev.config.write_text(json.dumps(config))
    owner = ["--gateway-config", str(stack["config"])]

    proc = dev.popen("--buy", "weather", "--count", "40", "--interval-ms", "300", "--verbose")
    rows: list[dict[str, Any]] = []
    topped = False
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            line = json.loads(raw)
            if line.get("summary"):
                rows.append(line)
                break
            rows.append(line)
            if not topped and line.get("error") == "BudgetExhausted":
                topped = True  # out of budget in flight: the owner acts, the device runs on
                _owner(["channel", "top-up", str(channel), *owner, "--amount", str(MORE),
                        "--approve", "--json"], capsys)
                _owner(["channel", "extend", str(channel), *owner, "--lifetime",
                        str(14 * 86_400), "--json"], capsys)
                made = _owner(["device", "policy", "set", str(channel), *owner, "--broker",
                               f"127.0.0.1:{stack['broker'].port}", "--json"], capsys)
                assert (made["seq"], made["budget"]) == (1, FIRST + MORE)
            if sum(1 for r in rows if r.get("ok")) == 9:
                proc.terminate()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    oks = [r for r in rows if r.get("ok")]
    first_error = next(i for i, r in enumerate(rows) if r.get("error"))
    assert [r["ok"] for r in rows[:first_error]] == [True] * 3, rows
    assert len(oks) == 9 and all(r["receipt_verified"] for r in oks), rows
    assert {r["error"] for r in rows if r.get("error")} == {"BudgetExhausted"}, rows
    assert oks[-1]["cumulative"] == FIRST + MORE
    assert "agent: policy seq 1 applied" in stderr, stderr[-2000:]

    # Settlement pays the provider everything; channel show agrees with chain and ledger.
    deadline = time.monotonic() + 30
    while escrow.channel(channel).paid != FIRST + MORE and time.monotonic() < deadline:
        time.sleep(0.2)
    state = escrow.channel(channel)
    assert state.paid == FIRST + MORE == state.deposit
    assert escrow.balance_of(stack["provider"].address) == FIRST + MORE
    shown = _owner(["channel", "show", str(channel), *owner, "--json"], capsys)
    assert (shown["deposit"], shown["paid"], shown["accepted"], shown["unredeemed"],
            shown["expiry"], shown["state"]) == (state.deposit, state.paid, FIRST + MORE, 0,
                                                 state.expiry, "open")

    # The device's purchase log: nine purchases, each receipt verified offline.
    raw = (dev.folder / "state" / "purchases.log").read_bytes()
    logged, torn = purchases({
        "chain_id": chain.chain_id, "escrow": escrow.address, "channel": channel,
        "provider": stack["provider"].address, "entries": 16,
        "records": [raw[i:i + RECORD].hex() for i in range(0, len(raw), RECORD)]})
    assert torn == 0 and len(logged) == 9 and all(p.verified for p in logged)
    assert [p.cumulative for p in logged] == [PRICE * n for n in range(1, 10)]

