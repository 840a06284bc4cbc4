"""Crash liveness of settlement: ``nanotoll gateway run`` SIGKILLed in the middle of a
settlement round, with the settlement lease in its hands, in each state its transaction
can be in (signed, sent, mined). Restarted with the same client id it takes its own lease
back at once and sees the transaction through within 5 s of the restart; a gateway with
another client id is still kept out by a live lease."""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nanotoll.chain import ChannelSpec, EscrowClient
from nanotoll.chain.node import EscrowChain
from nanotoll.chain.settle import LEASE, Settler, gateway_holder
from nanotoll.gateway.config import SettlementConfig
from nanotoll.ledger import LeaseBusy, SettlementState
from nanotoll.ledger.sqlite import SQLiteLedger
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import decode_response
from nanotoll.protocol.signing import address_of
from nanotoll.servers.anvil import Anvil
from nanotoll.servers.gateway import GatewayProcess, gateway_toml
from nanotoll.servers.mosquitto import Mosquitto
from support.gateway_support import Device, MqttPeer
from support.rpc_hold import RpcHold

CLIENT_ID = "liveness-gw"
RESUME_BOUND = 5.0  # seconds from the restart to the settlement confirmed (issue 13)
PRICE = 1500


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Anvil, EscrowClient]]:
    with Anvil(workdir=tmp_path_factory.mktemp("anvil")) as node:
        yield node, EscrowClient.deploy(node.w3, node.new_account())


def _settlement_state(ledger_path: Path) -> str | None:
    """The newest settlement's state, read as another process reads the file."""
    if not ledger_path.exists():
        return None
    with sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=5) as conn:
        try:
            row = conn.execute("SELECT state FROM settlements ORDER BY settlement_id DESC "
                               "LIMIT 1").fetchone()
        except sqlite3.OperationalError:  # the schema is not written yet
            return None
    return None if row is None else str(row[0])


def _lease_holder(ledger_path: Path) -> tuple[str, int] | None:
    with sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=5) as conn:
        row = conn.execute("SELECT holder, expires_ms FROM leases WHERE name=?",
                           (LEASE,)).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def _wait(predicate: object, timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` is true; fails after ``timeout``."""
    assert callable(predicate)
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what} within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.parametrize("state", ["signed", "sent", "mined"])
def test_gateway_killed_mid_settlement_resumes_within_five_seconds_of_restart(
        state: str, tmp_path: Path, chain: tuple[Anvil, EscrowClient],
        mosquitto: Mosquitto) -> None:
    anvil, client = chain
    key = secrets.token_bytes(32)
    payer, provider = anvil.new_account(), anvil.new_account()
    client.mint(payer, payer.address, 1_000_000)
    expiry = int(anvil.w3.eth.get_block("latest")["timestamp"]) + 30 * 86_400
    (channel_id,), _ = client.open_many(payer, [ChannelSpec(address_of(key), provider.address,
                                                            1_000_000, expiry)])
    provider_key = bytes(provider.key)
    ledger_path = tmp_path / "ledger.db"
    # Held in every state: the round after the one that reached it blocks inside the lease.
    held = {"signed": "eth_sendRawTransaction", "sent": "eth_getTransactionReceipt",
            "mined": "eth_getTransactionReceipt"}[state]
    with RpcHold(anvil.rpc_url) as relay:
        config_path = tmp_path / "gateway.toml"
        config_path.write_text(gateway_toml(
            mqtt_port=mosquitto.port, rpc_url=relay.url, escrow=client.address,
            chain_id=31337, ledger_path=ledger_path, client_id=CLIENT_ID, catalog_seq=3,
            extra={"chain": {"poll_interval": 0.05,
                             "confirmations": 2 if state == "mined" else 1},
                   "settlement": {"threshold": 1, "check_every": 0.2},
                   "log": {"level": "INFO"}}))
        device = Device(channel_id, key=key, provider_key=provider_key, escrow=client.address)
        if state != "mined":
            relay.hold(held)
        gateway = GatewayProcess(config_path, provider_key, workdir=tmp_path / "gw")
        peer = MqttPeer(mosquitto.port, (device.response_topic,))
        try:
            gateway.start()
            for _ in range(3):
                peer.publish(device.topic, device.request())
                _, payload, _ = peer.next()
                assert decode_response(payload).code == ErrorCode.OK
            _wait(lambda: _settlement_state(ledger_path) == state, 30, f"state {state}")
            if state == "mined":
                relay.hold(held)  # the next round's receipt read waits, lease in hand
            _wait(lambda: relay.waiting.get(held, 0) > 0, 10, f"a round blocked on {held}")
            lease = _lease_holder(ledger_path)
            assert lease is not None and lease[0] == gateway_holder(CLIENT_ID)
            gateway.kill()
            relay.release(forward=False)  # the dead process's call never reaches the node
            # The dead gateway's lease has most of its minute left.
            assert lease[1] - time.time() * 1000 > 30_000
            assert _settlement_state(ledger_path) == state
            restarted = time.monotonic()
            gateway.start()
            if state == "mined":  # the confirmation the transaction was waiting for
                anvil.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            _wait(lambda: _settlement_state(ledger_path) == SettlementState.CONFIRMED.value,
                  30, "settlement confirmed")
            resumed = time.monotonic() - restarted
            assert resumed <= RESUME_BOUND, f"settlement resumed {resumed:.2f} s after restart"
            assert client.channel(channel_id).paid == 3 * PRICE
            assert gateway.terminate() == 0
        finally:
            peer.close()
            gateway.stop()
    ledger = SQLiteLedger(ledger_path)
    try:
        settlements = ledger.settlements()
        assert [s.state for s in settlements] == [SettlementState.CONFIRMED]
        assert ledger.lookup(channel_id).redeemed == 3 * PRICE  # type: ignore[union-attr]
    finally:
        ledger.close()


def test_lease_names_the_gateway_by_client_id(tmp_path: Path) -> None:
    """The same client id takes a live lease back (a restart); another one is kept out,
    and so is a process-only holder (settle now)."""
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    # No call reaches this node: taking the lease touches the ledger only.
    node = EscrowChain("http://127.0.0.1:9", "0x" + "11" * 20, 31337)

    def settler(client_id: str) -> Settler:
        return Settler(ledger, node, SettlementConfig(), holder=gateway_holder(client_id))

    try:
        before_crash, after_restart, other = settler("gw-a"), settler("gw-a"), settler("gw-b")
        settle_now = Settler(ledger, node, SettlementConfig())
        assert settle_now.holder.startswith("process:")
        with before_crash.leased():  # as if its process died holding the lease
            with pytest.raises(LeaseBusy), other.leased():
                pass
            with after_restart.leased():
                with pytest.raises(LeaseBusy), settle_now.leased():
                    pass
                with pytest.raises(LeaseBusy), other.leased():
                    pass
        with other.leased():  # given up at the end of the section
            pass
    finally:
        ledger.close()
