"""TCP_NODELAY for the project's MQTT clients (paho), set as each socket opens.

An MQTT exchange is small packets answered by small packets (a request, its
response, a PUBACK): with Nagle's algorithm on, a second small write waits for the
peer's delayed ACK, tens of milliseconds on Linux. Use it as a paho client's
``on_socket_open``."""

from __future__ import annotations

import contextlib
import socket
from typing import Any


def no_delay(client: Any, userdata: Any, sock: Any) -> None:
    """paho's on_socket_open: Nagle off on a TCP socket (a TLS-wrapped one too);
    a socket without the option (a websocket transport) is left as is."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
