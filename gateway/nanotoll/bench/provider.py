"""A provider on the CPython protocol reference, for device tests and benchmarks.

``ReferenceProvider`` follows docs/protocol.md sections 4.2 to 4.4 (signed retained
catalog, voucher signature, idempotent replay, STALE_VOUCHER with the highest voucher,
PRICE_CHANGED, UNDERPAID, OVERDRAFT) for one channel, with an in-memory ledger and
knobs for fault injection. No chain: the deposit is a number given to it. The real
provider is ``nanotoll gateway``; this one lets a device be tested or measured alone.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak

from ..nodelay import no_delay
from ..protocol import cbor, eip712
from ..protocol.errors import ErrorCode, ProtocolError
from ..protocol.messages import (
    Product,
    Response,
    decode_request,
    sign_catalog,
    sign_error,
    sign_receipt,
)
from ..protocol.signing import Signer, address_of
from ..protocol.topics import catalog_topic, request_filter, response_topic, shared_subscription

CHAIN_ID = 31337
ESCROW = bytes.fromhex("95c62b7bca32875bad1194eb8c6a158277366fd9")
PROVIDER_KEY = bytes.fromhex("11" * 32)
DEVICE_KEY = bytes.fromhex("22" * 32)
SEPARATOR = eip712.domain_separator(CHAIN_ID, ESCROW)


def addr_hex(secret: bytes) -> str:
    return address_of(secret)[2:].lower()


PRODUCTS = (
    Product("weather", 1500, "nowcast"),
    Product("nav", 4000, "airspace updates"),
    Product("route", 25000, "corridor grant"),
)


@dataclass
class ChannelBook:
    highest: int = 0  # last accepted cumulative (starts at on-chain paid)
    voucher: bytes = b""
    request_hash: bytes = b""
    response: bytes = b""
    charged: int = 0
    accepted: int = 0


@dataclass
class ReferenceProvider:
    port: int
    channel: int = 1
    deposit: int = 10_000_000
    signer: bytes = DEVICE_KEY
    products: tuple[Product, ...] = PRODUCTS
    seq: int = 1
    # fault injection
    drop_first: int = 0  # requests received and not answered (as if the gateway died)
    busy_first: int = 0  # requests answered BUSY first
    provider_error_first: int = 0
    bad_receipt: bool = False
    publish_on_price_changed: bool = True
    # raw replies used instead of the rules, one per request: f(request id) -> bytes
    overrides: list[Any] = field(default_factory=list)
    answering: bytes = b""  # the request an override answers (error_bytes signs for it)
    log: list[tuple[int, int, int]] = field(default_factory=list)  # (request id, cum, code)
    book: ChannelBook = field(default_factory=ChannelBook)
    received: list[bytes] = field(default_factory=list)  # every request payload, in order
    # A secure broker's login (nanotoll.broker): its CA (PEM) for TLS, and the
    # provider's gateway client; None on the plain anonymous broker.
    ca_file: str | None = None
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        import paho.mqtt.client as mqtt

        self.provider = bytes.fromhex(addr_hex(PROVIDER_KEY))
        self.prov_hex = self.provider.hex()
        self._lock = threading.Lock()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"refprovider-{self.port}",
            protocol=mqtt.MQTTv311, clean_session=True,
        )
        if self.ca_file is not None:
            self._client.tls_set(ca_certs=self.ca_file)
        if self.username is not None:
            self._client.username_pw_set(self.username, self.password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_socket_open = no_delay
        self._connected = threading.Event()  # set when the request subscription is answered
        self._refused = ""  # why the broker refused the login or the subscription

    @classmethod
    def on_secure_broker(cls, broker: Any, **knobs: Any) -> ReferenceProvider:
        """One on ``broker``, a secure servers.mosquitto.Mosquitto started with this
        provider among its ``providers``: TLS checked against its CA, logged in as the
        provider's gateway client, with its rights and no others."""
        from ..broker.site import gateway_username

        if broker.site is None:
            raise RuntimeError("the broker is the anonymous one: start it with secure=True")
        provider = addr_hex(PROVIDER_KEY)
        return cls(broker.port, ca_file=str(broker.ca_file),
                   username=gateway_username(provider),
                   password=broker.site.gateway_password(provider), **knobs)

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> ReferenceProvider:
        self._client.connect("127.0.0.1", self.port, keepalive=10)
        self._client.loop_start()
        if not self._connected.wait(10) or self._refused:
            self._client.loop_stop()
            raise RuntimeError(f"the reference provider could not connect to the broker "
                               f"127.0.0.1:{self.port} as {self.username or 'anonymous'}"
                               f"{' with TLS' if self.ca_file else ''}: "
                               f"{self._refused or 'no answer in 10 s'}")
        self.publish_catalog()
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._refused = f"login refused: {reason}"
            self._connected.set()
            return
        # The gateway's client on the secure broker may take requests only through the
        # provider's shared subscription, as the gateway does.
        topic = shared_subscription(self.prov_hex) if self.username is not None \
            else request_filter(self.prov_hex)
        client.subscribe(topic, qos=1)

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any,
                      props: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            self._refused = f"request subscription refused: {', '.join(refused)}"
        self._connected.set()

    def catalog_bytes(self, seq: int | None = None, key: bytes = PROVIDER_KEY) -> bytes:
        now = int(time.time())
        catalog = sign_catalog(key, SEPARATOR, self.provider, self.seq if seq is None else seq,
                               now - 3600, now + 86400, self.products)
        return catalog.encode()

    def publish_catalog(self, raw: bytes | None = None) -> None:
        info = self._client.publish(catalog_topic(self.prov_hex), raw or self.catalog_bytes(),
                                    qos=1, retain=True)
        info.wait_for_publish(5)

    def set_price(self, name: str, price: int, publish: bool = True) -> None:
        self.products = tuple(Product(p.name, price if p.name == name else p.unit_price,
                                      p.description) for p in self.products)
        self.seq += 1
        if publish:
            self.publish_catalog()

    # ------------------------------------------------------------------ requests
    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        device = msg.topic.rsplit("/", 1)[-1]
        with self._lock:
            self.received.append(bytes(msg.payload))
            if self.drop_first > 0:
                self.drop_first -= 1
                return
            response = self.handle(msg.payload, device)
        if response is not None:
            client.publish(response_topic(self.prov_hex, device), response, qos=1)

    def error_bytes(self, request_id: int, code: int, message: str, detail: Any = None
                    ) -> bytes:
        """An error response of any code (one the protocol does not know too), signed by
        this provider for the request an override is answering."""
        rhash = keccak(self.answering)
        digest = eip712.error_digest(SEPARATOR, self.channel, rhash, code,
                                     keccak(cbor.dumps(detail)))
        signature = Signer(PROVIDER_KEY).sign(digest)
        return cbor.dumps([1, request_id, code, [message, detail, self.channel, rhash,
                                                 signature]])

    def handle(self, raw: bytes, device: str) -> bytes | None:
        request_id = channel_id = 0
        try:
            req = decode_request(raw)
            request_id, channel_id = req.request_id, req.voucher.channel_id
            if self.overrides:
                self.answering = bytes(raw)
                return self.overrides.pop(0)(request_id)
            if self.busy_first > 0:
                self.busy_first -= 1
                raise ProtocolError(ErrorCode.BUSY, "busy")
            price = next((p.unit_price for p in self.products if p.name == req.product), None)
            if price is None:
                raise ProtocolError(ErrorCode.UNKNOWN_PRODUCT, req.product)
            if req.price != price or req.catalog_seq != self.seq:
                if self.publish_on_price_changed:
                    self._client.publish(catalog_topic(self.prov_hex), self.catalog_bytes(),
                                         qos=1, retain=True)
                raise ProtocolError(ErrorCode.PRICE_CHANGED, "catalog changed", self.seq)
            v = req.voucher
            if v.channel_id != self.channel:
                raise ProtocolError(ErrorCode.UNKNOWN_CHANNEL, str(v.channel_id))
            signer = v.signer(SEPARATOR)[2:].lower()
            if signer != addr_hex(self.signer) or device != signer:
                raise ProtocolError(ErrorCode.BAD_SIGNATURE, "not the channel's signer")
            book = self.book
            rhash = keccak(raw)
            if v.cumulative == book.highest and rhash == book.request_hash:
                self.log.append((request_id, v.cumulative, -1))  # idempotent replay
                return book.response
            if v.cumulative <= book.highest:
                raise ProtocolError(ErrorCode.STALE_VOUCHER, "stale", book.voucher or None)
            if v.cumulative > self.deposit:
                raise ProtocolError(ErrorCode.OVERDRAFT, "over deposit")
            if v.cumulative - book.highest < price:
                raise ProtocolError(ErrorCode.UNDERPAID, "underpaid")
            if self.provider_error_first > 0:
                self.provider_error_first -= 1
                raise ProtocolError(ErrorCode.PROVIDER_ERROR, "source down")
            data = cbor.dumps({"product": req.product, "seq": request_id})
            receipt = sign_receipt(PROVIDER_KEY, SEPARATOR, v.channel_id, v.cumulative, rhash,
                                   b"tampered" if self.bad_receipt else data)
            response = Response(request_id, ErrorCode.OK, data=data, receipt=receipt).encode()
            book.charged += v.cumulative - book.highest
            book.highest = v.cumulative
            book.voucher = v.pack()
            book.request_hash = rhash
            book.response = response
            book.accepted += 1
            self.log.append((request_id, v.cumulative, 0))
            return response
        except ProtocolError as exc:
            self.log.append((request_id, -1, int(exc.code)))
            return sign_error(PROVIDER_KEY, SEPARATOR, request_id, exc, channel_id,
                              keccak(raw)).encode()
