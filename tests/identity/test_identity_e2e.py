"""ERC-8004 end to end on anvil and mosquitto: the provider registers (idempotently, the
wallet set with its proof), a payer discovers it from its agent reference, a device on
MicroPython's unix port buys, the gateway settles, the payer rates the provider with the
redeem that paid it, and ``provider show`` reports it. Then every refusal: an
unregistered id, a file naming another escrow, a wallet that does not sign the catalog,
a malformed, unreachable or non-http file, and feedback without a payment behind it;
each before anything is written or sent.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nanotoll.cli import main
from nanotoll.identity.discovery import discover, discover_at
from nanotoll.identity.errors import IdentityError
from nanotoll.identity.reference import parse_agent_reference
from nanotoll.identity.registration import WELL_KNOWN_PATH, parse_registration
from nanotoll.identity.registry import (
    IdentityRegistryClient,
    ReputationRegistryClient,
    deploy_registries,
)
from nanotoll.protocol.topics import catalog_topic, registration_topic
from support.agent_helpers import Device, micropython
from support.tools import require

PRICE = 1500  # weather in the gateway's default catalog
DEPOSIT = 100_000


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    micropython()
    require("mosquitto")
    require("anvil")
    from eth_account import Account
    from nanotoll.chain.client import EscrowClient
    from nanotoll.servers.anvil import Anvil
    from nanotoll.servers.gateway import GatewayProcess, gateway_toml
    from nanotoll.servers.mosquitto import Mosquitto
    from nanotoll.servers.process import free_port

    workdir = tmp_path_factory.mktemp("identity")
    with contextlib.ExitStack() as stack:
        chain = stack.enter_context(Anvil(workdir=workdir / "anvil"))
        deployer, payer, operator = (chain.new_account() for _ in range(3))
        provider = Account.create()
        chain.set_balance(provider.address, 10 * 10**18)
        escrow = EscrowClient.deploy(chain.w3, deployer)
        escrow.mint(payer, payer.address, 10**9)
        registries = deploy_registries(chain.w3, deployer)
        broker = stack.enter_context(Mosquitto(workdir=workdir / "broker", secure=False))
        web_port = free_port()
        config = workdir / "gateway.toml"
        config.write_text(gateway_toml(
            mqtt_port=broker.port, rpc_url=chain.rpc_url, escrow=escrow.address,
            chain_id=chain.chain_id, ledger_path=workdir / "ledger.db",
            extra={"settlement": {"threshold": 1, "interval": 1, "check_every": 0.2},
                   "metrics": {"port": web_port},
                   "identity": {"identity_registry": registries.identity,
                                "reputation_registry": registries.reputation,
                                "name": "test weather", "description": "nowcasts"}}))
        stack.enter_context(GatewayProcess(config, provider.key, workdir / "gw"))
        yield {"chain": chain, "escrow": escrow, "payer": payer, "operator": operator,
               "provider": provider, "registries": registries, "broker": broker,
               "config": config, "web_port": web_port, "workdir": workdir}


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str], rc: int = 0) -> Any:
    assert main(argv) == rc, capsys.readouterr().err
    out = capsys.readouterr().out.strip()
    if rc != 0:
        return out
    return json.loads(out if out.startswith("{") else out.splitlines()[-1])


def _as_operator(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANOTOLL_PROVIDER_KEY", world["provider"].key.hex())
    monkeypatch.setenv("NANOTOLL_AGENT_OWNER_KEY", world["operator"].key.hex())


@pytest.fixture(scope="module")
def agent(world: dict[str, Any]) -> Iterator[str]:
    """The provider's agent reference, registered by the operator's key (the test below
    checks the command's output; this only runs it)."""
    with pytest.MonkeyPatch.context() as patch:
        _as_operator(world, patch)
        assert main(["provider", "register", "--config", str(world["config"]), "--json"]) == 0
    chain, registry = world["chain"], world["registries"].identity
    ids = IdentityRegistryClient(chain.w3, registry).agents_of(world["operator"].address)
    yield f"eip155:{chain.chain_id}:{registry}/{ids[0]}"


def test_register_sets_the_wallet_with_its_proof_and_a_second_run_sends_nothing(
        world: dict[str, Any], agent: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _as_operator(world, monkeypatch)
    ref = parse_agent_reference(agent)
    registry = IdentityRegistryClient(world["chain"].w3, ref.registry)
    assert registry.owner_of(ref.agent_id) == world["operator"].address
    assert registry.agent_wallet(ref.agent_id) == world["provider"].address
    uri = f"http://127.0.0.1:{world['web_port']}{WELL_KNOWN_PATH}"
    assert registry.agent_uri(ref.agent_id) == uri
    nonce = world["chain"].w3.eth.get_transaction_count(world["operator"].address)
    again = _cli(["provider", "register", "--config", str(world["config"]), "--json"], capsys)
    assert again["agent_id"] == ref.agent_id
    assert again["actions"] == [f"agent {ref.agent_id}: URI unchanged ({uri})",
                                f"agent {ref.agent_id}: agentWallet unchanged "
                                f"({world['provider'].address})"]
    assert world["chain"].w3.eth.get_transaction_count(world["operator"].address) == nonce


def test_a_changed_uri_is_updated_and_said(world: dict[str, Any], agent: str,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _as_operator(world, monkeypatch)
    moved = world["workdir"] / "moved.toml"
    text = world["config"].read_text().replace(
        "[identity]\n", '[identity]\nagent_uri = "https://wx.example/agent.json"\n')
    moved.write_text(text)
    ref = parse_agent_reference(agent)
    try:
        out = _cli(["provider", "register", "--config", str(moved), "--json"], capsys)
        assert out["actions"][0].startswith(f"agent {ref.agent_id}: URI updated from http://")
        assert out["actions"][0].endswith("to https://wx.example/agent.json")
    finally:
        _cli(["provider", "register", "--config", str(world["config"]), "--json"], capsys)


def test_the_gateway_serves_its_file_on_the_web_and_retained(world: dict[str, Any],
                                                             agent: str) -> None:
    ref = parse_agent_reference(agent)
    url = f"http://127.0.0.1:{world['web_port']}{WELL_KNOWN_PATH}"
    # The gateway finds its agent id in the registry on its own: no config edit after
    # registering.
    deadline = time.monotonic() + 15
    while True:
        with urllib.request.urlopen(url, timeout=10) as got:
            registration = parse_registration(got.read())
        if registration.registrations or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert registration.registered_as(ref.chain_id, ref.registry) == (ref.agent_id,)
    assert registration.provider == world["provider"].address
    assert registration.escrow == world["escrow"].address
    assert [p.name for p in registration.products] == ["weather", "nav", "route"]
    from nanotoll.identity.retained import BrokerEndpoint, read_retained

    hex_provider = world["provider"].address[2:].lower()
    raw = read_retained(BrokerEndpoint("127.0.0.1", world["broker"].port),
                        registration_topic(hex_provider))
    assert raw is not None
    assert parse_registration(raw).provider == world["provider"].address


def test_discover_buy_settle_feedback_show(world: dict[str, Any], agent: str,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    chain, escrow, payer = world["chain"], world["escrow"], world["payer"]
    found = discover_at(chain.rpc_url, agent, escrow.address)
    assert found.wallet == world["provider"].address
    assert (found.broker.host, found.broker.port) == ("127.0.0.1", world["broker"].port)

    dev = Device(world["workdir"] / "drone", found.broker.port,
                 policy={"deposit": DEPOSIT, "budget": DEPOSIT}, chain_id=chain.chain_id,
                 escrow=escrow.address, provider=found.wallet, timeout_ms=10000)
    (dev.folder / "device.key").unlink()
    rc, lines, err = dev.run("--init-key")
    assert rc == 0, err
    expiry = int(chain.w3.eth.get_block("latest")["timestamp"]) + 7 * 86400
    channel, _ = escrow.open_channel(payer, lines[0]["address"], found.wallet, DEPOSIT, expiry)
    config = json.loads(dev.config.read_text())
    config["channel"] = channel
    dev.config.write_text(json.dumps(config))
    rc, lines, err = dev.buy(3)
    assert rc == 0, err
    assert [x["ok"] for x in lines if "i" in x] == [True] * 3
    deadline = time.monotonic() + 30
    while escrow.channel(channel).paid != 3 * PRICE and time.monotonic() < deadline:
        time.sleep(0.2)
    assert escrow.channel(channel).paid == 3 * PRICE
    redeem = _redeem_paying(world, channel)

    monkeypatch.setenv("NANOTOLL_OWNER_KEY", payer.key.hex())
    given = _cli(["provider", "feedback", "--provider", agent, "--rpc-url", chain.rpc_url,
                  "--tx", redeem, "--score", "90", "--json"], capsys)
    # The settler may have paid the three purchases in more than one redeem: the proof is
    # what the one named paid.
    assert given["channels"] == [channel] and 0 < given["paid"] <= 3 * PRICE

    shown = _cli(["provider", "show", "--provider", agent, "--rpc-url", chain.rpc_url,
                  "--json"], capsys)
    assert shown["wallet"] == found.wallet
    assert shown["file"]["name"] == "test weather"
    assert shown["file"]["broker"] == f"mqtt://127.0.0.1:{world['broker'].port}"
    feedback = shown["feedback"]
    assert (feedback["count"], feedback["value"], feedback["decimals"]) == (1, 90, 0)
    assert feedback["items"][0]["client"] == payer.address
    assert feedback["items"][0]["tag1"] == "starred"
    assert main(["provider", "show", "--provider", agent, "--rpc-url", chain.rpc_url]) == 0
    printed = capsys.readouterr().out
    assert "feedback  1, mean 90" in printed and "products  weather 1500" in printed
    with urllib.request.urlopen(f"http://127.0.0.1:{world['web_port']}/identity.json",
                                timeout=10) as got:
        summary = json.loads(got.read())
    assert summary["agentId"] == parse_agent_reference(agent).agent_id
    assert summary["feedback"] == {"count": 1, "value": 90, "decimals": 0}


def _redeem_paying(world: dict[str, Any], channel: int) -> str:
    escrow = world["escrow"]
    logs = escrow.escrow.events.Redeemed().get_logs(
        from_block=0, argument_filters={"payee": world["provider"].address})
    for log in logs:
        receipt = world["chain"].w3.eth.get_transaction_receipt(log["transactionHash"])
        if channel in escrow.redeem_result(receipt).amounts:
            return str(log["transactionHash"].to_0x_hex())
    raise AssertionError(f"no redeem paid channel {channel}")


# ------------------------------------------------------------------ refusals --


def test_provision_refuses_an_unregistered_id_before_touching_the_board(
        world: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    chain, escrow = world["chain"], world["escrow"]
    monkeypatch.setenv("NANOTOLL_OWNER_KEY", world["payer"].key.hex())
    channels = escrow.last_channel_id()
    ref = f"eip155:{chain.chain_id}:{world['registries'].identity}/999"
    rc = main(["device", "provision", "--port", str(world["workdir"] / "no-such-port"),
               "--board", "esp32", "--rpc-url", chain.rpc_url, "--escrow", escrow.address,
               "--token", escrow.token_address, "--provider", ref, "--deposit", "1000"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"provider {ref} refused: agent 999 is not registered" in err
    assert escrow.last_channel_id() == channels


def test_a_file_naming_another_escrow_is_refused(world: dict[str, Any], agent: str) -> None:
    other = world["registries"].reputation  # any address but the escrow
    with pytest.raises(IdentityError, match="names escrow .* not "):
        discover_at(world["chain"].rpc_url, agent, other)


def test_another_chain_is_refused(world: dict[str, Any]) -> None:
    ref = f"eip155:1:{world['registries'].identity}/1"
    with pytest.raises(IdentityError, match="on chain 1, the node answers for chain"):
        discover_at(world["chain"].rpc_url, ref, world["escrow"].address)


@contextlib.contextmanager
def served(body: bytes) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/agent.json"
    finally:
        server.shutdown()
        server.server_close()


def _rogue_agent(world: dict[str, Any], uri: str) -> tuple[Any, str]:
    """A new agent owned and walleted by a fresh key, at ``uri``."""
    chain = world["chain"]
    rogue = chain.new_account()
    registry = IdentityRegistryClient(chain.w3, world["registries"].identity)
    agent_id, _ = registry.register(rogue, uri)
    return rogue, f"eip155:{chain.chain_id}:{registry.address}/{agent_id}"


def test_a_wallet_that_does_not_sign_the_catalog_is_refused(world: dict[str, Any],
                                                            agent: str) -> None:
    chain, provider = world["chain"], world["provider"]
    real = urllib.request.urlopen(
        f"http://127.0.0.1:{world['web_port']}{WELL_KNOWN_PATH}", timeout=10).read()
    from nanotoll.identity.retained import BrokerEndpoint, read_retained

    endpoint = BrokerEndpoint("127.0.0.1", world["broker"].port)
    genuine_catalog = read_retained(endpoint, catalog_topic(provider.address[2:].lower()))
    assert genuine_catalog is not None
    # The rogue copies the provider's file and catalog and claims them for its own wallet.
    with served(b"") as placeholder:
        rogue, ref = _rogue_agent(world, placeholder)
    document = json.loads(real)
    document["nanotoll"]["provider"] = rogue.address
    topic = catalog_topic(rogue.address[2:].lower())
    next(s for s in document["services"] if s["name"] == "MQTT")["catalogTopic"] = topic
    agent_id = parse_agent_reference(ref).agent_id
    document["registrations"].append({"agentId": agent_id,
                                      "agentRegistry": ref.rsplit("/", 1)[0]})
    import paho.mqtt.publish as publish

    publish.single(topic, genuine_catalog, qos=1, retain=True, hostname="127.0.0.1",
                   port=world["broker"].port)
    with served(json.dumps(document).encode()) as uri:
        IdentityRegistryClient(chain.w3, world["registries"].identity).set_agent_uri(
            rogue, agent_id, uri)
        with pytest.raises(IdentityError, match=f"signed by {provider.address}, not by the "
                           f"agent's wallet {rogue.address}"):
            discover_at(chain.rpc_url, ref, world["escrow"].address)


@pytest.mark.parametrize(("body", "message"), [
    (b"<html>hello</html>", "not JSON"),
    (json.dumps({"type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
                 "services": []}).encode(), "one MQTT service"),
])
def test_a_malformed_file_is_refused(world: dict[str, Any], body: bytes, message: str) -> None:
    with served(body) as uri:
        _, ref = _rogue_agent(world, uri)
        with pytest.raises(IdentityError, match=message):
            discover_at(world["chain"].rpc_url, ref, world["escrow"].address)


def test_an_unreachable_or_unfetched_uri_is_refused(world: dict[str, Any]) -> None:
    from nanotoll.servers.process import free_port

    for uri, message in ((f"http://127.0.0.1:{free_port()}/agent.json", "unreachable"),
                         ("ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
                          "scheme 'ipfs' is not fetched"),
                         ("file:///etc/passwd", "scheme 'file' is not fetched")):
        _, ref = _rogue_agent(world, uri)
        with pytest.raises(IdentityError, match=message):
            discover(world["chain"].w3, parse_agent_reference(ref), world["escrow"].address)


def test_feedback_without_a_payment_behind_it_is_refused(
        world: dict[str, Any], agent: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    chain, escrow = world["chain"], world["escrow"]
    stranger = chain.new_account()
    monkeypatch.setenv("NANOTOLL_OWNER_KEY", stranger.key.hex())
    reputation = ReputationRegistryClient(chain.w3, world["registries"].reputation)
    before = reputation.summary(parse_agent_reference(agent).agent_id).count
    mint = escrow.mint(stranger, stranger.address, 5)["transactionHash"].to_0x_hex()
    paid_someone = _redeem_paying_anyone(world)
    for tx, message in ((mint, "redeemed nothing"),
                        (paid_someone, f"from a channel paid by {stranger.address}"),
                        ("0x" + "ab" * 32, "is not on chain"),
                        ("0x1234", "32 bytes")):
        rc = main(["provider", "feedback", "--provider", agent, "--rpc-url", chain.rpc_url,
                   "--tx", tx, "--score", "10"])
        err = capsys.readouterr().err
        assert rc == 1 and message in err, err
    rc = main(["provider", "feedback", "--provider", agent, "--rpc-url", chain.rpc_url,
               "--tx", paid_someone, "--score", "101"])
    assert rc == 1 and "a score is 0..100" in capsys.readouterr().err
    assert reputation.summary(parse_agent_reference(agent).agent_id).count == before


def _redeem_paying_anyone(world: dict[str, Any]) -> str:
    logs = world["escrow"].escrow.events.Redeemed().get_logs(from_block=0)
    assert logs, "the end-to-end test settles a redeem first"
    return str(logs[0]["transactionHash"].to_0x_hex())


def test_deploy_registries_prints_the_config_lines(world: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NANOTOLL_PROVIDER_KEY", world["provider"].key.hex())
    out = _cli(["provider", "deploy-registries", "--config", str(world["config"]), "--json"],
               capsys)
    reputation = ReputationRegistryClient(world["chain"].w3, out["reputation_registry"])
    assert reputation.identity_registry() == out["identity_registry"]
    assert Path(world["config"]).exists()


def test_show_and_register_refuse_clearly(world: dict[str, Any],
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    chain, registry = world["chain"], world["registries"].identity
    rc = main(["provider", "show", "--provider", f"eip155:{chain.chain_id}:{registry}/999",
               "--rpc-url", chain.rpc_url])
    assert rc == 1 and "agent 999 is not registered" in capsys.readouterr().err
    no_code = world["escrow"].token_address  # a contract, but no identity registry
    rc = main(["provider", "show", "--provider", f"eip155:{chain.chain_id}:{no_code}/1",
               "--rpc-url", chain.rpc_url])
    assert rc == 1 and "does not answer as an identity registry" in capsys.readouterr().err
    rc = main(["provider", "show", "--provider", "eip155:31337:0x12/1"])
    assert rc == 1 and "not an agent reference" in capsys.readouterr().err
    bare = world["workdir"] / "bare.toml"
    text = world["config"].read_text()
    start = text.index("[identity]\n")
    bare.write_text(text[:start] + text[text.index("\n\n", start) + 2:])
    monkeypatch.setenv("NANOTOLL_PROVIDER_KEY", world["provider"].key.hex())
    rc = main(["provider", "register", "--config", str(bare)])
    assert rc == 1 and "[identity] identity_registry is not set" in capsys.readouterr().err
