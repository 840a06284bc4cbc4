"""The fault proxy against a real mosquitto: packets cross it whole however the bytes are
cut; each fault happens at about the rate asked, in the direction asked, and the proxy's
counts say exactly what it did; it stays on loopback and stops by itself.

The proxy as fleets use it is TLS on both sides in front of the secure broker: devices
log in through it with their own credentials and rights, and it refuses a client or a
broker that the CA does not vouch for (the tests under "TLS"). The packet mechanics
tests use the plain loopback broker: their raw client cuts and times the very bytes the
proxy reads, which TLS records would cut again, and their topics need no rights.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from nanotoll.bench.provider import DEVICE_KEY, PROVIDER_KEY, addr_hex
from nanotoll.broker import pki
from nanotoll.broker.clients import add_device
from nanotoll.broker.site import gateway_username
from nanotoll.fleet.faultproxy import FaultProxy, ProxyError
from nanotoll.fleet.netfaults import NetFaults, parse_net_faults
from nanotoll.fleet.proxy_tls import ProxyTLS, proxy_tls, upstream_context
from nanotoll.protocol.topics import request_topic, response_topic, shared_subscription
from nanotoll.servers.mosquitto import Mosquitto
from nanotoll.servers.process import free_port
from support.gateway_support import MqttPeer
from support.secure_broker import secure_broker

# --------------------------------------------------------------- a raw MQTT client --
# Written here from the MQTT 3.1.1 text, apart from the proxy's own framing code, so the
# bytes can be cut and timed at will.


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def _text(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">H", len(raw)) + raw


def connect_packet(client_id: str, username: str | None = None,
                   password: str | None = None) -> bytes:
    if username is None or password is None:
        return _packet(0x10, _text("MQTT") + b"\x04\x02\x00\x3c" + _text(client_id))
    # flags: username, password, clean session
    return _packet(0x10, _text("MQTT") + b"\x04\xc2\x00\x3c" + _text(client_id)
                   + _text(username) + _text(password))


def publish_packet(topic: str, payload: bytes, packet_id: int | None = None) -> bytes:
    if packet_id is None:
        return _packet(0x30, _text(topic) + payload)
    return _packet(0x32, _text(topic) + struct.pack(">H", packet_id) + payload)


def payload_for(number: int) -> bytes:
    """Lengths vary with the number; the digest makes a torn or spliced packet show."""
    head = b"%06d:" % number
    body = bytes((number * 7 + i) % 251 for i in range(number % 97))
    return head + body + hashlib.sha256(head + body).digest()


def number_of(payload: bytes) -> int:
    head, rest = payload[:7], payload[7:]
    assert hashlib.sha256(head + rest[:-32]).digest() == rest[-32:], "torn payload"
    return int(head[:6])


class RawClient:
    """A socket speaking just enough MQTT to connect, publish, subscribe and ping."""

    def __init__(self, port: int, client_id: str,
                 context: ssl.SSLContext | None = None) -> None:
        plain = socket.create_connection(("127.0.0.1", port), timeout=10)
        plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = plain if context is None else \
            context.wrap_socket(plain, server_hostname="127.0.0.1")
        self.client_id = client_id

    def connect(self, username: str | None = None, password: str | None = None) -> None:
        self.sock.sendall(connect_packet(self.client_id, username, password))
        assert self.read() == (0x20, b"\x00\x00")

    def subscribe(self, topic: str, qos: int = 0) -> None:
        self.sock.sendall(_packet(0x82, b"\x00\x01" + _text(topic) + bytes([qos])))
        assert self.read() == (0x90, b"\x00\x01" + bytes([qos]))

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise EOFError("closed")
            data += chunk
        return data

    def read(self) -> tuple[int, bytes]:
        first = self._exactly(1)[0]
        size = shift = 0
        while True:
            byte = self._exactly(1)[0]
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first, self._exactly(size)

    def close(self) -> None:
        self.sock.close()


def _drain(peer: MqttPeer, marker: bytes, timeout: float = 20.0) -> list[bytes]:
    """Payloads the peer received up to the marker (sent last, with the faults off)."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        _topic, payload, _retained = peer.next(max(0.1, deadline - time.monotonic()))
        if payload == marker:
            return got
        got.append(payload)


def _drain_raw(client: RawClient, marker: bytes) -> list[bytes]:
    got: list[bytes] = []
    while True:
        first, body = client.read()
        assert first >> 4 == 3, hex(first)
        payload = body[2 + struct.unpack(">H", body[:2])[0]:]
        if payload == marker:
            return got
        got.append(payload)


@pytest.fixture
def peers() -> Iterator[list[Any]]:
    """Everything a test opens (each has close()), closed at the end whatever happens."""
    opened: list[Any] = []
    yield opened
    for thing in reversed(opened):
        thing.close()


def _wait_seen(proxy: FaultProxy, direction: str, count: int) -> None:
    """Until the proxy has read `count` PUBLISH packets that way: disarming it earlier
    would let the last ones through untouched."""
    deadline = time.monotonic() + 20
    while proxy.counts.total(direction, "packets", "PUBLISH") < count:
        assert time.monotonic() < deadline, f"the proxy saw too few packets {direction}"
        time.sleep(0.01)


def _proxy(broker: Mosquitto, faults: NetFaults, **kwargs: object) -> FaultProxy:
    return FaultProxy(broker.port, faults, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ framing --


def test_packets_cut_or_merged_anyhow_cross_whole(mosquitto: Mosquitto,
                                                  peers: list[Any]) -> None:
    watcher = MqttPeer(mosquitto.port, subscribe=("split/#",))
    peers.append(watcher)
    with _proxy(mosquitto, NetFaults()) as proxy:
        client = RawClient(proxy.port, "split-client")
        peers.append(client)
        for byte in connect_packet("split-client"):  # one byte per read of the proxy
            client.sock.sendall(bytes([byte]))
            time.sleep(0.002)
        assert client.read() == (0x20, b"\x00\x00")
        big = b"B" * 20_000  # a three-byte remaining length, many reads
        stream = (publish_packet("split/a", b"first", 1) + publish_packet("split/b", b"second", 2)
                  + _packet(0xC0, b"") + publish_packet("split/c", big, 3))
        # two packets and the start of a third in one write, then odd pieces
        for start, end in ((0, 40), (40, 41), (41, 5000), (5000, len(stream))):
            client.sock.sendall(stream[start:end])
            time.sleep(0.01)
        answers = [client.read() for _ in range(4)]
        assert sorted(answers) == [(0x40, b"\x00\x01"), (0x40, b"\x00\x02"),
                                   (0x40, b"\x00\x03"), (0xD0, b"")]
        got = {watcher.next()[:2] for _ in range(3)}
        assert got == {("split/a", b"first"), ("split/b", b"second"), ("split/c", big)}
        counts = proxy.counts.snapshot()["packets"]
        assert isinstance(counts, dict)
        assert {k: v["packets"] for k, v in counts["up"].items()} == \
            {"CONNECT": 1, "PUBLISH": 3, "PINGREQ": 1}
        assert {k: v["packets"] for k, v in counts["down"].items()} == \
            {"CONNACK": 1, "PUBACK": 3, "PINGRESP": 1}


def test_a_stream_that_is_not_mqtt_is_closed(mosquitto: Mosquitto) -> None:
    with _proxy(mosquitto, NetFaults()) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        sock.sendall(b"\x00\x00GET / HTTP/1.0\r\n\r\n")
        assert sock.recv(10) == b""
        sock.close()
        assert proxy.counts.snapshot()["events"] == {"connections": 1, "framing_errors": 1}


# ------------------------------------------------------------------ fault rates --

N = 2000


def test_loss_and_duplication_at_the_rates_asked_in_each_direction(
        mosquitto: Mosquitto, peers: list[Any]) -> None:
    faults = parse_net_faults("up.loss=0.2,up.dup=0.1,down.loss=0.1,down.dup=0.3,seed=11")
    watcher = MqttPeer(mosquitto.port, subscribe=("up/#",))  # direct: no faults
    feeder = MqttPeer(mosquitto.port)
    peers += [watcher, feeder]
    with _proxy(mosquitto, faults, armed=False) as proxy:
        sender = RawClient(proxy.port, "lossy-sender")
        receiver = RawClient(proxy.port, "lossy-receiver")
        peers += [sender, receiver]
        sender.connect()
        receiver.connect()
        receiver.subscribe("down/#", qos=0)
        proxy.arm()
        for number in range(N):  # QoS 0: nothing re-sends what the proxy drops
            sender.sock.sendall(publish_packet("up/x", payload_for(number)))
            feeder.client.publish("down/x", payload_for(number), qos=0)
        _wait_seen(proxy, "up", N)
        _wait_seen(proxy, "down", N)
        proxy.arm(False)
        sender.sock.sendall(publish_packet("up/x", b"end"))
        feeder.client.publish("down/x", b"end", qos=0)
        went_up = [number_of(p) for p in _drain(watcher, b"end")]
        came_down = [number_of(p) for p in _drain_raw(receiver, b"end")]
        counts = proxy.counts

    for direction, got, loss, dup in (("up", went_up, 0.2, 0.1),
                                      ("down", came_down, 0.1, 0.3)):
        dropped = counts.total(direction, "dropped", "PUBLISH")
        duplicated = counts.total(direction, "duplicated", "PUBLISH")
        assert counts.total(direction, "packets", "PUBLISH") == N + 1  # and the marker
        # what arrived is exactly what the proxy says it did
        assert len(set(got)) == N - dropped, direction
        assert len(got) - len(set(got)) == duplicated, direction
        assert abs(dropped / N - loss) < 0.04, (direction, dropped)
        assert abs(duplicated / (N - dropped) - dup) < 0.04, (direction, duplicated)
        assert got == sorted(got), "loss and duplication never reorder"


def test_delayed_packets_are_late_and_hold_the_stream_in_order(
        mosquitto: Mosquitto, peers: list[Any]) -> None:
    faults = parse_net_faults("up.delay=0.25,up.delay_ms=60,down.delay=0.25,"
                              "down.delay_ms=60,seed=5")
    watcher = MqttPeer(mosquitto.port, subscribe=("late/#",))
    peers.append(watcher)
    rounds = 200
    with _proxy(mosquitto, faults, armed=False) as proxy:
        client = RawClient(proxy.port, "pinger")
        peers.append(client)
        client.connect()
        proxy.arm()
        slow = 0
        for _ in range(rounds):
            started = time.monotonic()
            client.sock.sendall(_packet(0xC0, b""))
            assert client.read() == (0xD0, b"")
            slow += time.monotonic() - started >= 0.055
        # a burst behind delayed packets: late, but never overtaking them
        for number in range(300):
            client.sock.sendall(publish_packet("late/x", payload_for(number)))
        _wait_seen(proxy, "up", 300)
        proxy.arm(False)
        client.sock.sendall(publish_packet("late/x", b"end"))
        burst = [number_of(p) for p in _drain(watcher, b"end")]
        counts = proxy.counts
    up, down = counts.total("up", "delayed", "PINGREQ"), counts.total("down", "delayed",
                                                                       "PINGRESP")
    assert abs(up / rounds - 0.25) < 0.09 and abs(down / rounds - 0.25) < 0.09, (up, down)
    # every round with a delayed packet was slow; a busy machine may slow a few others
    assert max(up, down) <= slow <= up + down + 5, (slow, up, down)
    assert burst == list(range(300))
    assert abs(counts.total("up", "delayed", "PUBLISH") / 300 - 0.25) < 0.1


def test_reordering_swaps_whole_packets_and_loses_none(mosquitto: Mosquitto,
                                                       peers: list[Any]) -> None:
    faults = parse_net_faults("reorder=0.2,seed=3")
    watcher = MqttPeer(mosquitto.port, subscribe=("mixed/#",))
    feeder = MqttPeer(mosquitto.port)
    peers += [watcher, feeder]
    with _proxy(mosquitto, faults, armed=False) as proxy:
        sender = RawClient(proxy.port, "mixed-sender")
        receiver = RawClient(proxy.port, "mixed-receiver")
        peers += [sender, receiver]
        sender.connect()
        receiver.connect()
        receiver.subscribe("back/#", qos=0)
        proxy.arm()
        # all in one go, so that a held packet has a next one to be overtaken by
        sender.sock.sendall(b"".join(publish_packet("mixed/x", payload_for(n))
                                     for n in range(N)))
        for number in range(N):
            feeder.client.publish("back/x", payload_for(number), qos=0)
        _wait_seen(proxy, "up", N)
        _wait_seen(proxy, "down", N)
        proxy.arm(False)
        sender.sock.sendall(publish_packet("mixed/x", b"end"))
        feeder.client.publish("back/x", b"end", qos=0)
        went_up = [number_of(p) for p in _drain(watcher, b"end")]
        came_down = [number_of(p) for p in _drain_raw(receiver, b"end")]
        counts = proxy.counts
    for direction, got in (("up", went_up), ("down", came_down)):
        assert sorted(got) == list(range(N)), direction  # whole, none lost, none twice
        swaps = sum(1 for a, b in zip(got, got[1:], strict=False) if a > b)
        reordered = counts.total(direction, "reordered", "PUBLISH")
        assert swaps == reordered, direction
        # a packet right behind a held one is never held itself: p / (1 + p) of them
        assert 0.12 < reordered / N < 0.21, (direction, reordered)
        assert all(b > a or a - b == 1 for a, b in zip(got, got[1:], strict=False))


# -------------------------------------------------------------------------- TLS --

PROVIDER = addr_hex(PROVIDER_KEY)
DEVICE = addr_hex(DEVICE_KEY)
OTHER_DEVICE = "ab" * 20


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Mosquitto]:
    """The secure broker with the test device's client and another device's."""
    with secure_broker(tmp_path / "broker") as (broker, _login):
        with broker.admin() as admin:
            add_device(admin, PROVIDER, OTHER_DEVICE)
        yield broker


def _login(broker: Mosquitto) -> tuple[str, str]:
    """The test device's login, made afresh (add_device resets the password)."""
    with broker.admin() as admin:
        credentials = add_device(admin, PROVIDER, DEVICE)
    return credentials.username, credentials.password


def _site(broker: Mosquitto) -> Any:
    assert broker.site is not None, "the secure broker has a site"
    return broker.site


def _tls_proxy(broker: Mosquitto, folder: Path, **kwargs: Any) -> FaultProxy:
    site = _site(broker)
    tls = proxy_tls(site.ca_file, site.ca_key_file, broker.host, folder)
    return FaultProxy(broker.port, NetFaults(), tls=tls, **kwargs)


def _trusting(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def _gateway(broker: Mosquitto) -> MqttPeer:
    """The provider's gateway, direct to the broker's TLS listener, on its requests."""
    site = _site(broker)
    return MqttPeer(broker.port, subscribe=(shared_subscription(PROVIDER),),
                    username=gateway_username(PROVIDER),
                    password=site.gateway_password(PROVIDER), ca_file=str(site.ca_file))


def _events(proxy: FaultProxy, name: str, count: int) -> dict[str, int]:
    """The proxy's events once `name` has happened `count` times (its thread counts it
    after the client has seen the outcome)."""
    deadline = time.monotonic() + 10
    while True:
        events = proxy.counts.snapshot()["events"]
        assert isinstance(events, dict)
        if events.get(name, 0) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.01)


def test_a_device_logs_in_through_the_tls_proxy_with_its_own_rights(
        secure: Mosquitto, peers: list[Any], tmp_path: Path) -> None:
    username, password = _login(secure)
    gateway = _gateway(secure)
    peers.append(gateway)
    with _tls_proxy(secure, tmp_path / "proxy") as proxy:
        device = RawClient(proxy.port, "tls-device", _trusting(_site(secure).ca_file))
        peers.append(device)
        device.connect(username, password)
        device.subscribe(response_topic(PROVIDER, DEVICE), qos=0)
        device.sock.sendall(publish_packet(request_topic(PROVIDER, DEVICE), b"mine", 1))
        assert device.read() == (0x40, b"\x00\x01")
        # the broker still judges each device's rights: another device's topic is not its
        device.sock.sendall(publish_packet(request_topic(PROVIDER, OTHER_DEVICE), b"theirs", 2))
        assert device.read()[0] >> 4 == 4  # acknowledged, not delivered (MQTT 3.1.1)
        device.sock.sendall(publish_packet(request_topic(PROVIDER, DEVICE), b"end", 3))
        assert device.read() == (0x40, b"\x00\x03")
        got = [gateway.next()[:2] for _ in range(2)]
        assert got == [(request_topic(PROVIDER, DEVICE), b"mine"),
                       (request_topic(PROVIDER, DEVICE), b"end")]
        gateway.client.publish(response_topic(PROVIDER, DEVICE), b"answer", qos=0)
        first, body = device.read()
        assert first >> 4 == 3 and body.endswith(b"answer")

        # a wrong password crosses the proxy unchanged and the broker refuses it
        stranger = RawClient(proxy.port, "tls-stranger", _trusting(_site(secure).ca_file))
        peers.append(stranger)
        stranger.sock.sendall(connect_packet("tls-stranger", username, password + "x"))
        assert stranger.read() == (0x20, b"\x00\x05")  # not authorised

        # the proxy read every packet in cleartext between its two TLS ends
        packets = proxy.counts.snapshot()["packets"]
        assert isinstance(packets, dict)
        assert {k: v["packets"] for k, v in packets["up"].items()} == \
            {"CONNECT": 2, "SUBSCRIBE": 1, "PUBLISH": 3}
        assert packets["down"]["CONNACK"]["packets"] == 2
        assert packets["down"]["PUBACK"]["packets"] == 3


def test_the_proxy_presents_its_own_certificate_from_the_brokers_ca(
        secure: Mosquitto, tmp_path: Path) -> None:
    site = _site(secure)
    with _tls_proxy(secure, tmp_path / "proxy") as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as plain, \
            _trusting(site.ca_file).wrap_socket(plain, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
        version = tls.version()
    assert der is not None
    presented = x509.load_der_x509_certificate(der)
    ca = x509.load_pem_x509_certificate(site.ca_file.read_bytes())
    presented.verify_directly_issued_by(ca)
    broker_certificate = x509.load_pem_x509_certificate(site.server_cert_file.read_bytes())
    assert presented.public_key() != broker_certificate.public_key()  # not the broker's key
    assert presented.serial_number != broker_certificate.serial_number
    assert version == "TLSv1.2"  # as the broker's listener


def test_a_client_without_tls_or_trusting_another_ca_is_refused(
        secure: Mosquitto, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(pki.make_authority("not the broker's CA").certificate_pem())
    with _tls_proxy(secure, tmp_path / "proxy") as proxy:
        plain = RawClient(proxy.port, "plain-device")
        plain.sock.sendall(connect_packet("plain-device"))
        with pytest.raises((EOFError, ConnectionResetError)):
            plain.read()
        plain.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            RawClient(proxy.port, "fooled-device", _trusting(other_ca))
        events = _events(proxy, "tls_refused", 2)
    # neither ever reached the broker
    assert events == {"connections": 2, "tls_refused": 2}


def test_a_broker_the_ca_does_not_vouch_for_is_never_forwarded_to(
        secure: Mosquitto, tmp_path: Path) -> None:
    site = _site(secure)
    other = pki.make_authority("not the broker's CA")
    (tmp_path / "other").mkdir()
    other_ca = tmp_path / "other" / "ca.pem"
    other_ca.write_bytes(other.certificate_pem())
    honest = proxy_tls(site.ca_file, site.ca_key_file, secure.host, tmp_path / "proxy")
    misled = ProxyTLS(honest.serve, upstream_context(other_ca), honest.certificate_file)
    username, password = _login(secure)
    with FaultProxy(secure.port, NetFaults(), tls=misled) as proxy:
        device = RawClient(proxy.port, "tls-device", _trusting(site.ca_file))
        device.sock.sendall(connect_packet("tls-device", username, password))
        with pytest.raises((EOFError, ConnectionResetError)):
            device.read()  # the password never left for the wrong broker
        device.close()
        events = _events(proxy, "upstream_tls_refused", 1)
    assert events == {"connections": 1, "upstream_tls_refused": 1}
    assert proxy.counts.total("up", "packets") == 0


# ------------------------------------------------------------------- boundaries --


def test_loopback_only() -> None:
    with pytest.raises(ProxyError, match="loopback"):
        FaultProxy(1883, NetFaults(), host="0.0.0.0")
    with pytest.raises(ProxyError, match="loopback"):
        FaultProxy(1883, NetFaults(), upstream_host="192.0.2.1")


def test_it_stops_by_itself_at_the_end_of_its_lifetime(mosquitto: Mosquitto) -> None:
    proxy = _proxy(mosquitto, NetFaults(), lifetime_s=1.0)
    with proxy:
        client = RawClient(proxy.port, "short-lived")
        client.connect()
        started = time.monotonic()
        with pytest.raises(EOFError):
            client.read()  # nothing comes; the proxy closes the link at its end
        assert 0.5 < time.monotonic() - started < 5
        client.close()
        deadline = time.monotonic() + 5
        while proxy.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proxy.running and proxy.expired
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()


def test_a_broker_that_is_down_closes_the_client_at_once() -> None:
    with FaultProxy(free_port(), NetFaults()) as proxy:
        client = RawClient(proxy.port, "nobody-home")
        client.sock.sendall(connect_packet("nobody-home"))
        with pytest.raises(EOFError):
            client.read()
        client.close()
        assert proxy.counts.snapshot()["events"] == {"connections": 1, "upstream_refused": 1}
