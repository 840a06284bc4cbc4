"""``nanotoll channel ...`` end to end on anvil: the commands an owner types, their JSON, the
gateway's unredeemed column from its ledger, and errors printed without a traceback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from nanotoll.chain import EscrowClient
from nanotoll.cli import main
from nanotoll.ledger import open_ledger
from nanotoll.owner.payer import KEYSTORE_PASSWORD_ENV, PAYER_KEY_ENV
from nanotoll.protocol.signing import address_of
from nanotoll.servers.anvil import Anvil
from nanotoll.servers.gateway import gateway_toml


def device(index: int) -> str:
    return address_of(hashlib.sha256(b"nanotoll owner cli device %d" % index).digest())


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


@pytest.fixture
def owner(anvil: Anvil, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    client = EscrowClient.deploy(anvil.w3, anvil.new_account())
    payer, payee = anvil.new_account(), anvil.new_account()
    client.mint(payer, payer.address, 10**12)
    monkeypatch.setenv(PAYER_KEY_ENV, payer.key.hex())
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    config = tmp_path / "gateway.toml"
    config.write_text(gateway_toml(mqtt_port=1883, rpc_url=anvil.rpc_url, escrow=client.address,
                                   chain_id=anvil.chain_id, ledger_url=ledger_url))
    return {"client": client, "payer": payer, "payee": payee, "config": config,
            "ledger": ledger_url, "base": ["--rpc-url", anvil.rpc_url, "--escrow",
                                           client.address]}


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_open_fund_list_and_show_with_the_gateways_ledger(
        owner: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    client, base = owner["client"], owner["base"]
    opened = _json(capsys, ["channel", "open", *base, "--signer", device(0), "--signer",
                            device(1), "--payee", owner["payee"].address, "--token",
                            client.token_address, "--deposit", "1000", "--approve", "--json"])
    assert opened["channels"] == [1, 2] and len(opened["transactions"]) == 1

    assert main(["channel", "top-up", "1-2", *base, "--amount", "500", "--approve",
                 "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["transactions"][0]["channels"] == [1, 2]
    assert captured.err == "top-up: 2/2 channels\n"

    ledger = open_ledger(owner["ledger"])
    try:
        ledger.accept(1, 300, bytes(76), bytes(32), b"", 300)
    finally:
        ledger.close()
    rows = _json(capsys, ["channel", "list", "--gateway-config", str(owner["config"]),
                          "--json"])
    assert [(r["channel_id"], r["deposit"], r["paid"], r["accepted"], r["unredeemed"],
             r["state"]) for r in rows] == [(1, 1500, 0, 300, 300, "open"),
                                            (2, 1500, 0, 0, 0, "open")]
    shown = _json(capsys, ["channel", "show", "2", *base, "--json"])
    assert shown["deposit"] == 1500 and shown["unredeemed"] is None
    assert shown["payer"] == owner["payer"].address and shown["signer"] == device(1)

    assert main(["channel", "list", *base, "--payer", owner["payee"].address]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 1 and table[0].split()[:2] == ["channel", "state"]

    later = client.channel(1).expiry + 86_400
    extended = _json(capsys, ["channel", "extend", "1,2", *base, "--expiry", str(later),
                              "--json"])
    assert extended["expiry"] == later and client.channel(2).expiry == later


def test_errors_say_which_and_what_to_do(owner: dict[str, Any], anvil: Anvil, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    base = owner["base"]
    assert "channel 9 does not exist" in _error(capsys, ["channel", "show", "9", *base])
    assert "channel 9 does not exist" in _error(
        capsys, ["channel", "top-up", "9", *base, "--amount", "1"])
    keystore = tmp_path / "payer.json"
    keystore.write_text(json.dumps(Account.encrypt(owner["payer"].key, "right",
                                                   kdf="pbkdf2", iterations=2)))
    monkeypatch.setenv(KEYSTORE_PASSWORD_ENV, "wrong")
    assert "wrong password" in _error(capsys, ["channel", "reclaim", "1", *base,
                                               "--keystore", str(keystore)])
    monkeypatch.delenv(PAYER_KEY_ENV)
    assert "--keystore FILE" in _error(capsys, ["channel", "reclaim", "1", *base])
    assert "which escrow?" in _error(capsys, ["channel", "list"])
    assert "no contract at" in _error(capsys, ["channel", "list", "--rpc-url", anvil.rpc_url,
                                               "--escrow", owner["payee"].address])
    assert "cannot reach the node" in _error(capsys, ["channel", "list", "--rpc-url",
                                                      "http://127.0.0.1:9", "--escrow",
                                                      owner["payee"].address])


def test_open_a_fleet_from_a_file_and_reclaim_it(owner: dict[str, Any], anvil: Anvil,
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    client, base = owner["client"], owner["base"]
    signers = tmp_path / "fleet.txt"
    signers.write_text("# three drones\n" + "\n".join(device(i) for i in range(3)) + "\n")
    opened = _json(capsys, ["channel", "open", *base, "--signers-file", str(signers),
                            "--payee", owner["payee"].address, "--token",
                            client.token_address, "--deposit", "700", "--lifetime", "3600",
                            "--approve", "--json"])
    assert opened["channels"] == [1, 2, 3]
    assert [client.channel(i).signer for i in (1, 2, 3)] == [device(i) for i in range(3)]
    assert "expires at" in _error(capsys, ["channel", "reclaim", "1-3", *base])
    anvil.increase_time(3700)
    before = client.balance_of(owner["payer"].address)
    reclaimed = _json(capsys, ["channel", "reclaim", "1-3", *base, "--json"])
    assert len(reclaimed["transactions"]) == 3
    assert client.balance_of(owner["payer"].address) - before == 3 * 700
    rows = _json(capsys, ["channel", "list", *base, "--payer", owner["payer"].address,
                          "--json"])
    assert [row["state"] for row in rows] == ["reclaimed"] * 3
