"""Start-up and operations of ``nanotoll gateway``: the ready line comes once the gateway
is served (subscription confirmed, catalog published), a chain node that is down at start
is waited for with back-off, ``gateway status`` never creates a ledger, and addresses in
the config and on the command line carry a valid EIP-55 checksum when in mixed case."""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nanotoll.chain import ChannelSpec, EscrowClient
from nanotoll.cli import build_parser
from nanotoll.cli import main as nanotoll_main
from nanotoll.gateway import status
from nanotoll.gateway.config import ConfigError, load_config, parse_config
from nanotoll.ledger import LedgerError
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import decode_response
from nanotoll.protocol.signing import address_of
from nanotoll.protocol.topics import catalog_topic
from nanotoll.servers.anvil import Anvil
from nanotoll.servers.gateway import GatewayProcess, gateway_toml
from nanotoll.servers.mosquitto import Mosquitto
from nanotoll.servers.process import free_port
from support.gateway_support import KEY_ENV, Device, MqttPeer, config_document
from support.rpc_hold import RpcHold

GOOD = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # anvil's first contract, EIP-55
BAD = "0x5FbDB2315678afecb367f032d93F642f64180aA3"  # one letter's case changed


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Anvil, EscrowClient]]:
    with Anvil(workdir=tmp_path_factory.mktemp("anvil")) as node:
        yield node, EscrowClient.deploy(node.w3, node.new_account())


def _log_events(gateway: GatewayProcess) -> list[str]:
    events = []
    for line in gateway.log_path.read_text(errors="replace").splitlines():
        try:
            events.append(str(json.loads(line).get("event")))
        except ValueError:
            continue
    return events


def test_node_down_at_start_is_waited_for_then_ready_means_served(
        tmp_path: Path, chain: tuple[Anvil, EscrowClient], mosquitto: Mosquitto) -> None:
    anvil, client = chain
    key = secrets.token_bytes(32)
    payer, provider = anvil.new_account(), anvil.new_account()
    client.mint(payer, payer.address, 100_000)
    expiry = int(anvil.w3.eth.get_block("latest")["timestamp"]) + 30 * 86_400
    (channel_id,), _ = client.open_many(payer, [ChannelSpec(address_of(key), provider.address,
                                                            100_000, expiry)])
    provider_key = bytes(provider.key)
    rpc_port = free_port()  # nothing listens here until the relay comes up
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(gateway_toml(
        mqtt_port=mosquitto.port, rpc_url=f"http://127.0.0.1:{rpc_port}",
        escrow=client.address.lower(), chain_id=31337, ledger_path=tmp_path / "ledger.db",
        client_id="startup-gw", catalog_seq=3,
        extra={"settlement": {"check_every": 3600}, "log": {"level": "INFO"}}))
    relays: list[RpcHold] = []
    node_up = threading.Timer(8.0, lambda: relays.append(RpcHold(anvil.rpc_url, rpc_port)))
    gateway = GatewayProcess(config_path, provider_key, workdir=tmp_path / "gw", timeout=60)
    device = Device(channel_id, key=key, provider_key=provider_key, escrow=client.address)
    try:
        node_up.start()
        gateway.start()  # returns at the ready line
        ready_at = time.monotonic()
        events = _log_events(gateway)
        assert events.count("chain_unavailable") >= 1, events  # retried, not exited
        assert events.index("chain_unavailable") < events.index("gateway_started")
        # Ready means served: the catalog is retained at the broker already, and a request
        # sent at once is answered well before a device would send it again.
        catalog = MqttPeer(mosquitto.port, (catalog_topic(provider.address[2:].lower()),))
        topic, _, retained = catalog.next(timeout=2)
        assert retained and time.monotonic() - ready_at < 2
        catalog.close()
        peer = MqttPeer(mosquitto.port, (device.response_topic,))
        sent = time.monotonic()
        peer.publish(device.topic, device.request())
        _, payload, _ = peer.next(timeout=5)
        assert decode_response(payload).code == ErrorCode.OK
        assert time.monotonic() - sent < 2
        peer.close()
        assert gateway.terminate() == 0
    finally:
        node_up.cancel()
        gateway.stop()
        for relay in relays:
            relay.close()


def test_sigterm_while_the_node_is_down_exits_cleanly(tmp_path: Path,
                                                     mosquitto: Mosquitto) -> None:
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(gateway_toml(
        mqtt_port=mosquitto.port, rpc_url=f"http://127.0.0.1:{free_port()}", escrow=GOOD,
        chain_id=31337, ledger_path=tmp_path / "ledger.db", client_id="down-gw",
        extra={"log": {"level": "INFO"}}))
    gateway = GatewayProcess(config_path, secrets.token_bytes(32), workdir=tmp_path / "gw")
    try:
        gateway.spawn([sys.executable, "-m", "nanotoll.cli", "gateway", "run", "--config",
                       str(config_path)], env=gateway._environment())
        deadline = time.monotonic() + 30
        while "chain_unavailable" not in _log_events(gateway):
            assert time.monotonic() < deadline, gateway.log_path.read_text()
            time.sleep(0.1)
        assert gateway.terminate() == 0
        assert "gateway_ready" not in gateway.log_path.read_text()
        assert not (tmp_path / "ledger.db").exists()  # nothing opened before the node
    finally:
        gateway.stop()


def test_status_on_a_missing_ledger_is_an_error_and_creates_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(gateway_toml(mqtt_port=1883, rpc_url="http://127.0.0.1:8545",
                                        escrow=GOOD, chain_id=31337,
                                        ledger_path=tmp_path / "missing.db"))
    with pytest.raises(LedgerError, match="no ledger at .*missing.db"):
        status(load_config(config_path), KEY_ENV)
    assert nanotoll_main(["gateway", "status", "--config", str(config_path)]) == 2
    assert "no ledger at" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()


def test_status_on_a_postgresql_database_without_a_ledger_creates_no_tables(
        tmp_path: Path, postgres_server: object) -> None:
    import psycopg
    from nanotoll.servers.postgres import PostgresServer

    assert isinstance(postgres_server, PostgresServer)
    url = postgres_server.create_database("status_empty")
    config = parse_config(config_document(ledger=url), tmp_path, "test.toml")
    with pytest.raises(LedgerError, match="no ledger in this database"):
        status(config, KEY_ENV)
    with psycopg.connect(url) as conn:
        tables = conn.execute("SELECT count(*) FROM information_schema.tables "
                              "WHERE table_schema='public'").fetchone()
    assert tables is not None and tables[0] == 0


@pytest.mark.parametrize("escrow", [GOOD, GOOD.lower(), "0x" + GOOD[2:].upper()])
def test_escrow_in_checksum_or_single_case_is_accepted(tmp_path: Path, escrow: str) -> None:
    config = parse_config(config_document(escrow=escrow), tmp_path, "test.toml")
    assert config.chain.escrow == GOOD


def test_escrow_with_a_wrong_checksum_is_a_config_error_naming_the_key(tmp_path: Path
                                                                      ) -> None:
    with pytest.raises(ConfigError, match=r"test.toml: \[chain\] escrow: .*EIP-55") as info:
        parse_config(config_document(escrow=BAD), tmp_path, "test.toml")
    assert GOOD in str(info.value)  # says what the checksummed form is


@pytest.mark.parametrize("option", ["--escrow", "--token", "--provider"])
def test_cli_addresses_with_a_wrong_checksum_are_refused_naming_the_option(
        option: str, capsys: pytest.CaptureFixture[str]) -> None:
    addresses = {"--escrow": GOOD, "--token": GOOD.lower(), "--provider": GOOD}
    addresses[option] = BAD
    argv = ["device", "provision", "--port", "/dev/null", "--board", "esp32", "--deposit",
            "1"]
    for name, value in addresses.items():
        argv += [name, value]
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {option}:" in error and "EIP-55" in error
