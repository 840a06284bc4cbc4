"""The emulated board's UART, bridged to an MQTT broker.

QEMU connects the board's second UART to a TCP port (``-serial tcp:127.0.0.1:PORT``);
:class:`UartBridge` listens there and relays bytes between that connection and a
broker. A UART has no connection of its own, so the bridge reads the MQTT packet
framing of what the board sends: each CONNECT opens a fresh broker connection (and
drops the old one with anything still queued for it), as a TCP board's reconnect
would. Bytes the board sends with no broker connection are dropped; the board's
MQTT client notices the silence (keepalive) and reconnects.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from dataclasses import dataclass

from ..services import LOOPBACK

CONNECT = 0x10


@dataclass
class BridgeStats:
    uart_connections: int = 0
    broker_connections: int = 0
    bytes_to_broker: int = 0
    bytes_to_board: int = 0
    dropped_bytes: int = 0


def split_packets(buffer: bytearray) -> list[bytes]:
    """Take the complete MQTT packets off the front of ``buffer`` (in place).

    A buffer that cannot start a packet (a remaining-length over four bytes) is
    cleared: the board's next CONNECT starts a clean stream."""
    packets = []
    while len(buffer) >= 2:
        length = 0
        shift = 0
        index = 1
        while True:
            if index >= len(buffer):
                return packets  # the length is not all here yet
            byte = buffer[index]
            length |= (byte & 0x7F) << shift
            index += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                buffer.clear()
                return packets
        if len(buffer) < index + length:
            return packets
        packets.append(bytes(buffer[:index + length]))
        del buffer[:index + length]
    return packets


class UartBridge:
    """Listens on ``listen_port`` (0: a free one) for QEMU's UART connection."""

    def __init__(self, broker_host: str = LOOPBACK, broker_port: int = 1883,
                 listen_port: int = 0, log: bool = False) -> None:
        self.broker = (broker_host, broker_port)
        self.stats = BridgeStats()
        self._log = log
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, listen_port))
        self._listener.listen(1)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._uart: socket.socket | None = None
        self._upstream: socket.socket | None = None
        self._pending = bytearray()

    def __enter__(self) -> UartBridge:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="uart-bridge", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for sock in (self._uart, self._upstream, self._listener):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def _say(self, message: str) -> None:
        if self._log:
            print(f"bridge: {message}", flush=True)

    def _close_upstream(self, selector: selectors.BaseSelector) -> None:
        if self._upstream is not None:
            with contextlib.suppress(KeyError, ValueError):
                selector.unregister(self._upstream)
            with contextlib.suppress(OSError):
                self._upstream.close()
            self._upstream = None

    def _open_upstream(self, selector: selectors.BaseSelector) -> None:
        self._close_upstream(selector)
        try:
            sock = socket.create_connection(self.broker, timeout=5)
        except OSError as exc:
            self._say(f"broker {self.broker[0]}:{self.broker[1]} refused: {exc}")
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        self._upstream = sock
        self.stats.broker_connections += 1
        selector.register(sock, selectors.EVENT_READ, "broker")
        self._say("board sent CONNECT: new broker connection")

    def _from_board(self, data: bytes, selector: selectors.BaseSelector) -> None:
        self._pending += data
        for packet in split_packets(self._pending):
            if packet[0] & 0xF0 == CONNECT:
                self._open_upstream(selector)
            if self._upstream is None:
                self.stats.dropped_bytes += len(packet)
                continue
            try:
                self._upstream.sendall(packet)
                self.stats.bytes_to_broker += len(packet)
            except OSError:
                self._close_upstream(selector)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        self._listener.setblocking(False)
        selector.register(self._listener, selectors.EVENT_READ, "listen")
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.2):
                    if key.data == "listen":
                        conn, _ = self._listener.accept()
                        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        if self._uart is not None:
                            selector.unregister(self._uart)
                            self._uart.close()
                        self._uart = conn
                        self._pending.clear()
                        self.stats.uart_connections += 1
                        selector.register(conn, selectors.EVENT_READ, "uart")
                    elif key.data == "uart":
                        assert self._uart is not None
                        data = self._uart.recv(4096)
                        if not data:  # QEMU went away
                            selector.unregister(self._uart)
                            self._uart.close()
                            self._uart = None
                            self._close_upstream(selector)
                            continue
                        self._from_board(data, selector)
                    elif key.data == "broker":
                        assert self._upstream is not None
                        try:
                            data = self._upstream.recv(4096)
                        except OSError:
                            data = b""
                        if not data:
                            self._say("broker closed the connection")
                            self._close_upstream(selector)
                            continue
                        if self._uart is not None:
                            self._uart.sendall(data)
                            self.stats.bytes_to_board += len(data)
        finally:
            selector.close()

    def wait_for_board(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.stats.uart_connections == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("QEMU did not connect to the UART bridge")
            time.sleep(0.02)
