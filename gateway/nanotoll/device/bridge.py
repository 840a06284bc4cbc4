"""The emulated board's UART, bridged to an MQTT broker.

QEMU connects the board's second UART to a TCP port (``-serial tcp:127.0.0.1:PORT``);
:class:`UartBridge` listens there and relays bytes between that connection and a
broker. A UART has no connection of its own, so the bridge reads the MQTT packet
framing of what the board sends: each CONNECT opens a fresh broker connection (and
drops the old one with anything still queued for it), as a TCP board's reconnect
would. With ``ca_file`` the bridge acts as a cellular modem that offloads TLS: it
makes the TLS connection, checking the broker against that CA, and the board sends its
credentials in CONNECT as over any link. A broker it cannot reach or does not trust is
answered to the board with a CONNACK "server unavailable", as such a modem reports a
failed TLS session, and the reason goes to the bridge's log.
Bytes the board sends with no broker connection are dropped and counted; the
board's MQTT client notices the silence (keepalive) and reconnects, so a broker that
went away never sees a session that does not start with CONNECT.

One thread runs the relay (a selector over the listener, the UART and the broker
connection); :meth:`UartBridge.stop` ends it and closes every socket. Used by
``nanotoll sim board`` (:class:`~nanotoll.device.sim.BoardSim`), the benchmarks and
the emulated-board tests.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from ..servers.process import LOOPBACK

CONNECT = 0x10
# MQTT 3.1.1 CONNACK, return code 3: "server unavailable".
CONNACK_UNAVAILABLE = b"\x20\x02\x00\x03"
CHUNK = 4096
# A board's packets are small; a stream that claims more than this is not MQTT.
MAX_PENDING = 1 << 20
BROKER_TIMEOUT = 5.0


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
    packets: list[bytes] = []
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


def _recv(sock: socket.socket) -> bytes:
    """What ``sock`` has (it is ready); b"" when its peer closed it or it failed. A TLS
    socket may hold decrypted bytes the selector cannot see: those are taken too."""
    try:
        data = sock.recv(CHUNK)
        if isinstance(sock, ssl.SSLSocket):
            while data and sock.pending():
                data += sock.recv(sock.pending())
        return data
    except OSError:
        return b""


def tls_context(ca_file: str) -> ssl.SSLContext:
    """A client context that trusts only ``ca_file`` and checks the broker's name."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _discard(sock: socket.socket | None, selector: selectors.BaseSelector) -> None:
    if sock is not None:
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(sock)
        with contextlib.suppress(OSError):
            sock.close()


class UartBridge:
    """Listens on ``listen_port`` (0: a free one) for QEMU's UART connection and relays
    it to the broker at ``broker_host:broker_port``. A context manager; ``log`` prints
    what happens to the connections (``bridge: ...`` lines)."""

    def __init__(self, broker_host: str = LOOPBACK, broker_port: int = 1883,
                 listen_port: int = 0, log: bool = False, ca_file: str | None = None) -> None:
        self.broker = (broker_host, broker_port)
        self.ca_file = ca_file
        self._tls = tls_context(ca_file) if ca_file is not None else None
        self.last_error: str | None = None  # why the last broker connection failed
        self.stats = BridgeStats()
        self._log = log
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((LOOPBACK, listen_port))
            self._listener.listen(1)
        except OSError:
            self._listener.close()
            raise
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._uart: socket.socket | None = None
        self._upstream: socket.socket | None = None
        self._pending = bytearray()

    def __enter__(self) -> UartBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> UartBridge:
        if self._thread is not None or self._stop.is_set():
            raise RuntimeError("the UART bridge was already started")
        self._thread = threading.Thread(target=self._run, name="uart-bridge", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the relay thread and close every socket (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                self._say("relay thread did not stop within 5 s; closing its sockets")
            self._thread = None
        # The thread closes its sockets on the way out; these are what is left when it
        # never ran or did not stop in time.
        for sock in (self._uart, self._upstream, self._listener):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._uart = self._upstream = None

    def drop_broker(self) -> None:
        """Cut the broker side now (what a broker crash looks like to the board). The
        relay thread sees the connection end and closes it; the board's bytes are
        dropped until it sends CONNECT again."""
        upstream = self._upstream
        if upstream is not None:
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_RDWR)

    def wait_for_board(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.stats.uart_connections == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("QEMU did not connect to the UART bridge")
            time.sleep(0.02)

    def _say(self, message: str) -> None:
        if self._log:
            print(f"bridge: {message}", flush=True)

    # -- the relay thread ------------------------------------------------------------

    def _close_upstream(self, selector: selectors.BaseSelector) -> None:
        _discard(self._upstream, selector)
        self._upstream = None

    def _close_uart(self, selector: selectors.BaseSelector) -> None:
        _discard(self._uart, selector)
        self._uart = None
        self._pending.clear()

    def _lose_uart(self, selector: selectors.BaseSelector) -> None:
        """QEMU went away: without a board the broker session is over too."""
        self._say("QEMU closed the UART")
        self._close_uart(selector)
        self._close_upstream(selector)

    def _open_upstream(self, selector: selectors.BaseSelector) -> None:
        self._close_upstream(selector)
        try:
            sock = socket.create_connection(self.broker, timeout=BROKER_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self.broker[0])
        except OSError as exc:
            tls = f" (TLS, CA {self.ca_file})" if self._tls is not None else ""
            self.last_error = f"broker {self.broker[0]}:{self.broker[1]}{tls}: {exc}"
            self._say(f"{self.last_error}; the board is told the server is unavailable")
            self._to_board(CONNACK_UNAVAILABLE)
            return
        # Reads wait in the selector; a send that blocks this long means the broker
        # stopped reading, and the connection is dropped rather than the relay stalled.
        sock.settimeout(BROKER_TIMEOUT)
        self._upstream = sock
        self.stats.broker_connections += 1
        selector.register(sock, selectors.EVENT_READ, "broker")
        self._say("board sent CONNECT: new broker connection")

    def _accept(self, selector: selectors.BaseSelector) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:  # the connection went away before it was taken
            return
        conn.setblocking(True)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._uart is not None:
            self._say("QEMU connected again: the old UART connection is closed")
        self._close_uart(selector)
        self._close_upstream(selector)
        self._uart = conn
        self.stats.uart_connections += 1
        selector.register(conn, selectors.EVENT_READ, "uart")

    def _from_board(self, selector: selectors.BaseSelector) -> None:
        assert self._uart is not None
        data = _recv(self._uart)
        if not data:
            self._lose_uart(selector)
            return
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
            except OSError as exc:
                self._say(f"sending to the broker failed: {exc}")
                self.stats.dropped_bytes += len(packet)
                self._close_upstream(selector)
        if len(self._pending) > MAX_PENDING:
            self.stats.dropped_bytes += len(self._pending)
            self._pending.clear()

    def _from_broker(self, selector: selectors.BaseSelector) -> None:
        assert self._upstream is not None
        data = _recv(self._upstream)
        if not data:
            self._say("broker closed the connection")
            self._close_upstream(selector)
            return
        if self._uart is None:
            self.stats.dropped_bytes += len(data)
            return
        if not self._to_board(data):
            self._lose_uart(selector)

    def _to_board(self, data: bytes) -> bool:
        if self._uart is None:
            return True
        try:
            self._uart.sendall(data)
        except OSError:
            return False
        self.stats.bytes_to_board += len(data)
        return True

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        self._listener.setblocking(False)
        selector.register(self._listener, selectors.EVENT_READ, "listen")
        handlers = {"listen": self._accept, "uart": self._from_board,
                    "broker": self._from_broker}
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.2):
                    # an earlier event of this round may have closed this socket
                    if key.data == "uart" and key.fileobj is not self._uart:
                        continue
                    if key.data == "broker" and key.fileobj is not self._upstream:
                        continue
                    handlers[key.data](selector)
        finally:
            self._close_uart(selector)
            self._close_upstream(selector)
            with contextlib.suppress(OSError):
                self._listener.close()
            selector.close()
