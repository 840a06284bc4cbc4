"""A hostile client with publish rights on a device's response topic and on the catalog
topic: what issue 14 found an attacker doing, as a test's tool.

For every request it sees on the device's request topic it answers at once, before the
provider can, with forgeries of each kind: an unsigned error of the old shape, errors
(OVERDRAFT, BUSY, PRICE_CHANGED, STALE_VOUCHER with a voucher of its own) and a receipt
signed by its own key over the request's real hash, and the provider's earlier genuine
response replayed under the new request id. Between requests it keeps flooding the last
request's id, and it leaves a forged catalog of a high seq retained. It holds no key of
the provider's, which is the point: nothing it sends may move the device.
"""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
from eth_utils import keccak
from nanotoll.protocol import cbor, eip712
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import Product, sign_catalog
from nanotoll.protocol.signing import Signer
from nanotoll.protocol.topics import catalog_topic, request_topic, response_topic
from nanotoll.protocol.voucher import sign

ATTACKER_KEY = bytes.fromhex("33" * 32)


class Spoofer:
    def __init__(self, port: int, separator: bytes, provider: bytes, device_hex: str,
                 channel: int, flood_period: float = 0.02) -> None:
        self.separator = separator
        self.provider = provider
        self.channel = channel
        self.flood_period = flood_period
        self.sent = 0
        self._signer = Signer(ATTACKER_KEY)
        self._req_topic = request_topic(provider.hex(), device_hex)
        self._resp_topic = response_topic(provider.hex(), device_hex)
        self._catalog_topic = catalog_topic(provider.hex())
        self._last: tuple[int, bytes] | None = None  # (request id, request bytes)
        self._genuine: bytes | None = None  # the provider's last response, for replay
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flooder: threading.Thread | None = None
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spoofer",
                                   protocol=mqtt.MQTTv311, clean_session=True)
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)

    def __enter__(self) -> Spoofer:
        self._client.loop_start()
        self._client.subscribe([(self._req_topic, 0), (self._resp_topic, 0)])
        self.publish_forged_catalog()
        self._flooder = threading.Thread(target=self._flood, daemon=True)
        self._flooder.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._flooder is not None:
            self._flooder.join(5)
        self._client.loop_stop()
        self._client.disconnect()

    def publish_forged_catalog(self) -> None:
        """A catalog of seq 999 claiming the provider, signed by the attacker, left
        retained in place of the provider's."""
        products = (Product("weather", 1, "free weather"),)
        forged = sign_catalog(ATTACKER_KEY, self.separator, self.provider, 999, 0, 2**40,
                              products)
        self._client.publish(self._catalog_topic, forged.encode(), qos=1,
                             retain=True).wait_for_publish(5)

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
            self._client.publish(self._resp_topic, payload, qos=0)
        with self._lock:
            self.sent += len(payloads)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        payload = bytes(msg.payload)
        if msg.topic == self._resp_topic:
            if b"spoofed" not in payload and b"unsigned" not in payload:
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
