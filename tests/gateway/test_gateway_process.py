"""``nanotoll gateway run`` as a process: purchases, clean SIGTERM, settle now, status; and
SIGKILL at random points during 2,000 purchases without losing or double-charging any."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nanotoll.chain import ChannelSpec, EscrowClient
from nanotoll.gateway import load_config, settle_now, status
from nanotoll.ledger.sqlite import SQLiteLedger
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import decode_response
from nanotoll.protocol.signing import address_of
from nanotoll.servers.anvil import Anvil
from nanotoll.servers.gateway import GatewayProcess, gateway_toml
from nanotoll.servers.mosquitto import Mosquitto
from support.gateway_support import Device, MqttPeer


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Anvil, EscrowClient]]:
    with Anvil(workdir=tmp_path_factory.mktemp("anvil")) as node:
        yield node, EscrowClient.deploy(node.w3, node.new_account())


def setup_channels(chain: tuple[Anvil, EscrowClient], keys: list[bytes], deposit: int
                   ) -> tuple[EscrowClient, bytes, list[int]]:
    anvil, client = chain
    payer, provider = anvil.new_account(), anvil.new_account()
    client.mint(payer, payer.address, deposit * len(keys))
    expiry = int(anvil.w3.eth.get_block("latest")["timestamp"]) + 30 * 86_400
    ids, _ = client.open_many(payer, [ChannelSpec(address_of(k), provider.address, deposit,
                                                  expiry) for k in keys])
    return client, bytes(provider.key), ids


def write_config(tmp_path: Path, anvil: Anvil, client: EscrowClient, port: int) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(gateway_toml(mqtt_port=port, rpc_url=anvil.rpc_url, escrow=client.address,
                                 chain_id=31337, ledger_path=tmp_path / "ledger.db",
                                 client_id="nanotoll-gw-test", catalog_seq=3,
                                 extra={"chain": {"poll_interval": 0.05},
                                        "settlement": {"check_every": 3600}}))
    return path


def test_run_sigterm_settle_now_and_status(tmp_path: Path, chain: tuple[Anvil, EscrowClient],
                                           mosquitto: Mosquitto) -> None:
    key = secrets.token_bytes(32)
    anvil = chain[0]
    client, provider_key, (channel_id,) = setup_channels(chain, [key], 1_000_000)
    config_path = write_config(tmp_path, anvil, client, mosquitto.port)
    device = Device(channel_id, key=key, provider_key=provider_key, escrow=client.address)
    with GatewayProcess(config_path, provider_key, workdir=tmp_path / "gw") as gateway:
        peer = MqttPeer(mosquitto.port, (device.response_topic,))
        for _ in range(20):
            peer.publish(device.topic, device.request())
            _, payload, _ = peer.next()
            assert decode_response(payload).code == ErrorCode.OK
        peer.close()
        assert gateway.terminate() == 0
    config = load_config(config_path)
    environ = {"NANOTOLL_PROVIDER_KEY": provider_key.hex()}
    assert status(config, environ)["unredeemed"] == 30_000
    summary = settle_now(config, environ, timeout=60)
    assert summary.amount == 30_000 and summary.pending == 0 and len(summary.transactions) == 1
    assert client.channel(channel_id).paid == 30_000
    report = status(config, environ)
    assert report["purchases"] == 20 and report["unredeemed"] == 0
    assert report["provider"] == address_of(provider_key)


def test_sigkill_at_random_points_loses_nothing_acknowledged(
        tmp_path: Path, chain: tuple[Anvil, EscrowClient], mosquitto: Mosquitto) -> None:
    rng = random.Random(5)
    keys = [secrets.token_bytes(32) for _ in range(20)]
    per_device, price = 100, 1500
    anvil = chain[0]
    client, provider_key, ids = setup_channels(chain, keys, per_device * price)
    config_path = write_config(tmp_path, anvil, client, mosquitto.port)
    devices = [Device(cid, key=k, provider_key=provider_key, escrow=client.address)
               for cid, k in zip(ids, keys, strict=True)]
    by_topic = {d.response_topic: d for d in devices}
    acknowledged: dict[int, int] = {d.channel_id: 0 for d in devices}  # highest OK cumulative
    pending: dict[int, tuple[bytes, float]] = {}  # channel -> (payload, sent at)
    done = 0
    peer = MqttPeer(mosquitto.port, tuple(by_topic), client_id="load-driver")
    gateway = GatewayProcess(config_path, provider_key, workdir=tmp_path / "gw")
    kills = 0
    try:
        gateway.start()
        # Kill points are drawn over the purchase count, not the clock, so a faster or
        # slower machine still sees every kill land mid-stream.
        total = len(devices) * per_device
        kill_at = sorted(rng.sample(range(total // 20, total - total // 20), 6))
        deadline = time.monotonic() + 150
        while done < len(devices) * per_device:
            assert time.monotonic() < deadline, f"only {done} purchases finished"
            now = time.monotonic()
            for device in devices:
                entry = pending.get(device.channel_id)
                if entry is None and acknowledged[device.channel_id] < per_device * price:
                    payload = device.request()
                    pending[device.channel_id] = (payload, now)
                    peer.publish(device.topic, payload)
                elif entry is not None and now - entry[1] > 3.0:
                    peer.publish(device.topic, entry[0])  # re-send the same bytes
                    pending[device.channel_id] = (entry[0], now)
            try:
                topic, payload, _ = peer.next(timeout=0.2)
            except Exception:
                topic = ""
            if topic:
                device = by_topic[topic]
                response = decode_response(payload)
                entry = pending.get(device.channel_id)
                assert response.code == ErrorCode.OK, response.message
                assert response.receipt is not None
                if entry is not None and response.receipt.cumulative == device.cumulative:
                    acknowledged[device.channel_id] = response.receipt.cumulative
                    del pending[device.channel_id]
                    done += 1
            if kills < len(kill_at) and done >= kill_at[kills]:
                gateway.kill()
                kills += 1
                gateway.start()
        assert gateway.terminate() == 0
    finally:
        gateway.stop()
        peer.close()
    assert kills == len(kill_at)
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    try:
        for device in devices:
            record = ledger.lookup(device.channel_id)
            assert record is not None
            # Every acknowledged voucher is in the ledger...
            assert record.cumulative >= acknowledged[device.channel_id] == per_device * price
            history = ledger.vouchers(device.channel_id)
            # ...each increment accepted once, and they add up to the highest voucher.
            assert [c for c, _ in history] == [price * (i + 1) for i in range(per_device)]
            assert sum(i for _, i in history) == record.cumulative
    finally:
        ledger.close()
    config = load_config(config_path)
    summary = settle_now(config, {"NANOTOLL_PROVIDER_KEY": provider_key.hex()}, timeout=60)
    assert summary.pending == 0
    for device in devices:
        assert client.channel(device.channel_id).paid == per_device * price


def test_two_gateway_processes_share_the_load_and_never_double_accept(
        tmp_path: Path, chain: tuple[Anvil, EscrowClient], mosquitto: Mosquitto) -> None:
    keys = [secrets.token_bytes(32) for _ in range(10)]
    per_device, price = 40, 1500
    anvil = chain[0]
    client, provider_key, ids = setup_channels(chain, keys, per_device * price)
    config_path = write_config(tmp_path, anvil, client, mosquitto.port)
    second_path = tmp_path / "gateway-2.toml"
    second_path.write_text(config_path.read_text().replace("nanotoll-gw-test", "nanotoll-gw-2"))
    devices = [Device(cid, key=k, provider_key=provider_key, escrow=client.address)
               for cid, k in zip(ids, keys, strict=True)]
    by_topic = {d.response_topic: d for d in devices}
    peer = MqttPeer(mosquitto.port, tuple(by_topic), client_id="load-two")
    answered = 0
    with GatewayProcess(config_path, provider_key, workdir=tmp_path / "gw1"), \
            GatewayProcess(second_path, provider_key, workdir=tmp_path / "gw2"):
        for _ in range(per_device):
            # Each device sends its next request twice (a retry): both gateways may get it.
            for device in devices:
                payload = device.request()
                peer.publish(device.topic, payload)
                peer.publish(device.topic, payload)
            for _ in range(2 * len(devices)):
                _, payload, _ = peer.next()
                response = decode_response(payload)
                assert response.code == ErrorCode.OK, response.message
                answered += 1
    peer.close()
    assert answered == 2 * per_device * len(devices)
    logs = [(tmp_path / d / "gateway.log").read_text() for d in ("gw1", "gw2")]
    assert all('"code":"OK"' in log for log in logs), "both gateways served requests"
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    try:
        for device in devices:
            history = ledger.vouchers(device.channel_id)
            assert [c for c, _ in history] == [price * (i + 1) for i in range(per_device)]
            assert all(increment == price for _, increment in history)
    finally:
        ledger.close()
