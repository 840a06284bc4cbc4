"""``nanotoll device policy set | show`` on anvil and the secure mosquitto (TLS, the
owner's own client made by ``nanotoll broker owner``, the device's policy topic granted
as provisioning grants it): the policy made from the channel on chain, signed by its
payer, retained on the device's topic, read back and verified; a key that is not the
payer's and contradictory limits refused before anything is published; a login or a
read the broker refuses named as such."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from nanotoll.broker.clients import grant_owner
from nanotoll.chain import EscrowClient
from nanotoll.cli import main
from nanotoll.owner import funding
from nanotoll.owner.cli import BROKER_PASSWORD_ENV
from nanotoll.owner.payer import PAYER_KEY_ENV
from nanotoll.owner.policy import BrokerAccess, read_retained
from nanotoll.protocol.eip712 import domain_separator
from nanotoll.protocol.policy import decode_policy
from nanotoll.protocol.signing import address_of, checksum_address
from nanotoll.protocol.topics import policy_topic
from nanotoll.servers.anvil import Anvil
from nanotoll.servers.mosquitto import Mosquitto
from support.tools import require

DEVICE_KEY = hashlib.sha256(b"nanotoll owner policy device").digest()


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Anvil, Mosquitto]]:
    require("mosquitto")
    with Anvil() as node, Mosquitto(workdir=tmp_path_factory.mktemp("broker"),
                                    secure=True) as broker:
        yield node, broker


def _owner_client(broker: Mosquitto, owner: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The owner's broker client made by the command an operator runs; its password."""
    assert broker.site is not None
    assert main(["broker", "owner", str(broker.site.root), owner, "--json"]) == 0
    return str(json.loads(capsys.readouterr().out)["password"])


@pytest.fixture
def channel(services: tuple[Anvil, Mosquitto], monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    anvil, broker = services
    client = EscrowClient.deploy(anvil.w3, anvil.new_account())
    payer, payee = anvil.new_account(), anvil.new_account()
    client.mint(payer, payer.address, 10**9)
    ids, _ = funding.open_channels(client, payer, [address_of(DEVICE_KEY)], payee.address,
                                   50_000, funding.chain_time(client) + 86_400, approve=True)
    owner, provider = payer.address[2:].lower(), payee.address[2:].lower()
    device = address_of(DEVICE_KEY)[2:].lower()
    password = _owner_client(broker, payer.address, capsys)
    with broker.admin() as admin:
        grant_owner(admin, owner, provider, device)  # as `device provision` does
    monkeypatch.setenv(PAYER_KEY_ENV, payer.key.hex())
    monkeypatch.setenv(BROKER_PASSWORD_ENV, password)
    return {"client": client, "payer": payer, "payee": payee, "id": ids[0],
            "base": ["--rpc-url", anvil.rpc_url, "--escrow", client.address, "--broker",
                     f"{broker.host}:{broker.port}", "--broker-ca", str(broker.ca_file)],
            "access": BrokerAccess(broker.host, broker.port, owner, password,
                                   str(broker.ca_file)),
            "topic": policy_topic(provider, device)}


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
        capsys, ["device", "policy", "show", cid, *base[:4], "--broker", "127.0.0.1:9",
                 *base[6:]])


def test_a_refused_login_or_read_is_named(channel: dict[str, Any],
                                         services: tuple[Anvil, Mosquitto],
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    base, cid = channel["base"], str(channel["id"])
    monkeypatch.setenv(BROKER_PASSWORD_ENV, "not the owner's password")
    assert "refused the login" in _error(capsys, ["device", "policy", "show", cid, *base])
    # Another owner's client logs in but may not read this device's policy.
    stranger = services[0].new_account()
    monkeypatch.setenv(BROKER_PASSWORD_ENV, _owner_client(services[1], stranger.address,
                                                          capsys))
    assert f"does not let {stranger.address[2:].lower()} read {channel['topic']}" in _error(
        capsys, ["device", "policy", "show", cid, *base, "--broker-user",
                 stranger.address[2:].lower()])
