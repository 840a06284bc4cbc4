# nanotoll device: an asyncio MQTT 3.1.1 client.
#
# Persistent session (clean_session=0), keepalive pings, last will, SUBSCRIBE,
# PUBLISH QoS 0/1 with retransmission under the original packet id (DUP set)
# until PUBACK, receiving QoS 0/1 (PUBACK sent), reconnect with exponential
# backoff, bounded queues and a timeout on every wait.
#
# The transport is a "link": an object with `async open()` returning an asyncio
# Stream (readinto, write, drain), `close(stream)` and `describe()`. StreamLink
# wraps any pollable byte stream such as a UART; tcp_link.py's TcpLink opens a
# socket (with TLS), kept apart so that boards on a UART do not carry it.

import asyncio
from time import ticks_ms, ticks_diff, ticks_add
from micropython import const

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)
_DUP = const(0x08)


# CONNACK return codes 1-5 of MQTT 3.1.1, as the console shows them.
_REFUSALS = const(("", "protocol version refused", "client id refused", "broker unavailable",
                   "bad user name or password", "not authorised"))


class MQTTError(Exception):
    pass


class MQTTTimeout(MQTTError):
    pass


def _link_error(link, exc):
    """An error opening the link or in the TLS handshake, as an MQTTError naming the
    broker (and its CA): the console's line then says which broker and credential."""
    args = getattr(exc, "args", ())
    if isinstance(exc, OSError) and args and isinstance(args[0], int):
        code = args[0]
        if code < 0:  # mbedTLS's error codes are negative
            why = "TLS error -0x%04x" % -code
        else:
            import errno

            why = getattr(errno, "errorcode", {}).get(code, "errno %d" % code)
        if len(args) > 1:
            why += " " + str(args[1])
    else:  # mbedTLS's certificate checks raise ValueError with their findings
        why = " ".join(str(exc).split()) or type(exc).__name__
    return MQTTError("broker %s: %s" % (link.describe(), why))


class StreamLink:
    """Any byte stream the asyncio poller can wait on (a UART, a pipe)."""

    def __init__(self, device, reset=None):
        self.device = device
        self.reset = reset  # optional callable run before each (re)connect

    def describe(self):
        return "on the serial link"

    async def open(self):
        if self.reset:
            self.reset()
        return asyncio.StreamReader(self.device)

    def close(self, stream):
        pass


class Inbox:
    """A bounded FIFO of received (topic, payload), a str and a bytearray; the oldest
    is dropped when full."""

    def __init__(self, size):
        self._items = []
        self._size = size
        self._event = asyncio.Event()
        self.dropped = 0

    def put(self, item):
        if len(self._items) >= self._size:
            self._items.pop(0)
            self.dropped += 1
        self._items.append(item)
        self._event.set()

    def __len__(self):
        return len(self._items)

    async def get(self, timeout_ms=None):
        """The oldest item; MQTTTimeout after timeout_ms. Without a timeout the event is
        awaited directly: a wait_for makes a task, a closure and a runner each time."""
        if timeout_ms is None:
            while not self._items:
                self._event.clear()
                await self._event.wait()
            return self._items.pop(0)
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while not self._items:
            self._event.clear()
            left = ticks_diff(deadline, ticks_ms())
            if left <= 0:
                raise MQTTTimeout("no message")
            try:
                await asyncio.wait_for_ms(self._event.wait(), left)
            except asyncio.TimeoutError:
                pass
        return self._items.pop(0)


class _Suback:
    """A SUBSCRIBE waiting for its SUBACK: code stays -1 if the link goes first."""

    def __init__(self):
        self.event = asyncio.Event()
        self.code = -1


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return out


def _str(s):
    if isinstance(s, str):
        s = s.encode()
    n = len(s)
    if n > 0xFFFF:
        raise MQTTError("string too long")
    return bytes((n >> 8, n & 0xFF)) + s


def _packet(first, *parts):
    # The parts copied into one buffer of the packet's size: no body-sized
    # intermediate (a bytearray: bytes.join refuses mixed bytes and bytearray here).
    size = 0
    for part in parts:
        size += len(part)
    head = bytes((first,)) + _varint(size)
    packet = bytearray(len(head) + size)
    packet[: len(head)] = head
    at = len(head)
    for part in parts:
        packet[at : at + len(part)] = part
        at += len(part)
    return packet


class MQTTClient:
    def __init__(
        self,
        link,
        client_id,
        keepalive=60,
        clean=False,
        will=None,
        user=None,
        password=None,
        timeout_ms=5000,
        response_ms=3000,
        max_repubs=3,
        max_packet=10240,
        inbox_size=8,
        max_inflight=4,
        backoff_min_ms=250,
        backoff_max_ms=30000,
        random=None,
        log=None,
    ):
        # will = (topic, payload, retain, qos)
        self.link = link
        self.client_id = client_id
        self.keepalive = keepalive
        self.clean = clean
        self.will = will
        self.user = user
        self.password = password
        self.timeout_ms = timeout_ms
        self.response_ms = response_ms
        self.max_repubs = max_repubs
        self.max_packet = max_packet
        self.max_inflight = max_inflight
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self._random = random  # callable(n) -> n random bytes, for backoff jitter
        self.log = log
        self.inbox = Inbox(inbox_size)
        self._subs = []  # [(topic, qos)]
        self._inflight = {}  # pid -> Event set by PUBACK
        self._subacks = {}  # pid -> _Suback
        self._pid = 0
        self._stream = None
        self._gen = 0  # connection generation, bumped on every CONNACK
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tasks = []
        self._runner = None
        self._running = False
        self._last_rx = ticks_ms()
        self._last_tx = ticks_ms()
        self.session_present = False
        self.last_error = None
        # counters, useful in tests and logs
        self.connects = 0
        self.retransmits = 0
        self.oversized = 0
        self.heap_errors = 0  # MemoryErrors that took the link down or stopped a connect
        self._puback = bytearray(b"\x40\x02\x00\x00")
        # a packet's first byte and its length, read one by one; a topic's length and
        # a packet id, two at a time (each read is a turn of the poller)
        self._byte = bytearray(2)
        self._pair = memoryview(self._byte)
        self._byte_view = self._pair[:1]

    # ---------------------------------------------------------------- public

    def isconnected(self):
        return self._up.is_set()

    async def start(self, timeout_ms=None):
        """Start the connection supervisor and wait for the first CONNACK."""
        if self._runner is None:
            self._running = True
            self._runner = asyncio.create_task(self._supervise())
        await self.wait_connected(timeout_ms or self.timeout_ms)

    async def wait_connected(self, timeout_ms):
        if self._up.is_set():
            return
        try:
            await asyncio.wait_for_ms(self._up.wait(), timeout_ms)
        except asyncio.TimeoutError:
            raise MQTTTimeout("not connected: %r" % (self.last_error,))

    async def stop(self):
        """DISCONNECT cleanly (the broker then drops the will) and stop every task."""
        self._running = False
        if self._up.is_set():
            try:
                await self._send(b"\xe0\x00")
            except Exception:
                pass
        if self._runner is not None:
            self._runner.cancel()
            self._runner = None
        self._teardown()

    def drop(self, reason="dropped"):
        """Force the link down (tests, or a caller that knows it is dead)."""
        self._fail(MQTTError(reason))

    async def subscribe(self, topic, qos=1, timeout_ms=None):
        for t, _ in self._subs:
            if t == topic:
                break
        else:
            self._subs.append((topic, qos))
        if self._up.is_set():
            await self._subscribe(topic, qos, timeout_ms or self.timeout_ms)

    async def publish(self, topic, payload, qos=1, retain=False, timeout_ms=None):
        """Publish; for QoS 1 return once the broker acknowledged (PUBACK).

        Unacknowledged messages are resent with DUP under their original packet id,
        after response_ms on the same connection and at once after a reconnect.
        Raises MQTTTimeout when timeout_ms passes without PUBACK.
        """
        deadline = ticks_add(ticks_ms(), timeout_ms or self.timeout_ms)
        topic = _str(topic)
        flags = _PUBLISH | (2 if qos else 0) | (1 if retain else 0)
        if not qos:
            await self._wait_up(deadline)
            await self._send(_packet(flags, topic, payload))
            return 0
        while len(self._inflight) >= self.max_inflight:
            if ticks_diff(deadline, ticks_ms()) <= 0:
                raise MQTTTimeout("in-flight window full")
            await asyncio.sleep_ms(20)
        pid = self._next_pid()
        event = asyncio.Event()
        self._inflight[pid] = event
        # The packet is made again for each (re)transmission from these parts, so no
        # copy of the payload is held while the PUBACK is awaited.
        pid_bytes = bytes((pid >> 8, pid & 0xFF))
        sent_gen = -1
        sent_at = ticks_ms()
        tries = 0
        try:
            while not event.is_set():
                now = ticks_ms()
                if ticks_diff(deadline, now) <= 0:
                    raise MQTTTimeout("no PUBACK for packet %d" % pid)
                if self._up.is_set():
                    gen = self._gen
                    due = gen != sent_gen or ticks_diff(now, sent_at) >= self.response_ms
                    if due:
                        if gen == sent_gen:
                            tries += 1
                            if tries > self.max_repubs:
                                # the link looks dead: reconnect, then resend
                                tries = 0
                                self._fail(MQTTError("no PUBACK"))
                                continue
                        first = flags | (_DUP if sent_gen >= 0 else 0)
                        if sent_gen >= 0:
                            self.retransmits += 1
                        try:
                            await self._send(_packet(first, topic, pid_bytes, payload))
                        except Exception as exc:
                            self._fail(exc)
                            continue
                        sent_gen = gen
                        sent_at = ticks_ms()
                try:
                    await asyncio.wait_for_ms(event.wait(), 100)
                except asyncio.TimeoutError:
                    pass
            return pid
        finally:
            self._inflight.pop(pid, None)

    # ---------------------------------------------------------------- internals

    def _log(self, *args):
        if self.log:
            self.log(*args)

    def _next_pid(self):
        while True:
            self._pid = self._pid % 65535 + 1
            if self._pid not in self._inflight and self._pid not in self._subacks:
                return self._pid

    async def _wait_up(self, deadline):
        left = ticks_diff(deadline, ticks_ms())
        if left <= 0:
            raise MQTTTimeout("not connected")
        await self.wait_connected(left)

    async def _send(self, packet):
        stream = self._stream
        if stream is None:
            raise MQTTError("not connected")
        async with self._lock:
            stream.write(packet)
            try:
                await asyncio.wait_for_ms(stream.drain(), self.timeout_ms)
            except asyncio.TimeoutError:
                raise MQTTTimeout("write stalled")
        self._last_tx = ticks_ms()

    def _fail(self, exc):
        if isinstance(exc, MemoryError):
            self.heap_errors += 1
        if self._running and not self._down.is_set():
            self._log("mqtt: link down:", repr(exc))
            self.last_error = exc
        self._up.clear()
        self._down.set()

    def _teardown(self):
        self._up.clear()
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self._stream is not None:
            self.link.close(self._stream)
            self._stream = None
        # waiters on a SUBACK of the dead connection give up
        for pid in self._subacks:
            self._subacks[pid].event.set()

    async def _supervise(self):
        backoff = self.backoff_min_ms
        while self._running:
            self._down.clear()
            try:
                await self._connect()
                backoff = self.backoff_min_ms
                await self._down.wait()
            except asyncio.CancelledError:
                self._teardown()
                raise
            except Exception as exc:  # OSError, EOFError, MQTTError, TimeoutError
                self.last_error = exc
                if isinstance(exc, MemoryError):
                    self.heap_errors += 1
                self._log("mqtt: connect failed:", repr(exc))
            self._teardown()
            if not self._running:
                break
            jitter = 0
            if self._random:
                jitter = self._random(1)[0] * backoff // 512
            await asyncio.sleep_ms(backoff + jitter)
            backoff = min(backoff * 2, self.backoff_max_ms)

    def _connect_packet(self):
        flags = 0x02 if self.clean else 0
        payload = _str(self.client_id)
        if self.will:
            topic, message, retain, qos = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += _str(topic) + _str(message)
        if self.user is not None:
            flags |= 0x80
            payload += _str(self.user)
            if self.password is not None:
                flags |= 0x40
                payload += _str(self.password)
        ka = self.keepalive
        var = b"\x00\x04MQTT\x04" + bytes((flags, ka >> 8, ka & 0xFF))
        return _packet(_CONNECT, var + payload)

    async def _connect(self):
        try:
            stream = await asyncio.wait_for_ms(self.link.open(), self.timeout_ms)
        except asyncio.TimeoutError:
            raise MQTTTimeout("link open")
        except (MQTTError, MemoryError):
            raise
        except Exception as exc:  # OSError: refused, unreachable
            raise _link_error(self.link, exc)
        self._stream = stream
        try:
            await self._send(self._connect_packet())  # TLS: the handshake happens here
            packet = await asyncio.wait_for_ms(  # type: ignore[var-annotated]
                self._read_packet(), self.timeout_ms
            )
        except asyncio.TimeoutError:
            raise MQTTTimeout("no CONNACK")
        except (MQTTError, MemoryError):  # the device's heap, not the broker
            raise
        except Exception as exc:  # OSError, ValueError (certificate), EOFError
            raise _link_error(self.link, exc)
        first, body = packet
        if first != _CONNACK or len(body) != 2:
            raise MQTTError("expected CONNACK, got 0x%02x" % first)
        if body[1]:
            code = body[1]
            why = _REFUSALS[code] if code < len(_REFUSALS) else "code %d" % code
            raise MQTTError("broker refused client %s (user %s): %s, at %s"
                            % (self.client_id, self.user, why, self.link.describe()))
        self.session_present = bool(body[0] & 1)
        self._last_rx = ticks_ms()
        self.connects += 1
        self._tasks = [asyncio.create_task(self._reader())]
        if self.keepalive:
            self._tasks.append(asyncio.create_task(self._pinger()))
        # Retained messages (the catalog) come only with a SUBSCRIBE: always renew.
        for topic, qos in self._subs:
            await self._subscribe(topic, qos, self.timeout_ms)
        self._gen += 1
        self._up.set()
        self._log("mqtt: connected, session present:", self.session_present)

    async def _subscribe(self, topic, qos, timeout_ms):
        pid = self._next_pid()
        entry = _Suback()
        self._subacks[pid] = entry
        try:
            body = bytes((pid >> 8, pid & 0xFF)) + _str(topic) + bytes((qos,))
            await self._send(_packet(_SUBSCRIBE, body))
            try:
                await asyncio.wait_for_ms(entry.event.wait(), timeout_ms)
            except asyncio.TimeoutError:
                raise MQTTTimeout("no SUBACK")
            if entry.code < 0:
                raise MQTTError("link lost before SUBACK")
            if entry.code == 0x80:
                raise MQTTError("subscription refused: %s" % topic)
        finally:
            self._subacks.pop(pid, None)

    async def _fill(self, stream, view):
        # view filled from the stream in place. readexactly() grows its result one read
        # at a time (r += r2, each read first sized for all that is left): on a UART
        # that hands over a few bytes a read, a packet's size in garbage many times over.
        got = 0
        size = len(view)
        while got < size:
            n = await stream.readinto(view[got:] if got else view)
            if n == 0:
                raise EOFError
            if n:  # None: woken with nothing to read yet
                got += n

    async def _read_u8(self):
        await self._fill(self._stream, self._byte_view)
        return self._byte[0]

    async def _read_u16(self):
        await self._fill(self._stream, self._pair)
        return self._byte[0] << 8 | self._byte[1]

    async def _read_head(self):
        # (first byte, remaining length) of the next packet
        if self._stream is None:
            raise MQTTError("not connected")
        first = await self._read_u8()
        size = 0
        shift = 0
        while True:
            b = await self._read_u8()
            size |= (b & 0x7F) << shift
            if not b & 0x80:
                return first, size
            shift += 7
            if shift > 21:
                raise MQTTError("bad remaining length")

    async def _read_bytes(self, size):
        # size bytes in a block of their own
        block = bytearray(size)
        if size:
            await self._fill(self._stream, memoryview(block))
        return block

    async def _skip(self, size):
        if not size:
            return
        view = memoryview(bytearray(min(size, 512)))
        while size:
            n = min(size, 512)
            await self._fill(self._stream, view[:n])
            size -= n

    async def _read_packet(self):
        # (first byte, body) of the next packet, other than a PUBLISH (_on_publish)
        first, size = await self._read_head()
        if size > self.max_packet:
            raise MQTTError("packet 0x%02x of %d bytes" % (first, size))
        return first, await self._read_bytes(size)

    async def _reader(self):
        try:
            while True:
                first, size = await self._read_head()
                self._last_rx = ticks_ms()
                kind = first & 0xF0
                if kind == _PUBLISH:
                    await self._on_publish(first, size)
                    continue
                if size > self.max_packet:
                    raise MQTTError("packet 0x%02x of %d bytes" % (first, size))
                body = await self._read_bytes(size)
                if kind == _PUBACK and size == 2:
                    event = self._inflight.get(body[0] << 8 | body[1])
                    if event:
                        event.set()
                elif kind == _SUBACK and size >= 3:
                    entry = self._subacks.get(body[0] << 8 | body[1])
                    if entry:
                        entry.code = body[2]
                        entry.event.set()
                elif kind == _PINGRESP:
                    pass
                else:
                    raise MQTTError("unexpected packet 0x%02x" % first)
                body = None  # not held while the next packet is awaited
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    async def _on_publish(self, first, size):
        # Read in its parts, the payload straight into a block of its own size: read
        # whole and then copied out, a response was in the heap twice at once, while
        # the agent was verifying the one before or a receipt arrived (its highest point).
        qos = (first >> 1) & 3
        if qos == 2 or qos == 3:
            raise MQTTError("QoS 2 is not supported")
        if size < (4 if qos else 2):
            raise MQTTError("short PUBLISH")
        n = await self._read_u16()
        left = size - 2 - n - (2 if qos else 0)  # the payload's bytes
        if left < 0:
            raise MQTTError("short PUBLISH")
        oversized = size > self.max_packet
        if oversized:
            self.oversized += 1
            await self._skip(n)  # the topic is not needed to acknowledge it
            topic = ""
        else:
            topic = (await self._read_bytes(n)).decode()
        if qos:
            pid = await self._read_u16()
            ack = self._puback
            ack[2] = pid >> 8
            ack[3] = pid & 0xFF
        if oversized:
            await self._skip(left)
            payload = None
        else:
            payload = await self._read_bytes(left)
        if qos:
            await self._send(self._puback)
        if payload is None:
            self._log("mqtt: dropped an oversized message")
            return
        self.inbox.put((topic, payload))

    async def _pinger(self):
        period = self.keepalive * 1000
        try:
            while True:
                await asyncio.sleep_ms(period // 4)
                now = ticks_ms()
                if ticks_diff(now, self._last_rx) > period:
                    self._fail(MQTTTimeout("keepalive: broker silent"))
                    return
                if ticks_diff(now, self._last_tx) >= period // 2:
                    await self._send(b"\xc0\x00")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)
