"""MQTT ingress: paho-mqtt 2 on MQTT v5, a shared subscription, manual acknowledgement.

One thread does it all, as the broker-only echo of the benchmark does: it runs paho's
network loop itself (as an external event loop, never ``loop_start``), and after each
read the requests that came in are one batch for :meth:`Pipeline.run`: errors and
replays are published at once, the accepted ones once the batch's durable write is done.
While it reads, whatever else is already waiting on the socket joins the batch, so
batches grow with the load and one fsync covers many purchases. Acknowledgements go out
in the same thread: a request is PUBACKed once the broker has PUBACKed its response
(``on_publish``).

One thread, because every hand-off between threads (waking one, passing the GIL, paho's
cross-thread publish) costs more CPU than the overlap it buys. Nothing acknowledged
depends on memory: a request is PUBACKed only after its response was PUBACKed by the
broker, and that response is published only after its voucher was recorded. A gateway
that dies at any point leaves the request unacknowledged in its persistent session; the
broker delivers it again and the ledger's stored response answers it, uncharged.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..logevent import event
from ..protocol.topics import catalog_topic, shared_subscription
from .pipeline import Job, Outcome, Pipeline

SESSION_EXPIRY = 24 * 3600  # seconds the broker keeps our session (and unacked requests)


def wait_while_progressing(done: threading.Event, timeout: float,
                           progress: Callable[[], int]) -> bool:
    """Wait for ``done`` until ``timeout`` seconds pass with no ``progress``. A restarted
    gateway's session backlog arrives before the SUBACK and the PUBACK that starting waits
    for, and is served meanwhile: each request taken in or answered restarts the clock, so
    a long backlog is worked through instead of failing the start."""
    seen = progress()
    deadline = time.monotonic() + timeout
    while not done.wait(min(0.25, timeout)):
        now = time.monotonic()
        if progress() != seen:
            seen = progress()
            deadline = now + timeout
        elif now >= deadline:
            return False
    return True


class IngressError(RuntimeError):
    pass


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Small packets (a response, then a PUBACK) must not wait on Nagle's algorithm."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Ingress:
    """Serves a :class:`~.pipeline.Pipeline` on the provider's shared subscription."""

    MAX_BATCH = 512  # requests read into one batch at the most
    POLL = 0.05  # seconds the loop waits on the socket when idle (stop and catalog checks)

    def __init__(self, host: str, port: int, provider_hex: str, pipeline: Pipeline,
                 catalog: bytes, *, client_id: str = "", inflight: int = 256,
                 keepalive: int = 30, logger: logging.Logger | None = None,
                 ca_file: str | None = None, username: str | None = None,
                 password: str | None = None,
                 retained: tuple[tuple[str, bytes], ...] = ()) -> None:
        self.host, self.port = host, port
        # Published retained on every connection beside the catalog (the registration
        # file); not waited for: a device's purchase does not depend on them.
        self._retained = retained
        self.ca_file, self.username = ca_file, username
        self._refused: str | None = None  # why the broker refused us, if it did
        self.provider_hex = provider_hex
        self._pipeline = pipeline
        self._catalog = catalog
        self._inflight = max(16, min(65535, inflight))
        self._keepalive = keepalive
        self._log = logger or logging.getLogger("nanotoll.gateway.ingress")
        self.client_id = client_id or f"nanotoll-gw-{provider_hex[:12]}-{uuid.uuid4().hex[:8]}"
        self._batch: list[Job] = []  # requests read since the last batch ran
        # A catalog for the loop to publish, and the event it sets once it has.
        self._catalog_due: tuple[bytes, threading.Event] | None = None
        self._generation = 0  # bumps on every (re)connection: acks never cross connections
        self._acks_lock = threading.Lock()
        self._acks: dict[int, tuple[int, int, int]] = {}  # response mid -> request's
        self._early: set[int] = set()  # response mids PUBACKed before we filed them
        self._subscribed = threading.Event()  # SUBACK of the shared subscription
        self._received = 0  # requests taken in and answered: progress while start() waits
        self._catalog_mid: int | None = None  # the catalog published on connecting
        self._catalog_acked = threading.Event()  # ... and its PUBACK
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._drain = 5.0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                   protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_socket_open = _no_delay
        self._client.max_queued_messages_set(0)
        self._client.max_inflight_messages_set(self._inflight)
        if username is not None:
            self._client.username_pw_set(username, password)
        if ca_file is not None:
            try:
                self._client.tls_set(ca_certs=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise IngressError(f"[mqtt] ca_file {ca_file}: {exc}") from exc

    # --------------------------------------------------------- lifecycle --

    def start(self, timeout: float = 10.0) -> None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY
        properties.ReceiveMaximum = self._inflight
        try:
            self._client.connect(self.host, self.port, keepalive=self._keepalive,
                                 clean_start=False, properties=properties)
        except ssl.SSLError as exc:  # before OSError: it is one
            raise IngressError(f"TLS with the MQTT broker at {self._where()} failed: "
                               f"{exc}") from exc
        except OSError as exc:
            raise IngressError(f"cannot reach the MQTT broker at {self.host}:{self.port}: "
                               f"{exc}") from exc
        self._thread = threading.Thread(target=self._loop, name="gw-mqtt", daemon=True)
        self._thread.start()
        # Ready means served: the subscription confirmed (a request sent now reaches us)
        # and the catalog published (a device that looks now finds it).
        if not wait_while_progressing(self._subscribed, timeout, self._progress) or self._refused:
            self.stop()
            raise IngressError(self._refused or f"no subscription to {self.host}:{self.port} "
                               f"within {timeout} s")
        if not wait_while_progressing(self._catalog_acked, timeout, self._progress):
            self.stop()
            raise IngressError(f"the catalog was not acknowledged by {self.host}:{self.port} "
                               f"within {timeout} s")



    def _progress(self) -> int:
        return self._received

    def stop(self, drain: float = 5.0) -> None:
        """Finish the batch in hand; leave later requests unacknowledged (the broker
        delivers them again), and wait up to ``drain`` seconds for the last PUBACKs."""
        self._drain = drain
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30 + drain)
            self._thread = None

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up now (the dashboard's health)."""
        return bool(self._client.is_connected())

    def publish_catalog(self, catalog: bytes) -> None:
        """Publish a new catalog (retained); reconnections publish this one. paho's
        client is the loop thread's alone, so another caller hands the catalog to it and
        waits until it went out (the loop looks every ``POLL`` seconds)."""
        self._catalog = catalog
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            self._client.publish(catalog_topic(self.provider_hex), catalog, qos=1, retain=True)
            return
        published = threading.Event()
        self._catalog_due = (catalog, published)
        published.wait(max(1.0, 20 * self.POLL))

    # -------------------------------------------------------------- loop --

    def _loop(self) -> None:
        """paho's network loop and the pipeline, in this one thread, until ``stop``."""
        client = self._client
        delay = 1.0
        drain_until: float | None = None
        while True:
            if self._stopping.is_set():
                if drain_until is None:
                    drain_until = time.monotonic() + self._drain
                with self._acks_lock:
                    drained = not self._acks
                if drained or time.monotonic() > drain_until:
                    break
            rc = self._network(self.POLL)
            # Read on while requests keep coming in, so that they share one batch.
            while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._batch \
                    and len(self._batch) < self.MAX_BATCH:
                count = len(self._batch)
                rc = self._network(0)
                if len(self._batch) == count:
                    break
            if self._batch:
                self._run(self._batch)
            due, self._catalog_due = self._catalog_due, None
            if due is not None:
                client.publish(catalog_topic(self.provider_hex), due[0], qos=1, retain=True)
                due[1].set()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # Lost the broker: what was not answered was not acknowledged either, and
                # the broker delivers it again. Reconnect with a growing pause.
                if self._stopping.is_set() or self._stopping.wait(delay):
                    break
                try:
                    client.reconnect()
                    delay = 1.0
                except OSError as exc:
                    event(self._log, "mqtt_reconnect_failed", logging.WARNING, error=str(exc))
                    delay = min(delay * 2, 5.0)
        client.disconnect()
        with contextlib.suppress(Exception):
            client.loop(0.1)  # send the DISCONNECT

    def _network(self, timeout: float) -> MQTTErrorCode:
        """One round of paho's loop as an external event loop runs it: wait up to
        ``timeout`` for the socket, read, write what the callbacks queued (acks), keep
        the connection alive. (``loop`` would also make paho signal every publish on a
        wake-up socket pair, two more system calls a purchase for a thread that never
        sleeps while it publishes.) Any failure is a lost connection."""
        client = self._client
        sock = client.socket()
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        try:
            if client.want_write():
                rc = client.loop_write()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return rc
            pending = getattr(sock, "pending", None)  # bytes a TLS socket already holds
            if pending is not None and pending() > 0:
                readable = True
            else:
                writers = [sock] if client.want_write() else []
                readable = bool(select.select([sock], writers, [], timeout)[0])
            if readable:
                rc = client.loop_read()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return rc
            if client.want_write():
                rc = client.loop_write()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return rc
            return client.loop_misc()
        except (OSError, ValueError):  # the socket went away under us
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        except Exception:  # a callback's bug must not end the loop: reconnect instead
            self._log.exception("MQTT loop failed; reconnecting")
            return MQTTErrorCode.MQTT_ERR_UNKNOWN

    # ---------------------------------------------------------- callbacks --

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            event(self._log, "mqtt_connect_refused", logging.ERROR, reason=str(reason),
                  broker=self._where(), username=self.username)
            self._refuse(f"the MQTT broker at {self._where()} refused user "
                         f"{self.username!r}: {reason}")
            return
        self._generation += 1
        with self._acks_lock:  # the broker re-delivers what we had not acknowledged
            self._acks.clear()
            self._early.clear()
        event(self._log, "mqtt_connected", client_id=self.client_id,
              session_present=bool(getattr(flags, "session_present", False)))
        info = client.publish(catalog_topic(self.provider_hex), self._catalog, qos=1,
                              retain=True)
        self._catalog_mid = info.mid
        for topic, payload in self._retained:
            client.publish(topic, payload, qos=1, retain=True)
        client.subscribe(shared_subscription(self.provider_hex), qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        if any(reason.is_failure for reason in reasons):
            event(self._log, "mqtt_subscribe_refused", logging.ERROR,
                  reasons=[str(r) for r in reasons], broker=self._where(),
                  username=self.username)
            self._refuse(f"the MQTT broker at {self._where()} refused user "
                         f"{self.username!r} the provider's request subscription: "
                         f"{', '.join(str(r) for r in reasons)}")
            return
        self._subscribed.set()

    def _refuse(self, why: str) -> None:
        """A refusal while starting ends the start with ``why``; later ones are logged."""
        if not self._subscribed.is_set():
            self._refused = why
            self._subscribed.set()

    def _where(self) -> str:
        tls = f" (TLS, CA {self.ca_file})" if self.ca_file is not None else ""
        return f"{self.host}:{self.port}{tls}"

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        if not self._stopping.is_set():
            event(self._log, "mqtt_disconnected", logging.WARNING, reason=str(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
                    ) -> None:
        if not self._stopping.is_set():  # else left unacknowledged: delivered again
            self._received += 1
            self._batch.append(Job(message.topic, bytes(message.payload),
                                   (message.mid, message.qos, self._generation),
                                   self._respond))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        # Runs inside paho's lock on outgoing messages: only our own small lock here,
        # never a publish.
        if mid == self._catalog_mid:
            self._catalog_acked.set()
        with self._acks_lock:
            request = self._acks.pop(mid, None)
            if request is None:
                if len(self._early) > 10_000:  # mids we never filed (the catalog's)
                    self._early.clear()
                self._early.add(mid)
                return
        self._ack(request)

    def _ack(self, request: tuple[int, int, int]) -> None:
        mid, qos, generation = request
        if qos > 0 and generation == self._generation:
            self._client.ack(mid, qos)

    # ------------------------------------------------------------- batch --

    def _run(self, jobs: list[Job]) -> None:
        self._batch = []
        try:
            self._pipeline.run(jobs)
        except Exception:  # never lose the loop to one batch
            self._log.exception("a batch failed; left unacknowledged")

    def _respond(self, job: Job, outcome: Outcome) -> None:
        """Publish a job's response; its request is acknowledged once the broker has
        acknowledged the response."""
        self._received += 1
        if not outcome.topic:  # nowhere to answer: acknowledge, it was logged
            if job.token is not None:
                self._ack(job.token)
            return
        info = self._client.publish(outcome.topic, outcome.response, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # Not connected: the request stays unacknowledged and comes back.
            event(self._log, "response_not_published", logging.WARNING,
                  topic=outcome.topic, error=mqtt.error_string(info.rc))
            return
        if job.token is None:
            return
        with self._acks_lock:
            if info.mid in self._early:  # the broker was quicker than this thread
                self._early.discard(info.mid)
                early = True
            else:
                self._acks[info.mid] = job.token
                early = False
        if early:
            self._ack(job.token)
