"""Helpers for the gateway tests: keys, a config, a device that signs requests."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanotoll.chain import EscrowClient
from nanotoll.gateway.config import GatewayConfig, parse_config
from nanotoll.protocol.eip712 import domain_separator
from nanotoll.protocol.messages import Request
from nanotoll.protocol.signing import address_of
from nanotoll.protocol.topics import request_topic, response_topic
from nanotoll.protocol.voucher import sign
from nanotoll.servers.anvil import Anvil

PROVIDER_KEY = bytes.fromhex("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")
OTHER_KEY = bytes.fromhex("7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6")
DEVICE_KEY = bytes.fromhex("47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a")
CHAIN_ID = 31337
ESCROW = "0x95C62b7BCa32875bad1194Eb8c6A158277366Fd9"
KEY_ENV = {"NANOTOLL_PROVIDER_KEY": PROVIDER_KEY.hex()}
PRODUCTS = [
    {"name": "weather", "price": 1500, "description": "nowcast"},
    {"name": "nav", "price": 4000, "description": "airspace"},
    {"name": "route", "price": 25000, "description": "corridor grant"},
]


def config_document(mqtt_port: int = 1883, ledger: str = "sqlite:///ledger.db",
                    rpc_url: str = "http://127.0.0.1:8545", escrow: str = ESCROW,
                    **sections: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
        "provider": {"key_env": "NANOTOLL_PROVIDER_KEY"},
        "chain": {"rpc_url": rpc_url, "escrow": escrow, "chain_id": CHAIN_ID,
                  "confirmations": 1, "poll_interval": 0.05},
        "ledger": {"url": ledger},
        "catalog": {"seq": 3, "products": PRODUCTS},
        "log": {"level": "WARNING"},
    }
    for name, table in sections.items():
        document.setdefault(name, {}).update(table)
    return document



@contextlib.contextmanager
def funded_escrow(workdir: Path) -> Iterator[tuple[Anvil, EscrowClient, Any]]:
    """anvil with the escrow deployed and a payer holding 10^15 token units."""
    with Anvil(workdir=workdir) as anvil:
        client = EscrowClient.deploy(anvil.w3, anvil.new_account())
        payer = anvil.new_account()
        client.mint(payer, payer.address, 10**15)
        yield anvil, client, payer


def make_config(tmp_path: Path, **kwargs: Any) -> GatewayConfig:
    return parse_config(config_document(**kwargs), tmp_path, "test.toml")


def hex_address(secret: bytes) -> str:
    return address_of(secret)[2:].lower()


@dataclass
class Device:
    """A device with one channel: signs cumulative vouchers and builds requests."""

    channel_id: int
    key: bytes = DEVICE_KEY
    provider_key: bytes = PROVIDER_KEY
    chain_id: int = CHAIN_ID
    escrow: str = ESCROW
    cumulative: int = 0
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def separator(self) -> bytes:
        return domain_separator(self.chain_id, self.escrow)

    @property
    def topic(self) -> str:
        return request_topic(hex_address(self.provider_key), hex_address(self.key))

    @property
    def response_topic(self) -> str:
        return response_topic(hex_address(self.provider_key), hex_address(self.key))

    def request(self, product: str = "weather", params: dict[str, Any] | None = None,
                price: int = 1500, seq: int = 3, pay: int | None = None,
                cumulative: int | None = None, key: bytes | None = None) -> bytes:
        if cumulative is None:
            cumulative = self.cumulative + (price if pay is None else pay)
        self.cumulative = max(self.cumulative, cumulative)
        voucher = sign(key or self.key, self.separator, self.channel_id, cumulative)
        if params is None:
            params = {"lat": 52_520_008, "lon": 13_404_954, "alt": 120}
        return Request(next(self.ids), product, params, price, seq, voucher).encode()


def _no_delay(client: Any, userdata: Any, sock: Any) -> None:
    import socket

    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class MqttPeer:
    """A paho client for tests: publish requests, collect responses per topic."""

    def __init__(self, port: int, subscribe: tuple[str, ...] = (), client_id: str = "",
                 username: str | None = None, password: str | None = None,
                 ca_file: str | None = None) -> None:
        import queue
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        topics = subscribe

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if topics:
                client.subscribe([(t, 1) for t in topics])
            else:
                self._ready.set()

        def on_subscribe(client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
            self._ready.set()

        def on_message(client: Any, userdata: Any, message: Any) -> None:
            self.messages.put((message.topic, bytes(message.payload), bool(message.retain)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.on_socket_open = _no_delay
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=ca_file)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise TimeoutError("test MQTT client did not connect")

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def next(self, timeout: float = 10.0) -> tuple[str, bytes, bool]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
