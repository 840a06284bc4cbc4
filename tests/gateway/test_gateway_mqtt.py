"""The gateway behind a real mosquitto: shared subscription, catalog, responses, acks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from nanotoll.chain.cache import MemoryChannels
from nanotoll.chain.channel import ChannelState
from nanotoll.gateway.ingress import wait_while_progressing
from nanotoll.gateway.service import GatewayService
from nanotoll.ledger.sqlite import SQLiteLedger
from nanotoll.protocol.eip712 import domain_separator
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import decode_catalog, decode_response
from nanotoll.protocol.signing import address_of
from nanotoll.protocol.topics import catalog_topic
from nanotoll.servers.mosquitto import Mosquitto
from support.gateway_support import (
    DEVICE_KEY,
    PROVIDER_KEY,
    Device,
    MqttPeer,
    hex_address,
    make_config,
)

NOW = int(time.time())


def channels() -> MemoryChannels:
    return MemoryChannels(ChannelState(1, address_of(DEVICE_KEY), address_of(PROVIDER_KEY),
                                       "0x" + "11" * 20, 10_000_000, 0, NOW + 86_400, 1))


def test_catalog_retained_and_purchases_answered(tmp_path: Path, mosquitto: Mosquitto) -> None:
    config = make_config(tmp_path, mqtt_port=mosquitto.port)
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    device = Device(1)
    provider_hex = hex_address(PROVIDER_KEY)
    try:
        with GatewayService(config, PROVIDER_KEY, ledger, channels()):
            peer = MqttPeer(mosquitto.port, (device.response_topic, catalog_topic(provider_hex)))
            topic, payload, retained = peer.next()
            assert topic.endswith("/catalog") and retained
            catalog = decode_catalog(payload)
            catalog.verify(domain_separator(31337, config.chain.escrow))
            assert catalog.seq == 3 and catalog.price_of("weather") == 1500
            requests = [device.request() for _ in range(20)]
            for payload in requests:
                peer.publish(device.topic, payload)
            codes = []
            for _ in requests:
                topic, payload, _ = peer.next()
                assert topic == device.response_topic
                codes.append(decode_response(payload).code)
            # Sent without waiting (a device sends one request at a time, so this is the
            # pipelined worst case): were a later voucher answered first, an earlier one is stale.
            assert codes.count(ErrorCode.OK) >= 1
            assert set(codes) <= {ErrorCode.OK, ErrorCode.STALE_VOUCHER}
            peer.close()
        record = ledger.lookup(1)
        assert record is not None and record.cumulative == 30_000
    finally:
        ledger.close()


def test_sequential_device_and_a_bad_topic(tmp_path: Path, mosquitto: Mosquitto) -> None:
    config = make_config(tmp_path, mqtt_port=mosquitto.port)
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    device = Device(1)
    try:
        with GatewayService(config, PROVIDER_KEY, ledger, channels()):
            peer = MqttPeer(mosquitto.port, (device.response_topic,
                                             device.response_topic.rsplit("/", 1)[0] + "/junk"))
            for _ in range(10):
                peer.publish(device.topic, device.request())
                _, payload, _ = peer.next()
                assert decode_response(payload).code == ErrorCode.OK
            peer.publish(device.topic.rsplit("/", 1)[0] + "/junk", device.request())
            topic, payload, _ = peer.next()
            assert topic.endswith("/resp/junk")
            assert decode_response(payload).code == ErrorCode.WRONG_TOPIC
            # A level nobody could be provisioned with: logged, acknowledged, not answered.
            peer.publish(device.topic.rsplit("/", 1)[0] + "/a.b", device.request())
            peer.publish(device.topic, device.request())
            topic, payload, _ = peer.next()
            assert topic == device.response_topic
            assert decode_response(payload).code == ErrorCode.OK
            peer.close()
        assert ledger.totals()["purchases"] == 11
    finally:
        ledger.close()


def test_catalog_is_renewed_before_it_expires_and_the_old_one_honoured_until_then(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    now = [1_800_000_000.0]  # on the hour
    config = make_config(tmp_path, mqtt_port=mosquitto.port,
                         catalog={"seq": 3, "validity": 1000, "products": [
                             {"name": "weather", "price": 1500, "description": "nowcast"}]})
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    device = Device(1)
    state = ChannelState(1, address_of(DEVICE_KEY), address_of(PROVIDER_KEY), "0x" + "11" * 20,
                         10_000_000, 0, int(now[0]) + 86_400, 1)
    provider_hex = hex_address(PROVIDER_KEY)
    try:
        with GatewayService(config, PROVIDER_KEY, ledger, MemoryChannels(state),
                            clock=lambda: now[0]) as service:
            first = service.catalog
            assert (first.seq, first.valid_from, first.valid_until) == \
                (3, 1_800_000_000, 1_800_001_000)
            assert not service.refresh_catalog()
            now[0] += 899  # the window is 900 s: 1000 s valid, renewed 100 s before the end
            assert not service.refresh_catalog()
            now[0] += 1
            assert service.refresh_catalog()
            second = service.catalog
            assert (second.seq, second.valid_from, second.valid_until) == \
                (4, 1_800_000_900, 1_800_001_900)
            peer = MqttPeer(mosquitto.port, (catalog_topic(provider_hex),))
            _, payload, retained = peer.next()
            assert retained and decode_catalog(payload).seq == 4
            peer.close()
            # Priced by the old catalog (seq 3) while it is still valid: accepted.
            outcome = service.pipeline.handle(device.topic, device.request(seq=3))
            assert outcome.code == ErrorCode.OK
            assert service.pipeline.handle(device.topic, device.request(seq=4)).code \
                == ErrorCode.OK
            now[0] += 100  # the old one has expired
            outcome = service.pipeline.handle(device.topic, device.request(seq=3))
            assert outcome.code == ErrorCode.PRICE_CHANGED
            assert decode_response(outcome.response).detail == 4
    finally:
        ledger.close()


def test_gateway_reconnects_after_the_broker_restarts(tmp_path: Path,
                                                      mosquitto: Mosquitto) -> None:
    config = make_config(tmp_path, mqtt_port=mosquitto.port)
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    device = Device(1)
    try:
        with GatewayService(config, PROVIDER_KEY, ledger, channels()):
            peer = MqttPeer(mosquitto.port, (device.response_topic,))
            peer.publish(device.topic, device.request())
            assert decode_response(peer.next()[1]).code == ErrorCode.OK
            peer.close()
            mosquitto.restart()
            # The gateway reconnects within its backoff: it publishes its catalog again
            # (a live message, not the retained copy), then serves.
            catalog = catalog_topic(hex_address(PROVIDER_KEY))
            peer = MqttPeer(mosquitto.port, (device.response_topic, catalog))
            while True:
                topic, _, retained = peer.next(timeout=20)
                if topic == catalog and not retained:
                    break
            peer.publish(device.topic, device.request())
            assert decode_response(peer.next(timeout=20)[1]).code == ErrorCode.OK
            peer.close()
        record = ledger.lookup(1)
        assert record is not None and record.cumulative == 3000
    finally:
        ledger.close()



def test_a_restart_with_a_session_backlog_serves_it(tmp_path: Path, mosquitto: Mosquitto
                                                    ) -> None:
    """Requests sent while the gateway was down wait in its persistent session and arrive
    before the SUBACK that starting waits for: the restarted gateway serves them all."""
    # A fixed client id: the session (and what is queued for it) outlives the process.
    config = make_config(tmp_path, mqtt_port=mosquitto.port, mqtt={"client_id": "gw-backlog"})
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    device = Device(1)
    try:
        with GatewayService(config, PROVIDER_KEY, ledger, channels()):
            pass  # its session and shared subscription stay with the broker
        peer = MqttPeer(mosquitto.port, (device.response_topic,))
        backlog = 1500
        for _ in range(backlog):
            peer.publish(device.topic, device.request())
        with GatewayService(config, PROVIDER_KEY, ledger, channels()):
            codes = [decode_response(peer.next(timeout=30)[1]).code for _ in range(backlog)]
        peer.close()
        assert set(codes) <= {ErrorCode.OK, ErrorCode.STALE_VOUCHER}
        record = ledger.lookup(1)
        assert record is not None and record.cumulative == backlog * 1500
    finally:
        ledger.close()


def test_starting_waits_while_the_backlog_is_served_and_no_longer() -> None:
    """The start's time-out counts silence, not the whole wait: each request taken in or
    answered restarts it (a backlog longer than the time-out is served, not a failed
    start), and a broker that says nothing still fails the start in time."""
    done, progress = threading.Event(), [0]

    def serve() -> None:
        for _ in range(12):  # 0.6 s of steady progress, then the awaited SUBACK
            time.sleep(0.05)
            progress[0] += 1
        done.set()

    worker = threading.Thread(target=serve)
    worker.start()
    started = time.monotonic()
    assert wait_while_progressing(done, 0.2, lambda: progress[0])
    assert time.monotonic() - started > 0.4
    worker.join()
    silent = time.monotonic()
    assert not wait_while_progressing(threading.Event(), 0.2, lambda: 0)
    assert 0.15 < time.monotonic() - silent < 1.0
