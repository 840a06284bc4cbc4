"""The emulated board's UART bridge as a modem with TLS offload: it makes the TLS
connection to the secure broker, and the board's own CONNECT carries its credentials.
A board is played here by a socket that speaks MQTT 3.1.1 to the bridge, as QEMU's
UART does."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from nanotoll.broker import pki
from nanotoll.broker.clients import Credentials, add_device
from nanotoll.device.bridge import UartBridge
from nanotoll.servers.mosquitto import Mosquitto
from support.tools import require

PROVIDER = "aa" * 20
DEVICE = "11" * 20


def _text(value: str) -> bytes:
    raw = value.encode()
    return len(raw).to_bytes(2, "big") + raw


def connect_packet(credentials: Credentials) -> bytes:
    flags = 0xC2  # user name, password, clean session
    body = (b"\x00\x04MQTT\x04" + bytes((flags, 0, 30)) + _text("nt-" + credentials.username)
            + _text(credentials.username) + _text(credentials.password))
    return bytes((0x10, len(body))) + body


def connack(bridge: UartBridge, credentials: Credentials) -> bytes:
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as board:
        bridge.wait_for_board()
        board.sendall(connect_packet(credentials))
        answer = b""
        while len(answer) < 4:
            chunk = board.recv(4 - len(answer))
            assert chunk, "the bridge closed the UART"
            answer += chunk
        return answer


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    require("mosquitto")
    with Mosquitto(workdir=tmp_path / "broker", secure=True) as running:
        yield running


@pytest.fixture
def device(broker: Mosquitto) -> Credentials:
    with broker.admin() as admin:
        return add_device(admin, PROVIDER, DEVICE)


def test_the_bridge_makes_the_tls_connection_and_the_board_logs_in(
        broker: Mosquitto, device: Credentials) -> None:
    with UartBridge(broker.host, broker.port, ca_file=str(broker.ca_file)) as bridge:
        assert connack(bridge, device) == b"\x20\x02\x00\x00"
        assert bridge.last_error is None
    with UartBridge(broker.host, broker.port, ca_file=str(broker.ca_file)) as bridge:
        refused = connack(bridge, Credentials(DEVICE, "wrong"))
        assert refused[:3] == b"\x20\x02\x00" and refused[3] in (4, 5)


def test_a_broker_the_bridge_does_not_trust_is_reported_to_both_sides(
        broker: Mosquitto, device: Credentials, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(pki.make_authority("another CA").certificate_pem())
    with UartBridge(broker.host, broker.port, ca_file=str(stranger)) as bridge:
        # The board reads "server unavailable"; the bridge's log says why.
        assert connack(bridge, device) == b"\x20\x02\x00\x03"
        assert bridge.last_error is not None
        assert f"broker {broker.host}:{broker.port} (TLS, CA {stranger})" in bridge.last_error
        assert "certificate verify failed" in bridge.last_error


def test_a_broker_that_is_down_is_reported_to_both_sides(device: Credentials,
                                                         broker: Mosquitto) -> None:
    from nanotoll.servers.process import free_port

    port = free_port()
    with UartBridge("127.0.0.1", port, ca_file=str(broker.ca_file)) as bridge:
        assert connack(bridge, device) == b"\x20\x02\x00\x03"
        assert f"broker 127.0.0.1:{port}" in str(bridge.last_error)
