"""One retained MQTT message read from a broker the tool was told of (the catalog a
registration file points at): connect, subscribe, take the retained copy, leave."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..nodelay import no_delay
from .errors import IdentityError

# The broker sends a retained message right after the SUBACK; this long without one
# means it holds none.
RETAINED_WAIT = 1.0
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    host: str
    port: int
    tls: bool = False
    ca_file: str | None = None  # TLS: the CA to check the broker with (None: the system's)
    username: str | None = None
    password: str | None = None


def read_retained(broker: BrokerEndpoint, topic: str,
                  timeout: float = CONNECT_TIMEOUT) -> bytes | None:
    """The message retained on ``topic``, None if the broker holds none;
    :class:`IdentityError` if the broker cannot be reached or refuses us."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[bytes] = []
    refused: list[str] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.on_socket_open = no_delay
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set(ca_certs=broker.ca_file)

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
            done.set()
            return
        client.subscribe(topic, qos=1)

    def on_subscribe(client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
        if not done.is_set():
            threading.Timer(RETAINED_WAIT, done.set).start()

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        if message.retain:
            got.append(bytes(message.payload))
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    where = f"{broker.host}:{broker.port}"
    try:
        client.connect(broker.host, broker.port, keepalive=30)
    except OSError as exc:
        raise IdentityError(f"cannot reach the provider's broker at {where}: {exc}") from None
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise IdentityError(f"the broker at {where} gave no answer on {topic} within "
                                f"{timeout:.0f} s")
    finally:
        client.disconnect()
        client.loop_stop()
    if refused:
        raise IdentityError(f"the broker at {where} refused the connection: {refused[0]}")
    return got[0] if got else None
