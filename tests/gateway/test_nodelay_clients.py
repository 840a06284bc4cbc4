"""The project's CPython MQTT clients turn Nagle's algorithm off (nanotoll.nodelay):
the reference provider, which answers the device's requests in the benches, is one."""

from __future__ import annotations

import socket
from typing import Any

from nanotoll.bench.provider import ReferenceProvider


def test_reference_provider_socket_has_nodelay(mosquitto: Any) -> None:
    with ReferenceProvider(mosquitto.port) as provider:
        sock = provider._client.socket()
        assert sock is not None
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
