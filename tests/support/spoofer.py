"""A hostile client with publish rights on a device's response topic and on the catalog
topic: what issue 14 found an attacker doing, as a test's tool, on the secure broker.

Its rights are a test-only role the test makes through the broker's dynamic-security
admin (``enrol_spoofer``; the product ships no such role): the forger may publish on the
device's response topic and the provider's catalog topic, nothing else. A second login,
the tap, may only read the device's requests and responses, so that each forgery names
the request in flight and its real hash: the strongest attacker short of the provider's
key, which it never holds.

For every request the tap sees it answers at once, before the provider can, with
forgeries of each kind: an unsigned error of the old shape, errors (OVERDRAFT, BUSY,
PRICE_CHANGED, STALE_VOUCHER with a voucher of its own) and a receipt signed by its own
key over the request's real hash, and the provider's earlier genuine response replayed
under the new request id. Between requests it keeps flooding the last request's id, and
it leaves a forged catalog of a high seq retained. Nothing it sends may move the device.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from eth_utils import keccak
from nanotoll.broker.clients import Credentials
from nanotoll.broker.rights import Acl, acl
from nanotoll.protocol import cbor, eip712
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import Product, sign_catalog
from nanotoll.protocol.signing import Signer
from nanotoll.protocol.topics import catalog_topic, request_topic, response_topic
from nanotoll.protocol.voucher import sign
from nanotoll.servers.mosquitto import Mosquitto
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from support.secure_broker import add_test_client

ATTACKER_KEY = bytes.fromhex("33" * 32)
WAIT = 10.0  # seconds for the broker's CONNACK, SUBACK or PUBACK
MARKS = (b"spoofed", b"unsigned")  # in every forgery's bytes, never in the provider's


class SpooferRefused(RuntimeError):
    """The broker refused the spoofer's login, subscription or publication."""


def forger_acls(provider: str, device: str) -> list[Acl]:
    """The test-only role's rights: publish on the device's response topic and on the
    provider's catalog topic (a retained forged catalog too), nothing else."""
    return [acl("publishClientSend", response_topic(provider, device)),
            acl("publishClientSend", catalog_topic(provider))]


def tap_acls(provider: str, device: str) -> list[Acl]:
    """Reading the device's requests and responses, nothing else."""
    return [rule for topic in (request_topic(provider, device), response_topic(provider, device))
            for rule in (acl("subscribeLiteral", topic), acl("publishClientReceive", topic))]


@dataclass(frozen=True)
class SpooferLogins:
    forger: Credentials | None  # None: it tries anonymously
    tap: Credentials


def enrol_spoofer(broker: Mosquitto, provider: str, device: str, *,
                  with_role: bool = True) -> SpooferLogins:
    """The spoofer's two clients on ``broker``; ``with_role=False`` leaves the forger a
    login with no rights (``grant_forger`` gives them later)."""
    with broker.admin() as admin:
        forger = add_test_client(admin, "test-spoofer",
                                 forger_acls(provider, device) if with_role else [])
        tap = add_test_client(admin, "test-spoofer-tap", tap_acls(provider, device))
    return SpooferLogins(forger, tap)


def grant_forger(broker: Mosquitto, provider: str, device: str) -> Credentials:
    """The forger's login again, now holding the test-only role (a fresh password)."""
    with broker.admin() as admin:
        return add_test_client(admin, "test-spoofer", forger_acls(provider, device))


class _Client:
    """One paho MQTT v5 client over TLS that waits for each of the broker's answers."""

    def __init__(self, broker: Mosquitto, login: Credentials | None, name: str) -> None:
        assert broker.ca_file is not None, "the spoofer works on the secure broker"
        self.name = name
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.tls_set(ca_certs=str(broker.ca_file))
        if login is not None:
            self.client.username_pw_set(login.username, login.password)
        self.client.on_connect = lambda c, u, f, reason, p: self._answer("connect", reason)
        self.client.on_subscribe = lambda c, u, mid, reasons, p: self._answer(mid, reasons[0])
        self.client.on_publish = lambda c, u, mid, reason, p: self._answer(mid, reason)
        self._answers: dict[Any, Any] = {}
        self._answered = threading.Condition()
        self._where = (broker.host, broker.port)

    def _answer(self, key: Any, reason: Any) -> None:
        with self._answered:
            self._answers[key] = reason
            self._answered.notify_all()

    def _wait(self, key: Any, what: str) -> Any:
        with self._answered:
            if not self._answered.wait_for(lambda: key in self._answers, WAIT):
                raise SpooferRefused(f"{self.name}: no answer to {what} in {WAIT} s")
            return self._answers.pop(key)

    def connect(self) -> None:
        self.client.connect(*self._where)
        self.client.loop_start()
        reason = self._wait("connect", "CONNECT")
        if reason.is_failure:
            self.close()
            raise SpooferRefused(f"{self.name}: login refused: {reason}")

    def subscribe(self, topic: str) -> None:
        reason = self._wait(self.client.subscribe(topic, qos=0)[1], f"SUBSCRIBE {topic}")
        if reason.is_failure:
            raise SpooferRefused(f"{self.name}: subscription to {topic} refused: {reason}")

    def publish_acknowledged(self, topic: str, payload: bytes, retain: bool = False) -> str:
        """Publish at QoS 1; the broker's PUBACK reason ("Success", "Not authorized")."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return str(self._wait(info.mid, f"PUBLISH {topic}").getName())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Spoofer:
    def __init__(self, broker: Mosquitto, logins: SpooferLogins, separator: bytes,
                 provider: bytes, device_hex: str, channel: int,
                 flood_period: float = 0.02) -> None:
        self.separator = separator
        self.provider = provider
        self.channel = channel
        self.flood_period = flood_period
        self.sent = 0
        self.echoed = 0  # forgeries the broker delivered on the response topic (to the tap)
        self._signer = Signer(ATTACKER_KEY)
        self._req_topic = request_topic(provider.hex(), device_hex)
        self._resp_topic = response_topic(provider.hex(), device_hex)
        self._catalog_topic = catalog_topic(provider.hex())
        self._last: tuple[int, bytes] | None = None  # (request id, request bytes)
        self._genuine: bytes | None = None  # the provider's last response, for replay
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flooder: threading.Thread | None = None
        self._forger = _Client(broker, logins.forger, "spoofer")
        self._tap = _Client(broker, logins.tap, "spoofer-tap")
        self._tap.client.on_message = self._on_message

    def connect(self) -> None:
        """Both logins, and the tap's subscriptions; SpooferRefused names what failed."""
        self._forger.connect()
        try:
            self._tap.connect()
            self._tap.subscribe(self._req_topic)
            self._tap.subscribe(self._resp_topic)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Spoofer:
        self.connect()
        try:
            reason = self.publish_forged_catalog()
            if reason != "Success":
                raise SpooferRefused(f"the forged catalog was refused: {reason}")
        except BaseException:
            self.close()
            raise
        self._flooder = threading.Thread(target=self._flood, daemon=True)
        self._flooder.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._flooder is not None:
            self._flooder.join(5)
        self.close()

    def close(self) -> None:
        self._forger.close()
        self._tap.close()

    def publish_forged_catalog(self) -> str:
        """A catalog of seq 999 claiming the provider, signed by the attacker, left
        retained in place of the provider's; the broker's PUBACK reason."""
        products = (Product("weather", 1, "free weather"),)
        forged = sign_catalog(ATTACKER_KEY, self.separator, self.provider, 999, 0, 2**40,
                              products)
        return self._forger.publish_acknowledged(self._catalog_topic, forged.encode(),
                                                 retain=True)

    def publish_forged_error(self, request_id: int = 1) -> str:
        """One unsigned error on the device's response topic at QoS 1; the PUBACK reason."""
        payload = cbor.dumps([1, request_id, int(ErrorCode.OVERDRAFT), ["unsigned", None]])
        return self._forger.publish_acknowledged(self._resp_topic, payload)

    # ------------------------------------------------------------- forgeries --

    def _error(self, request_id: int, code: int, detail: Any, request_hash: bytes) -> bytes:
        digest = eip712.error_digest(self.separator, self.channel, request_hash, code,
                                     keccak(cbor.dumps(detail)))
        return cbor.dumps([1, request_id, code, ["spoofed", detail, self.channel,
                                                 request_hash, self._signer.sign(digest)]])

    def forgeries(self, request_id: int, request: bytes) -> list[bytes]:
        rhash = keccak(request)
        cumulative = int.from_bytes(cbor.loads(request)[6][4:12], "big")
        own_voucher = sign(ATTACKER_KEY, self.separator, self.channel, 2**40).pack()
        data = b"spoofed data"
        receipt_digest = eip712.receipt_digest(self.separator, self.channel, cumulative, rhash,
                                               keccak(data))
        out = [
            cbor.dumps([1, request_id, int(ErrorCode.OVERDRAFT), ["unsigned", None]]),
            self._error(request_id, ErrorCode.OVERDRAFT, None, rhash),
            self._error(request_id, ErrorCode.BUSY, None, rhash),
            self._error(request_id, ErrorCode.PRICE_CHANGED, 999, rhash),
            self._error(request_id, ErrorCode.STALE_VOUCHER, own_voucher, rhash),
            self._error(request_id, ErrorCode.UNKNOWN_PRODUCT, None, rhash),
            cbor.dumps([1, request_id, 0, [data, [self.channel, cumulative, rhash, keccak(data),
                                                  self._signer.sign(receipt_digest)]]]),
        ]
        genuine = self._genuine
        if genuine is not None:  # signed by the provider, for another request
            old = cbor.loads(genuine)
            out.append(cbor.dumps([old[0], request_id, *old[2:]]))
        return out

    def _send(self, payloads: list[bytes]) -> None:
        for payload in payloads:
            self._forger.client.publish(self._resp_topic, payload, qos=0)
        with self._lock:
            self.sent += len(payloads)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        payload = bytes(msg.payload)
        if msg.topic == self._resp_topic:
            if any(mark in payload for mark in MARKS):
                with self._lock:
                    self.echoed += 1
            else:
                self._genuine = payload
            return
        try:
            request_id = cbor.loads(payload)[1]
        except (ValueError, IndexError, TypeError):
            return
        self._last = (request_id, payload)
        self._send(self.forgeries(request_id, payload))

    def _flood(self) -> None:
        while not self._stop.wait(self.flood_period):
            last = self._last
            if last is not None:
                self._send(self.forgeries(*last))
