"""Two ``nanotoll gateway run`` processes on one shared subscription and one PostgreSQL
ledger: 5,000 purchases, some requests delivered twice, no increment accepted twice."""

from __future__ import annotations

import secrets
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from nanotoll.chain import ChannelSpec, EscrowClient
from nanotoll.ledger import open_ledger
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import decode_response
from nanotoll.protocol.signing import address_of
from nanotoll.servers.anvil import Anvil
from nanotoll.servers.gateway import GatewayProcess, gateway_toml
from nanotoll.servers.mosquitto import Mosquitto
from nanotoll.servers.process import free_port
from support.gateway_support import Device, MqttPeer

if TYPE_CHECKING:
    from nanotoll.servers.postgres import PostgresServer


DEVICES = 50
PER_DEVICE = 100
PRICE = 1500


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Anvil, EscrowClient]]:
    with Anvil(workdir=tmp_path_factory.mktemp("anvil")) as node:
        yield node, EscrowClient.deploy(node.w3, node.new_account())


def purchases_total(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("nanotoll_purchases_total "):
                return int(line.split()[1])
    raise AssertionError("no nanotoll_purchases_total")


def test_two_gateways_on_postgresql_5000_purchases_no_double_acceptance(
        tmp_path: Path, chain: tuple[Anvil, EscrowClient], mosquitto: Mosquitto,
        postgres_server: PostgresServer) -> None:
    anvil, client = chain
    url = postgres_server.create_database("two_gateways")
    keys = [secrets.token_bytes(32) for _ in range(DEVICES)]
    payer, provider = anvil.new_account(), anvil.new_account()
    deposit = PER_DEVICE * PRICE
    client.mint(payer, payer.address, deposit * DEVICES)
    expiry = int(anvil.w3.eth.get_block("latest")["timestamp"]) + 30 * 86_400
    ids, _ = client.open_many(payer, [ChannelSpec(address_of(k), provider.address, deposit,
                                                  expiry) for k in keys])
    provider_key = bytes(provider.key)
    metrics_ports = [free_port(), free_port()]
    configs = []
    for index, port in enumerate(metrics_ports):
        path = tmp_path / f"gateway-{index}.toml"
        path.write_text(gateway_toml(
            mqtt_port=mosquitto.port, rpc_url=anvil.rpc_url, escrow=client.address,
            chain_id=31337, ledger_url=url, client_id=f"nanotoll-gw-pg-{index}", catalog_seq=3,
            extra={"settlement": {"check_every": 3600}, "metrics": {"port": port},
                   "log": {"level": "WARNING"}}))
        configs.append(path)

    devices = [Device(cid, key=k, provider_key=provider_key, escrow=client.address)
               for cid, k in zip(ids, keys, strict=True)]
    by_topic = {d.response_topic: d for d in devices}
    waiting = {d.channel_id: 0 for d in devices}  # responses still due for the request out
    sent = {d.channel_id: 0 for d in devices}
    duplicates = 0
    codes: dict[int, int] = {}
    peer = MqttPeer(mosquitto.port, tuple(by_topic), client_id="load-pg")

    def send(device: Device) -> None:
        nonlocal duplicates
        payload = device.request()
        sent[device.channel_id] += 1
        twice = sent[device.channel_id] % 4 == 0  # every 4th request is delivered twice
        peer.client.publish(device.topic, payload, qos=1)
        if twice:
            peer.client.publish(device.topic, payload, qos=1)
            duplicates += 1
        waiting[device.channel_id] = 2 if twice else 1

    with GatewayProcess(configs[0], provider_key, workdir=tmp_path / "gw0"), \
            GatewayProcess(configs[1], provider_key, workdir=tmp_path / "gw1"):
        started = time.monotonic()
        for device in devices:
            send(device)
        answered = 0
        while any(waiting.values()):
            assert time.monotonic() - started < 120, f"{answered} responses after 120 s"
            topic, payload, _ = peer.next(timeout=20)
            device = by_topic[topic]
            response = decode_response(payload)
            codes[response.code] = codes.get(response.code, 0) + 1
            assert response.code == ErrorCode.OK, response.message
            answered += 1
            waiting[device.channel_id] -= 1
            if waiting[device.channel_id] == 0 and sent[device.channel_id] < PER_DEVICE:
                send(device)
        elapsed = time.monotonic() - started
        served = [purchases_total(port) for port in metrics_ports]
    peer.close()
    assert answered == DEVICES * PER_DEVICE + duplicates
    # Both processes took purchases, and together they charged each one exactly once.
    assert all(count > 0 for count in served), served
    assert sum(served) == DEVICES * PER_DEVICE, served
    ledger = open_ledger(url)
    try:
        for device in devices:
            history = ledger.vouchers(device.channel_id)
            assert [c for c, _ in history] == [PRICE * (i + 1) for i in range(PER_DEVICE)]
            assert all(increment == PRICE for _, increment in history)
        totals = ledger.totals()
        assert totals["purchases"] == DEVICES * PER_DEVICE
        assert totals["accepted"] == DEVICES * PER_DEVICE * PRICE
    finally:
        ledger.close()
    print(f"{DEVICES * PER_DEVICE} purchases + {duplicates} duplicates in {elapsed:.1f} s, "
          f"split {served}")
