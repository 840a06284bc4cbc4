"""MQTT ingress: paho-mqtt 2 on MQTT v5, a shared subscription, manual acknowledgement.

Threads, on purpose. paho-mqtt runs its own network thread and calls back from it, and
the work per request is blocking by nature: a coincurve recovery (native code), a
SQLite commit that waits for fsync. A pool of worker threads lets many requests wait on
the same group commit at once (that is what batches the fsyncs) while the network thread
keeps reading; asyncio would need the same threads underneath (SQLite and paho are not
async) plus a bridge into the loop, for nothing gained.

Flow per message: the network thread queues it; a worker runs the pipeline (verify,
serve, durable write), publishes the response at QoS 1 and waits for the broker's
PUBACK of it, and only then PUBACKs the request (``manual_ack``). A gateway that dies at
any point before that leaves the request unacknowledged in its persistent session, and
the broker delivers it again: the ledger's stored response answers it, uncharged.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .logs import event
from .pipeline import Outcome

SESSION_EXPIRY = 24 * 3600  # seconds the broker keeps our session (and unacked requests)
PUBLISH_TIMEOUT = 10.0


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
    def __init__(self, host: str, port: int, provider_hex: str,
                 handler: Callable[[str, bytes], Outcome], catalog: bytes, *,
                 client_id: str = "", workers: int = 16, keepalive: int = 30,
                 logger: logging.Logger | None = None) -> None:
        self.host, self.port = host, port
        self.provider_hex = provider_hex
        self._handler = handler
        self._catalog = catalog
        self._workers_n = workers
        self._keepalive = keepalive
        self._log = logger or logging.getLogger("nanotoll.gateway.ingress")
        self.client_id = client_id or f"nanotoll-gw-{provider_hex[:12]}-{uuid.uuid4().hex[:8]}"
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._generation = 0  # bumps on every (re)connection: acks never cross connections
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                   protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_socket_open = _no_delay
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.max_queued_messages_set(0)

    # --------------------------------------------------------- lifecycle --

    def start(self, timeout: float = 10.0) -> None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY
        properties.ReceiveMaximum = max(16, min(65535, 4 * self._workers_n))
        for index in range(self._workers_n):
            worker = threading.Thread(target=self._work, name=f"gw-worker-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)
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

    def stop(self) -> None:
        """Finish the requests in hand; leave queued ones unacknowledged for redelivery."""
        self._stopping.set()
        for _ in self._workers:
            self._queue.put(_STOP)
        for worker in self._workers:
            worker.join(timeout=30)
        self._workers.clear()
        self._client.disconnect()
        self._client.loop_stop()

    # ---------------------------------------------------------- callbacks --

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            event(self._log, "mqtt_connect_refused", logging.ERROR, reason=str(reason))
            return
        self._generation += 1
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
        self._queue.put((message.topic, bytes(message.payload), message.mid, message.qos,
                         self._generation))

    # ------------------------------------------------------------ workers --

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP or self._stopping.is_set():
                return
            topic, payload, mid, qos, generation = item
            try:
                self._serve(topic, payload, mid, qos, generation)
            except Exception:  # never lose a worker to one message
                self._log.exception("worker failed on a message; left unacknowledged")

    def _serve(self, topic: str, payload: bytes, mid: int, qos: int, generation: int) -> None:
        outcome = self._handler(topic, payload)
        info = self._client.publish(outcome.topic, outcome.response, qos=1)
        try:
            info.wait_for_publish(PUBLISH_TIMEOUT)
        except (RuntimeError, ValueError) as exc:
            event(self._log, "response_not_published", logging.WARNING, topic=outcome.topic,
                  error=str(exc))
            return
        if not info.is_published():
            event(self._log, "response_not_published", logging.WARNING, topic=outcome.topic,
                  error="timeout")
            return
        if qos > 0 and generation == self._generation:
            self._client.ack(mid, qos)
