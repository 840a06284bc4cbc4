"""The gateway on the secure broker: it connects with TLS and its own credentials and
serves a device that has its own; a wrong password, a CA it does not trust, a broker
that is down and a client without the provider's rights end its start with an error
that names the broker and the credential."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nanotoll.broker import pki
from nanotoll.broker.clients import add_device
from nanotoll.broker.site import gateway_username
from nanotoll.chain.cache import MemoryChannels
from nanotoll.chain.channel import ChannelState
from nanotoll.gateway.ingress import IngressError
from nanotoll.gateway.service import GatewayService
from nanotoll.ledger.sqlite import SQLiteLedger
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import decode_response
from nanotoll.protocol.signing import address_of
from nanotoll.servers.mosquitto import Mosquitto
from nanotoll.servers.process import free_port
from support.gateway_support import (
    DEVICE_KEY,
    PROVIDER_KEY,
    Device,
    MqttPeer,
    hex_address,
    make_config,
)
from support.tools import require

PROVIDER = hex_address(PROVIDER_KEY)
NOW = int(time.time())


def channels() -> MemoryChannels:
    return MemoryChannels(ChannelState(1, address_of(DEVICE_KEY), address_of(PROVIDER_KEY),
                                       "0x" + "11" * 20, 10_000_000, 0, NOW + 86_400, 1))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    require("mosquitto")
    with Mosquitto(workdir=tmp_path / "broker", secure=True, providers=[PROVIDER]) as running:
        yield running


def _mqtt(broker: Mosquitto, **overrides: Any) -> dict[str, Any]:
    assert broker.site is not None
    table = {"port": broker.port, "ca_file": str(broker.ca_file),
             "username": gateway_username(PROVIDER),
             "password_file": str(broker.site.gateway_password_file(PROVIDER))}
    table.update(overrides)
    return table


def _serve(tmp_path: Path, mqtt: dict[str, Any]) -> tuple[GatewayService, SQLiteLedger]:
    config = make_config(tmp_path, mqtt=mqtt)
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    return GatewayService(config, PROVIDER_KEY, ledger, channels()), ledger


def test_a_device_buys_through_the_secure_broker(tmp_path: Path, broker: Mosquitto) -> None:
    device = Device(1)
    device_hex = address_of(DEVICE_KEY)[2:].lower()
    with broker.admin() as admin:
        credentials = add_device(admin, PROVIDER, device_hex)
    service, ledger = _serve(tmp_path, _mqtt(broker))
    try:
        with service:
            peer = MqttPeer(broker.port, (device.response_topic,), username=device_hex,
                            password=credentials.password, ca_file=str(broker.ca_file))
            peer.publish(device.topic, device.request())
            topic, payload, _ = peer.next()
            assert topic == device.response_topic
            assert decode_response(payload).code == ErrorCode.OK
            peer.close()
        record = ledger.lookup(1)
        assert record is not None and record.cumulative == 1500
    finally:
        ledger.close()


@pytest.mark.parametrize("case", ["wrong password", "another provider's client"])
def test_refused_credentials_end_the_start_naming_them(tmp_path: Path, broker: Mosquitto,
                                                       case: str) -> None:
    if case == "wrong password":
        (tmp_path / "wrong.password").write_text("not-it\n")
        mqtt = _mqtt(broker, password_file=str(tmp_path / "wrong.password"))
        expected = f"refused user '{gateway_username(PROVIDER)}': Not authorized"
    else:
        # A device's credentials cannot take the provider's requests.
        with broker.admin() as admin:
            credentials = add_device(admin, PROVIDER, "22" * 20)
        (tmp_path / "device.password").write_text(credentials.password)
        mqtt = _mqtt(broker, username="22" * 20,
                     password_file=str(tmp_path / "device.password"))
        expected = "refused user '" + "22" * 20 + "' the provider's request subscription"
    service, ledger = _serve(tmp_path, mqtt)
    try:
        with pytest.raises(IngressError) as info:
            service.start()
        assert expected in str(info.value)
        assert f"127.0.0.1:{broker.port} (TLS, CA {broker.ca_file})" in str(info.value)
    finally:
        service.stop()
        ledger.close()


def test_a_broker_it_does_not_trust_or_cannot_reach(tmp_path: Path, broker: Mosquitto) -> None:
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(pki.make_authority("another CA").certificate_pem())
    service, ledger = _serve(tmp_path, _mqtt(broker, ca_file=str(stranger)))
    try:
        with pytest.raises(IngressError, match="certificate verify failed") as info:
            service.start()
        assert f"TLS with the MQTT broker at 127.0.0.1:{broker.port} (TLS, CA {stranger})" \
            in str(info.value)
    finally:
        service.stop()
        ledger.close()
    port = free_port()
    (tmp_path / "down").mkdir()
    service, ledger = _serve(tmp_path / "down", _mqtt(broker, port=port))
    try:
        with pytest.raises(IngressError, match=f"cannot reach the MQTT broker at 127.0.0.1:{port}"):
            service.start()
    finally:
        service.stop()
        ledger.close()


def test_an_expired_broker_certificate_is_refused(tmp_path: Path, broker: Mosquitto) -> None:
    import datetime

    assert broker.site is not None and broker.site.ca_key_file.exists()
    ca = pki.load_authority(broker.site.ca_file, broker.site.ca_key_file)
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    broker.site.issue_server(ca, ["127.0.0.1"], days=1, not_before=past)
    broker.restart()  # mosquitto reads its certificate when it starts
    service, ledger = _serve(tmp_path, _mqtt(broker))
    try:
        with pytest.raises(IngressError, match="certificate has expired") as info:
            service.start()
        assert f"127.0.0.1:{broker.port} (TLS, CA {broker.ca_file})" in str(info.value)
    finally:
        service.stop()
        ledger.close()
