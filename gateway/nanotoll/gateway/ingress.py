"""MQTT ingress: paho-mqtt 2 on MQTT v5, a shared subscription, manual acknowledgement.

Two threads, each with one job, and batches between them:

* paho's network thread reads requests and queues them (``on_message``), and
  acknowledges a request once the broker has acknowledged its response (``on_publish``);
* the *work* thread takes every request waiting, runs the pipeline's first stage on them
  (rules, serve, sign), publishes errors and replays at once, stores the accepted ones in
  one durable write (:meth:`Pipeline.commit`) and then publishes their responses.

Meanwhile the network thread keeps reading, so the next batch is whatever arrived during
this one's work and fsync. The first cut had sixteen workers, then a verify and a commit
thread with a queue between them; each hand-off cost more CPU (waking a thread, passing
the GIL) than the overlap of verifying with an fsync of ~0.2 ms gained. Nothing
acknowledged depends on memory: a request is PUBACKed only after its response was
PUBACKed by the broker, and that response is published only after its voucher was
committed. A gateway that dies at any point leaves the request unacknowledged in its
persistent session; the broker delivers it again and the ledger's stored response
answers it, uncharged.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .logs import event
from .pipeline import Job, Outcome, Pipeline

SESSION_EXPIRY = 24 * 3600  # seconds the broker keeps our session (and unacked requests)


class IngressError(RuntimeError):
    pass


def shared_subscription(provider_hex: str) -> str:
    return f"$share/nanotoll-{provider_hex}/nt/1/{provider_hex}/req/+"


def catalog_topic(provider_hex: str) -> str:
    return f"nt/1/{provider_hex}/catalog"


_STOP = object()


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Small packets (a response, then a PUBACK) must not wait on Nagle's algorithm."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Ingress:
    """Serves a :class:`~.pipeline.Pipeline` on the provider's shared subscription."""

    MAX_BATCH = 256

    def __init__(self, host: str, port: int, provider_hex: str, pipeline: Pipeline,
                 catalog: bytes, *, client_id: str = "", inflight: int = 256,
                 keepalive: int = 30, logger: logging.Logger | None = None) -> None:
        self.host, self.port = host, port
        self.provider_hex = provider_hex
        self._pipeline = pipeline
        self._catalog = catalog
        self._inflight = max(16, min(65535, inflight))
        self._keepalive = keepalive
        self._log = logger or logging.getLogger("nanotoll.gateway.ingress")
        self.client_id = client_id or f"nanotoll-gw-{provider_hex[:12]}-{uuid.uuid4().hex[:8]}"
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._generation = 0  # bumps on every (re)connection: acks never cross connections
        self._acks_lock = threading.Lock()
        self._acks: dict[int, tuple[int, int, int]] = {}  # response mid -> request's
        self._early: set[int] = set()  # response mids PUBACKed before we filed them
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                   protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._client.on_socket_open = _no_delay
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.max_queued_messages_set(0)
        self._client.max_inflight_messages_set(self._inflight)

    # --------------------------------------------------------- lifecycle --

    def start(self, timeout: float = 10.0) -> None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY
        properties.ReceiveMaximum = self._inflight
        thread = threading.Thread(target=self._work_loop, name="gw-work", daemon=True)
        thread.start()
        self._threads.append(thread)
        try:
            self._client.connect(self.host, self.port, keepalive=self._keepalive,
                                 clean_start=False, properties=properties)
        except OSError as exc:
            self.stop()
            raise IngressError(f"cannot reach the MQTT broker at {self.host}:{self.port}: "
                               f"{exc}") from exc
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise IngressError(f"no subscription to {self.host}:{self.port} within {timeout} s")

    def stop(self, drain: float = 5.0) -> None:
        """Finish the batches in hand; leave queued requests unacknowledged (the broker
        delivers them again), and wait up to ``drain`` seconds for the last PUBACKs."""
        self._stopping.set()
        self._inbox.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        deadline = time.monotonic() + drain
        while time.monotonic() < deadline:
            with self._acks_lock:
                if not self._acks:
                    break
            time.sleep(0.01)
        self._client.disconnect()
        self._client.loop_stop()

    def publish_catalog(self, catalog: bytes) -> None:
        """Publish a new catalog (retained); reconnections publish this one."""
        self._catalog = catalog
        self._client.publish(catalog_topic(self.provider_hex), catalog, qos=1, retain=True)

    # ---------------------------------------------------------- callbacks --

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            event(self._log, "mqtt_connect_refused", logging.ERROR, reason=str(reason))
            return
        self._generation += 1
        with self._acks_lock:  # the broker re-delivers what we had not acknowledged
            self._acks.clear()
            self._early.clear()
        event(self._log, "mqtt_connected", client_id=self.client_id,
              session_present=bool(getattr(flags, "session_present", False)))
        client.publish(catalog_topic(self.provider_hex), self._catalog, qos=1, retain=True)
        client.subscribe(shared_subscription(self.provider_hex), qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        if any(reason.is_failure for reason in reasons):
            event(self._log, "mqtt_subscribe_refused", logging.ERROR,
                  reasons=[str(r) for r in reasons])
            return
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        if not self._stopping.is_set():
            event(self._log, "mqtt_disconnected", logging.WARNING, reason=str(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
                    ) -> None:
        self._inbox.put(Job(message.topic, bytes(message.payload),
                            (message.mid, message.qos, self._generation)))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        # Runs in the network thread, inside paho's lock on outgoing messages: only our
        # own small lock here, never a publish.
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

    # ------------------------------------------------------------ stages --

    def _take(self, source: queue.SimpleQueue[Any], first: Any) -> tuple[list[Any], bool]:
        """``first`` and whatever else is waiting (up to MAX_BATCH); True on _STOP."""
        batch = [first]
        while len(batch) < self.MAX_BATCH:
            try:
                item = source.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _work_loop(self) -> None:
        while True:
            first = self._inbox.get()
            if first is _STOP:
                return
            jobs, stop = self._take(self._inbox, first)
            try:
                finished, pending, again = self._pipeline.prepare(jobs)
                self._publish(finished)
                if pending:
                    finished, retry = self._pipeline.commit(pending)
                    self._publish(finished)
                    again.extend(retry)
                for job in again:
                    self._inbox.put(job)
            except Exception:  # never lose the stage to one batch
                self._log.exception("a batch failed; left unacknowledged")
            if stop:
                return

    def _publish(self, finished: Sequence[tuple[Job, Outcome]]) -> None:
        for job, outcome in finished:
            if not outcome.topic:  # nowhere to answer: acknowledge, it was logged
                if job.token is not None:
                    self._ack(job.token)
                continue
            info = self._client.publish(outcome.topic, outcome.response, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # Not connected: the request stays unacknowledged and comes back.
                event(self._log, "response_not_published", logging.WARNING,
                      topic=outcome.topic, error=mqtt.error_string(info.rc))
                continue
            if job.token is None:
                continue
            with self._acks_lock:
                if info.mid in self._early:  # the broker was quicker than this thread
                    self._early.discard(info.mid)
                    early = True
                else:
                    self._acks[info.mid] = job.token
                    early = False
            if early:
                self._ack(job.token)
