"""A loopback TCP proxy between MQTT clients and the broker that applies packet faults.

This machine's kernel has no netem, so faults are put on the MQTT packets themselves:
each client connection gets its own connection to the broker, the bytes of each
direction are cut into whole packets (:mod:`.mqtt_frames`) and each packet meets its
fate (:mod:`.netfaults`) before it goes on. Packets are never cut or merged, so every
fault is one a client can meet on a real link: a packet missing, twice, late or out
of order, never a torn one.

With ``tls`` (:mod:`.proxy_tls`) both sides are TLS: the proxy presents its own
certificate from the broker's CA to the clients, reads their packets in cleartext, and
dials the broker's TLS listener verifying that CA. CONNECT crosses unchanged, so the
broker checks each client's own login and rights. Without ``tls`` both sides are plain:
for a plain loopback broker a test names.

The proxy runs its own asyncio loop in a thread, listens on loopback only, connects to
a loopback broker only, and stops by itself after ``lifetime_s`` (closing every
connection) if nobody stops it first. Faults apply while it is armed; a fleet arms it
at go, so bring-up happens on a clean link.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from types import TracebackType

from .mqtt_frames import FrameSplitter, FramingError, Packet
from .netfaults import REORDER_HOLD_S, Fate, FaultDice, NetFaults
from .proxy_tls import ProxyTLS

# held_alone: held back to be overtaken, but nothing came within REORDER_HOLD_S
ACTIONS = ("packets", "dropped", "duplicated", "delayed", "reordered", "held_alone")
CONNECT_TIMEOUT_S = 5.0  # the broker's TCP connect and, with TLS, its handshake
HANDSHAKE_TIMEOUT_S = 30.0  # a client's handshake: a board's takes seconds, not this
READ_SIZE = 65536


class ProxyError(RuntimeError):
    """The proxy cannot start; the message says why."""


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class FaultCounts:
    """Per direction and packet type: packets seen and what the faults did to them.

    Written by the proxy's thread, read by any other through :meth:`snapshot`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._packets: dict[str, dict[str, dict[str, int]]] = {}
        self._events: dict[str, int] = {}

    def add(self, direction: str, name: str, action: str, count: int = 1) -> None:
        with self._lock:
            kinds = self._packets.setdefault(direction, {})
            row = kinds.setdefault(name, dict.fromkeys(ACTIONS, 0))
            row[action] += count

    def event(self, name: str) -> None:
        """Connection-level happenings: connections, refused upstream, framing errors."""
        with self._lock:
            self._events[name] = self._events.get(name, 0) + 1

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {"packets": {d: {k: dict(v) for k, v in kinds.items()}
                                for d, kinds in self._packets.items()},
                    "events": dict(self._events)}

    def total(self, direction: str, action: str, name: str | None = None) -> int:
        with self._lock:
            kinds = self._packets.get(direction, {})
            rows = [kinds.get(name, {})] if name is not None else list(kinds.values())
            return sum(row.get(action, 0) for row in rows)


@dataclass
class _Held:
    packet: Packet
    fate: Fate
    until: float  # loop time after which it goes out alone


class _Line:
    """One direction of one connection: the packets waiting to go out, in order."""

    def __init__(self) -> None:
        self.queue: deque[tuple[float, bytes, int]] = deque()  # (release, data, copies)
        self.last_release = 0.0
        self.held: _Held | None = None

    def put(self, packet: Packet, fate: Fate, now: float) -> None:
        # Later packets wait behind a delayed one: the stream stays in order, as TCP's.
        release = max(now + fate.delay_s, self.last_release)
        self.last_release = release
        self.queue.append((release, packet.data, fate.copies))

    def next_due(self) -> float | None:
        times = [t for t in (self.queue[0][0] if self.queue else None,
                             self.held.until if self.held else None) if t is not None]
        return min(times) if times else None


class FaultProxy:
    """``with FaultProxy(broker_port, faults) as proxy:`` clients connect to proxy.port."""

    def __init__(self, upstream_port: int, faults: NetFaults, *,
                 upstream_host: str = "127.0.0.1", host: str = "127.0.0.1", port: int = 0,
                 lifetime_s: float = 3600.0, armed: bool = True,
                 tls: ProxyTLS | None = None) -> None:
        for name, value in (("listen", host), ("upstream", upstream_host)):
            if not _loopback(value):
                raise ProxyError(f"the fault proxy stays on loopback: {name} host {value!r} "
                                 "is not a loopback address")
        if not lifetime_s > 0:
            raise ProxyError(f"lifetime_s must be above 0, got {lifetime_s}")
        faults.validate()
        self.faults = faults
        self.host = host
        self.port = port
        self.upstream = (upstream_host, upstream_port)
        self.tls = tls
        self.lifetime_s = lifetime_s
        self.counts = FaultCounts()
        self.expired = False  # stopped by its lifetime, not by stop()
        self._armed = armed
        self._numbers = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ control --

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise ProxyError("the fault proxy did not start listening within 10 s")
        if self._error is not None:
            raise ProxyError(f"the fault proxy cannot listen on {self.host}:{self.port}: "
                             f"{self._error}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def arm(self, armed: bool = True) -> None:
        """Faults apply from now on (or no longer)."""
        self._armed = armed

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # --------------------------------------------------------------- the loop --

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start() when it happens before ready
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await asyncio.wait_for(self._stop.wait(), self.lifetime_s)
        except TimeoutError:
            self.expired = True
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        number = next(self._numbers)
        self.counts.event("connections")
        broker_writer: asyncio.StreamWriter | None = None
        try:
            if self.tls is not None and not await self._client_handshake(client_writer):
                return
            upstream_tls = self.tls.upstream if self.tls is not None else None
            try:
                broker_reader, upstream = await asyncio.wait_for(
                    asyncio.open_connection(
                        *self.upstream, ssl=upstream_tls,
                        server_hostname=self.upstream[0] if upstream_tls else None),
                    CONNECT_TIMEOUT_S)
            except ssl.SSLError:
                # the broker is not the one the CA vouches for: never forward to it
                self.counts.event("upstream_tls_refused")
                return
            except (OSError, TimeoutError):
                self.counts.event("upstream_refused")  # the broker is down: so is the link
                return
            broker_writer = upstream
            for writer in (client_writer, upstream):
                sock = writer.get_extra_info("socket")
                if sock is not None:  # small packets go out at once, as the broker's do
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pumps = [asyncio.create_task(self._pump("up", number, client_reader, upstream)),
                     asyncio.create_task(self._pump("down", number, broker_reader,
                                                    client_writer))]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except asyncio.CancelledError:
            # Only the proxy's own stop cancels a connection. Ending quietly spares the
            # stream server's callback, which would log the cancelled task as an error.
            pass
        finally:
            client_writer.close()
            if broker_writer is not None:
                broker_writer.close()
            self._connections.discard(task)

    async def _client_handshake(self, client_writer: asyncio.StreamWriter) -> bool:
        """TLS toward the client, before the broker is dialled: a client that fails it
        (does not trust the CA, speaks plain MQTT) is closed and counted."""
        assert self.tls is not None
        try:
            await client_writer.start_tls(self.tls.serve,
                                          ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)
        except (OSError, TimeoutError):  # ssl.SSLError is an OSError
            self.counts.event("tls_refused")
            return False
        return True

    def _fate(self, dice: FaultDice, packet: Packet) -> Fate:
        return dice.roll(packet) if self._armed else Fate()

    async def _pump(self, direction: str, number: int, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        """Read one direction, decide each packet's fate, write what is due; returns at
        the end of the stream (after sending what was queued) or on a broken stream."""
        loop = asyncio.get_running_loop()
        dice = FaultDice(self.faults.link(direction), self.faults.seed, number, direction)
        splitter = FrameSplitter()
        line = _Line()
        ended = False
        try:
            while True:
                now = loop.time()
                if line.held is not None and (ended or line.held.until <= now):
                    # nothing came to overtake it: it goes out alone, merely late
                    line.put(line.held.packet, line.held.fate, now)
                    self.counts.add(direction, line.held.packet.name, "held_alone")
                    line.held = None
                while line.queue and line.queue[0][0] <= now:
                    _release, data, copies = line.queue.popleft()
                    writer.write(data * copies)
                    await writer.drain()
                if ended and not line.queue:
                    return
                due = line.next_due()
                wait = None if due is None else max(0.0, due - loop.time())
                if ended:
                    await asyncio.sleep(wait or 0.0)
                    continue
                try:
                    data = await asyncio.wait_for(reader.read(READ_SIZE), wait)
                except TimeoutError:
                    continue
                if not data:
                    ended = True
                    continue
                for packet in splitter.feed(data):
                    self._admit(direction, packet, self._fate(dice, packet), line,
                                loop.time())
        except FramingError:
            self.counts.event("framing_errors")
        except (ConnectionError, OSError):
            self.counts.event("broken_streams")

    def _admit(self, direction: str, packet: Packet, fate: Fate, line: _Line,
               now: float) -> None:
        count = self.counts.add
        count(direction, packet.name, "packets")
        if fate.drop:
            count(direction, packet.name, "dropped")
            return
        if fate.copies > 1:
            count(direction, packet.name, "duplicated")
        if fate.delay_s:
            count(direction, packet.name, "delayed")
        held = line.held
        if held is not None:
            # this packet overtakes the one held back
            line.put(packet, fate, now)
            line.put(held.packet, held.fate, now)
            line.held = None
            count(direction, held.packet.name, "reordered")
        elif fate.reorder:
            line.held = _Held(packet, fate, now + REORDER_HOLD_S)
        else:
            line.put(packet, fate, now)
