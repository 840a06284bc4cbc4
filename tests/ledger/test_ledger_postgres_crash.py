"""PostgreSQL durability: a ``nanotoll gateway run`` on a PostgreSQL ledger with fsync on
serves purchases while PostgreSQL itself is SIGKILLed and started again on the same data
directory and port. Nothing acknowledged is lost, no increment is charged twice, and the
same gateway process reconnects and serves again."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from nanotoll.chain import ChannelSpec, EscrowClient
from nanotoll.ledger.postgres import PostgresLedger
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import decode_response
from nanotoll.protocol.signing import address_of
from nanotoll.servers.anvil import Anvil
from nanotoll.servers.gateway import GatewayProcess, gateway_toml
from nanotoll.servers.mosquitto import Mosquitto
from nanotoll.servers.postgres import PostgresServer
from support.gateway_support import Device, MqttPeer
from support.tools import require

DEVICES = 10
PER_DEVICE = 60
PRICE = 1500
RESEND_AFTER = 2.0


@pytest.fixture
def durable_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    """A server of this test's own with PostgreSQL's durable settings (fsync on)."""
    require("postgresql")
    with PostgresServer(workdir=tmp_path / "pg", fsync=True) as server:
        yield server


def test_postgres_sigkilled_mid_run_loses_nothing_and_the_gateway_serves_again(
        tmp_path: Path, durable_postgres: PostgresServer, mosquitto: Mosquitto) -> None:
    server = durable_postgres
    with psycopg.connect(server.url) as conn:
        for name in ("fsync", "synchronous_commit", "full_page_writes"):
            row = conn.execute(f"SHOW {name}").fetchone()
            assert row is not None and row[0] == "on", name
    with Anvil(workdir=tmp_path / "anvil") as anvil:
        client = EscrowClient.deploy(anvil.w3, anvil.new_account())
        keys = [secrets.token_bytes(32) for _ in range(DEVICES)]
        payer, provider = anvil.new_account(), anvil.new_account()
        client.mint(payer, payer.address, PER_DEVICE * PRICE * DEVICES)
        expiry = int(anvil.w3.eth.get_block("latest")["timestamp"]) + 30 * 86_400
        ids, _ = client.open_many(payer, [ChannelSpec(address_of(k), provider.address,
                                                      PER_DEVICE * PRICE, expiry) for k in keys])
        provider_key = bytes(provider.key)
        config_path = tmp_path / "gateway.toml"
        config_path.write_text(gateway_toml(
            mqtt_port=mosquitto.port, rpc_url=anvil.rpc_url, escrow=client.address,
            chain_id=31337, ledger_url=server.url, client_id="pg-crash-gw", catalog_seq=3,
            extra={"settlement": {"check_every": 3600}, "log": {"level": "WARNING"}}))
        devices = [Device(cid, key=k, provider_key=provider_key, escrow=client.address)
                   for cid, k in zip(ids, keys, strict=True)]
        by_topic = {d.response_topic: d for d in devices}
        acknowledged = {d.channel_id: 0 for d in devices}  # highest cumulative answered OK
        pending: dict[int, tuple[bytes, float]] = {}
        busy = after_restart = 0
        total = DEVICES * PER_DEVICE
        kill_at, restarted = total // 3, False
        peer = MqttPeer(mosquitto.port, tuple(by_topic), client_id="load-pg-crash")
        gateway = GatewayProcess(config_path, provider_key, workdir=tmp_path / "gw")
        try:
            gateway.start()
            done = 0
            deadline = time.monotonic() + 150
            while done < total:
                assert time.monotonic() < deadline, f"only {done} purchases finished"
                now = time.monotonic()
                for device in devices:
                    entry = pending.get(device.channel_id)
                    if entry is None and acknowledged[device.channel_id] < PER_DEVICE * PRICE:
                        payload = device.request()
                        pending[device.channel_id] = (payload, now)
                        peer.publish(device.topic, payload)
                    elif entry is not None and now - entry[1] > RESEND_AFTER:
                        peer.publish(device.topic, entry[0])  # the same bytes again
                        pending[device.channel_id] = (entry[0], now)
                try:
                    topic, payload, _ = peer.next(timeout=0.1)
                except Exception:
                    topic = ""
                if topic:
                    device = by_topic[topic]
                    response = decode_response(payload)
                    entry = pending.get(device.channel_id)
                    if response.code == ErrorCode.BUSY:  # the ledger away: not charged
                        busy += 1
                        if entry is not None:
                            pending[device.channel_id] = (entry[0], 0.0)  # send again
                        continue
                    assert response.code == ErrorCode.OK, response.message
                    assert response.receipt is not None
                    if entry is not None and response.receipt.cumulative == device.cumulative:
                        acknowledged[device.channel_id] = response.receipt.cumulative
                        del pending[device.channel_id]
                        done += 1
                        after_restart += restarted
                if not restarted and done >= kill_at:
                    server.kill()  # SIGKILL of the postmaster, mid-stream
                    time.sleep(1.0)  # requests meanwhile meet no ledger
                    server.start()  # the same data directory and port: WAL recovery
                    restarted = True
            assert gateway.process is not None and gateway.process.poll() is None
            assert gateway.terminate() == 0
        finally:
            gateway.stop()
            peer.close()
    assert restarted and after_restart > total // 2  # the same process served again
    ledger = PostgresLedger(server.url)
    try:
        for device in devices:
            record = ledger.lookup(device.channel_id)
            assert record is not None
            assert record.cumulative == acknowledged[device.channel_id] == PER_DEVICE * PRICE
            history = ledger.vouchers(device.channel_id)
            assert [c for c, _ in history] == [PRICE * (i + 1) for i in range(PER_DEVICE)]
            assert sum(i for _, i in history) == record.cumulative
    finally:
        ledger.close()
