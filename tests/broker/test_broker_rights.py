"""The secure broker on a real mosquitto: who may connect, publish and subscribe.

Each check is made as an attacker would: a real MQTT v5 client over TLS, reading the
broker's CONNACK, SUBACK and PUBACK reason codes, and a second client that shows what
was (or was not) delivered.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from nanotoll.broker.clients import Credentials, add_device, add_owner, grant_owner, revoke_device
from nanotoll.broker.site import gateway_username
from nanotoll.protocol import topics
from nanotoll.servers.mosquitto import Mosquitto
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from support.tools import require

PROVIDER = "aa" * 20
DEVICE = "11" * 20
OTHER = "22" * 20
OWNER = "33" * 20
OTHER_OWNER = "44" * 20
WAIT = 5.0


class Probe:
    """A paho client that waits for each answer and keeps what it receives."""

    def __init__(self, broker: Mosquitto, credentials: Credentials | None,
                 ca_file: Path | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        if credentials is not None:
            self.client.username_pw_set(credentials.username, credentials.password)
        self.client.tls_set(ca_certs=str(ca_file or broker.ca_file))
        self.received: list[str] = []
        self._answer: Any = None
        self._answered = threading.Event()
        self.client.on_connect = lambda c, u, f, reason, p: self._set(reason)
        self.client.on_subscribe = lambda c, u, mid, reasons, p: self._set(reasons[0])
        self.client.on_publish = lambda c, u, mid, reason, p: self._set(reason)
        self.client.on_message = lambda c, u, message: self.received.append(message.topic)
        self._broker = broker

    def _set(self, answer: Any) -> None:
        self._answer = answer
        self._answered.set()

    def _wait(self) -> Any:
        assert self._answered.wait(WAIT), "no answer from the broker"
        self._answered.clear()
        return self._answer

    def connect(self) -> Any:
        self.client.connect(self._broker.host, self._broker.port)
        self.client.loop_start()
        return self._wait()

    def subscribe(self, topic: str) -> Any:
        self.client.subscribe(topic, qos=1)
        return self._wait()

    def publish(self, topic: str, retain: bool = False) -> Any:
        self.client.publish(topic, b"probe", qos=1, retain=retain)
        return self._wait()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    require("mosquitto")
    with Mosquitto(workdir=tmp_path / "broker", secure=True, providers=[PROVIDER]) as running:
        yield running


@pytest.fixture
def devices(broker: Mosquitto) -> dict[str, Credentials]:
    with broker.admin() as admin:
        return {DEVICE: add_device(admin, PROVIDER, DEVICE),
                OTHER: add_device(admin, PROVIDER, OTHER)}


@pytest.fixture
def probes() -> Iterator[list[Probe]]:
    made: list[Probe] = []
    yield made
    for probe in made:
        probe.close()


def _connected(broker: Mosquitto, credentials: Credentials | None,
               probes: list[Probe]) -> Probe:
    probe = Probe(broker, credentials)
    probes.append(probe)
    assert not probe.connect().is_failure
    return probe


def _gateway(broker: Mosquitto) -> Credentials:
    assert broker.site is not None
    return Credentials(gateway_username(PROVIDER), broker.site.gateway_password(PROVIDER))


def _refused(broker: Mosquitto, credentials: Credentials | None) -> Any:
    probe = Probe(broker, credentials)
    try:
        return probe.connect()
    finally:
        probe.close()


def test_anonymous_and_wrong_password_refused(broker: Mosquitto,
                                              devices: dict[str, Credentials]) -> None:
    assert _refused(broker, None).getName() == "Not authorized"
    wrong = Credentials(DEVICE, devices[OTHER].password)
    assert _refused(broker, wrong).getName() == "Not authorized"
    assert _refused(broker, Credentials(DEVICE, "")).getName() == "Not authorized"


def test_a_device_reaches_only_its_own_topics(broker: Mosquitto,
                                              devices: dict[str, Credentials],
                                              probes: list[Probe]) -> None:
    gateway = _connected(broker, _gateway(broker), probes)
    assert not gateway.subscribe(topics.shared_subscription(PROVIDER)).is_failure
    other = _connected(broker, devices[OTHER], probes)
    assert not other.subscribe(topics.response_topic(PROVIDER, OTHER)).is_failure
    device = _connected(broker, devices[DEVICE], probes)

    assert not device.subscribe(topics.response_topic(PROVIDER, DEVICE)).is_failure
    assert not device.subscribe(topics.catalog_topic(PROVIDER)).is_failure
    for refused in (topics.response_topic(PROVIDER, OTHER), topics.request_filter(PROVIDER),
                    topics.shared_subscription(PROVIDER), f"nt/1/{PROVIDER}/#", "#"):
        assert device.subscribe(refused).getName() == "Not authorized", refused

    assert not device.publish(topics.request_topic(PROVIDER, DEVICE)).is_failure
    assert not device.publish(topics.status_topic(PROVIDER, DEVICE), retain=True).is_failure
    for refused in (topics.request_topic(PROVIDER, OTHER), topics.catalog_topic(PROVIDER),
                    topics.response_topic(PROVIDER, DEVICE),
                    topics.response_topic(PROVIDER, OTHER),
                    topics.policy_topic(PROVIDER, DEVICE), topics.status_topic(PROVIDER, OTHER)):
        assert device.publish(refused).getName() == "Not authorized", refused

    # What the broker let through reached the gateway; nothing refused reached anyone.
    assert not gateway.publish(topics.response_topic(PROVIDER, OTHER)).is_failure
    threading.Event().wait(0.3)
    assert gateway.received == [topics.request_topic(PROVIDER, DEVICE)]
    assert other.received == [topics.response_topic(PROVIDER, OTHER)]


def test_the_gateway_serves_its_provider_only(broker: Mosquitto,
                                              probes: list[Probe]) -> None:
    gateway = _connected(broker, _gateway(broker), probes)
    assert not gateway.publish(topics.catalog_topic(PROVIDER), retain=True).is_failure
    assert not gateway.publish(topics.response_topic(PROVIDER, DEVICE)).is_failure
    other_provider = "bb" * 20
    for refused in (topics.catalog_topic(other_provider),
                    topics.request_topic(PROVIDER, DEVICE),
                    topics.policy_topic(PROVIDER, DEVICE)):
        assert gateway.publish(refused).getName() == "Not authorized", refused
    for refused in (topics.shared_subscription(other_provider),
                    topics.response_topic(PROVIDER, "+"), topics.request_filter(PROVIDER)):
        assert gateway.subscribe(refused).getName() == "Not authorized", refused


def test_an_owner_publishes_and_reads_only_its_devices_policy(
        broker: Mosquitto, devices: dict[str, Credentials], probes: list[Probe]) -> None:
    with broker.admin() as admin:
        owner_credentials = add_owner(admin, OWNER)
        grant_owner(admin, OWNER, PROVIDER, DEVICE)
        other_owner_credentials = add_owner(admin, OTHER_OWNER)
        grant_owner(admin, OTHER_OWNER, PROVIDER, OTHER)
    mine, theirs = topics.policy_topic(PROVIDER, DEVICE), topics.policy_topic(PROVIDER, OTHER)
    device = _connected(broker, devices[DEVICE], probes)
    assert not device.subscribe(mine).is_failure
    owner = _connected(broker, owner_credentials, probes)
    # It reads its device's policy back: what it retained there is delivered to it.
    assert not owner.subscribe(mine).is_failure
    assert not owner.publish(mine, retain=True).is_failure
    for refused in (theirs, topics.request_topic(PROVIDER, DEVICE),
                    topics.response_topic(PROVIDER, DEVICE), topics.catalog_topic(PROVIDER),
                    topics.status_topic(PROVIDER, DEVICE)):
        assert owner.publish(refused).getName() == "Not authorized", refused
    for refused in (theirs, topics.response_topic(PROVIDER, DEVICE),
                    topics.request_topic(PROVIDER, DEVICE), topics.policy_topic(PROVIDER, "+"),
                    f"nt/1/{PROVIDER}/#"):
        assert owner.subscribe(refused).getName() == "Not authorized", refused
    # the provider's public documents, which discovery checks before provisioning
    for readable in (topics.catalog_topic(PROVIDER), topics.registration_topic(PROVIDER)):
        assert not owner.subscribe(readable).is_failure, readable
    # The other owner's policy, retained on its device's topic, never reaches this owner.
    other_owner = _connected(broker, other_owner_credentials, probes)
    assert not other_owner.publish(theirs, retain=True).is_failure
    threading.Event().wait(0.3)
    assert device.received == [mine]
    assert owner.received == [mine]


def test_a_revoked_device_is_cut_off_and_refused(broker: Mosquitto,
                                                 devices: dict[str, Credentials],
                                                 probes: list[Probe]) -> None:
    device = _connected(broker, devices[DEVICE], probes)
    dropped = threading.Event()
    device.client.on_disconnect = lambda *args: dropped.set()
    with broker.admin() as admin:
        assert revoke_device(admin, DEVICE)
        assert not revoke_device(admin, DEVICE)
    assert dropped.wait(WAIT), "the broker kept the revoked device's connection"
    assert _refused(broker, devices[DEVICE]).getName() == "Not authorized"
    assert not _refused(broker, devices[OTHER]).is_failure


def test_a_new_password_replaces_the_old(broker: Mosquitto,
                                         devices: dict[str, Credentials]) -> None:
    with broker.admin() as admin:
        fresh = add_device(admin, PROVIDER, DEVICE)
    assert _refused(broker, devices[DEVICE]).getName() == "Not authorized"
    assert not _refused(broker, fresh).is_failure


def test_a_client_that_does_not_trust_the_ca_does_not_connect(
        broker: Mosquitto, devices: dict[str, Credentials], tmp_path: Path) -> None:
    from nanotoll.broker import pki

    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(pki.make_authority("another CA").certificate_pem())
    probe = Probe(broker, devices[DEVICE], ca_file=stranger)
    with pytest.raises(ssl.SSLCertVerificationError):
        probe.connect()
    probe.close()


def test_the_revoke_command_cuts_a_device_off(broker: Mosquitto,
                                             devices: dict[str, Credentials],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from nanotoll.cli import main

    assert broker.site is not None
    assert main(["broker", "revoke", str(broker.site.root), "0x" + DEVICE]) == 0
    assert "revoked" in capsys.readouterr().out
    assert _refused(broker, devices[DEVICE]).getName() == "Not authorized"
    assert main(["broker", "revoke", str(broker.site.root), DEVICE]) == 0
    assert "had no client" in capsys.readouterr().out
