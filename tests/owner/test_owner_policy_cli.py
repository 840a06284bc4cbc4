"""``nanotoll device policy set | show`` on anvil and mosquitto: the policy made from the
channel on chain, signed by its payer, retained on the device's topic, read back and
verified; a key that is not the payer's and contradictory limits refused before
anything is published."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from nanotoll.chain import EscrowClient
from nanotoll.cli import main
from nanotoll.owner import funding
from nanotoll.owner.payer import PAYER_KEY_ENV
from nanotoll.owner.policy import BrokerAccess, read_retained
from nanotoll.protocol.eip712 import domain_separator
from nanotoll.protocol.policy import decode_policy
from nanotoll.protocol.signing import address_of, checksum_address
from nanotoll.protocol.topics import policy_topic
from nanotoll.servers.anvil import Anvil
from nanotoll.servers.mosquitto import Mosquitto

DEVICE_KEY = hashlib.sha256(b"nanotoll owner policy device").digest()


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Anvil, Mosquitto]]:
    with Anvil() as node, Mosquitto(workdir=tmp_path_factory.mktemp("broker"),
                                         secure=False) as broker:
        yield node, broker


@pytest.fixture
def channel(services: tuple[Anvil, Mosquitto], monkeypatch: pytest.MonkeyPatch
            ) -> dict[str, Any]:
    anvil, broker = services
    client = EscrowClient.deploy(anvil.w3, anvil.new_account())
    payer, payee = anvil.new_account(), anvil.new_account()
    client.mint(payer, payer.address, 10**9)
    ids, _ = funding.open_channels(client, payer, [address_of(DEVICE_KEY)], payee.address,
                                   50_000, funding.chain_time(client) + 86_400, approve=True)
    monkeypatch.setenv(PAYER_KEY_ENV, payer.key.hex())
    return {"client": client, "payer": payer, "payee": payee, "id": ids[0],
            "base": ["--rpc-url", anvil.rpc_url, "--escrow", client.address, "--broker",
                     f"127.0.0.1:{broker.port}"],
            "access": BrokerAccess("127.0.0.1", broker.port),
            "topic": policy_topic(payee.address[2:].lower(), address_of(DEVICE_KEY)[2:].lower())}


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_set_publishes_a_signed_retained_policy_and_show_reads_it(
        channel: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    base, cid = channel["base"], str(channel["id"])
    assert "no policy is retained" in _error(capsys, ["device", "policy", "show", cid, *base])
    made = _json(capsys, ["device", "policy", "set", cid, *base, "--budget", "20000",
                          "--per-minute", "6", "--product-cap", "weather=9000", "--json"])
    assert (made["seq"], made["budget"], made["deposit"]) == (1, 20000, 50_000)
    assert made["signed_by_owner"] and made["signer"] == channel["payer"].address
    assert made["product_caps"] == {"weather": 9000} and made["topic"] == channel["topic"]

    retained = read_retained(channel["access"], channel["topic"])
    assert retained is not None
    signed = decode_policy(retained)
    client = channel["client"]
    separator = domain_separator(int(client.w3.eth.chain_id), client.address)
    assert checksum_address(signed.signer(separator)) == channel["payer"].address
    assert signed.policy.expiry == client.channel(channel["id"]).expiry

    # The next one goes one seq above the retained one, with the deposit after a top-up.
    funding.top_up(client, channel["payer"], [channel["id"]], 10_000, approve=True)
    again = _json(capsys, ["device", "policy", "set", cid, *base, "--json"])
    assert (again["seq"], again["deposit"], again["budget"]) == (2, 60_000, 60_000)
    shown = _json(capsys, ["device", "policy", "show", cid, *base, "--json"])
    assert shown == again


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_refusals_publish_nothing(channel: dict[str, Any], services: tuple[Anvil, Mosquitto],
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    base, cid = channel["base"], str(channel["id"])
    assert "budget 50001 is above the deposit 50000" in _error(
        capsys, ["device", "policy", "set", cid, *base, "--budget", "50001"])
    assert "not KEY=UNITS" in _error(
        capsys, ["device", "policy", "set", cid, *base, "--product-cap", "weather"])
    stranger = services[0].new_account()
    monkeypatch.setenv(PAYER_KEY_ENV, stranger.key.hex())
    assert "applies only policies its owner signed" in _error(
        capsys, ["device", "policy", "set", cid, *base])
    assert "channel 99 does not exist" in _error(capsys, ["device", "policy", "set", "99", *base])
    assert read_retained(channel["access"], channel["topic"]) is None
    assert "cannot reach the broker" in _error(
        capsys, ["device", "policy", "show", cid, *base[:4], "--broker", "127.0.0.1:9"])
