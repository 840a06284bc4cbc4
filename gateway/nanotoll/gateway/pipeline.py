"""One request in, one response out: verify → serve → durable write → response bytes.

No MQTT here (``ingress`` carries bytes in and out), so tests and the benchmark drive the
exact code path the gateway runs. Every input, however bad, yields exactly one response
and one log line; an error response never stores or charges anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..protocol.errors import ErrorCode, ProtocolError
from ..protocol.messages import MAX_RESPONSE, Response, error_response, sign_receipt
from .ledger import AcceptStatus, Ledger, LedgerError
from .logs import event
from .metrics import Metrics
from .verify import Charge, Replay, Verified, Verifier, request_id_of, response_topic

CAS_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class Outcome:
    topic: str  # where the response goes
    response: bytes
    code: ErrorCode
    increment: int = 0  # units charged by this request (0 for errors and replays)
    replay: bool = False


class Pipeline:
    def __init__(self, verifier: Verifier, ledger: Ledger, secret: bytes,
                 metrics: Metrics | None = None, clock: Callable[[], float] = time.time,
                 logger: logging.Logger | None = None) -> None:
        self.verifier = verifier
        self.ledger = ledger
        self._secret = secret
        self.metrics = metrics or Metrics()
        self._clock = clock
        self._log = logger or logging.getLogger("nanotoll.gateway")
        self._locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def handle(self, topic: str, payload: bytes) -> Outcome:
        started = time.perf_counter()
        segment = topic.rsplit("/", 1)[-1] if "/" in topic else "_"
        reply_to = response_topic(self.verifier.provider_hex, segment or "_")
        fields: dict[str, object] = {"topic": topic, "bytes": len(payload)}
        try:
            outcome = self._handle(topic, bytes(payload), reply_to, fields)
        except ProtocolError as exc:
            rid = fields.get("request_id")
            request_id = rid if isinstance(rid, int) else request_id_of(bytes(payload))
            response = error_response(request_id, exc).encode()
            outcome = Outcome(reply_to, response, exc.code)
            fields["message"] = exc.message
        except Exception as exc:  # a bug must cost one request, never the gateway
            self._log.exception("request failed")
            request_id = request_id_of(bytes(payload))
            error = ProtocolError(ErrorCode.PROVIDER_ERROR, f"internal error: {type(exc).__name__}")
            outcome = Outcome(reply_to, error_response(request_id, error).encode(),
                              error.code)
            fields["message"] = repr(exc)
        latency = (time.perf_counter() - started) * 1000
        self.metrics.observe(outcome.code.name, latency, outcome.increment, outcome.replay)
        level = logging.INFO if outcome.code in (ErrorCode.OK,) else logging.WARNING
        event(self._log, "request", level, code=outcome.code.name, increment=outcome.increment,
              replay=outcome.replay, ms=round(latency, 3), **fields)
        return outcome

    def _handle(self, topic: str, payload: bytes, reply_to: str,
                fields: dict[str, object]) -> Outcome:
        now = int(self._clock())
        verified = self.verifier.check(topic, payload, now)
        request = verified.request
        fields.update(request_id=request.request_id, product=request.product,
                      channel=request.voucher.channel_id, cumulative=request.voucher.cumulative)
        with self._channel_lock(request.voucher.channel_id):
            return self._charge(verified, now, reply_to)

    def _channel_lock(self, channel_id: int) -> threading.Lock:
        """Requests of one channel take turns in this process (a device sends one at a
        time anyway); the ledger's compare-and-set still guards against other processes."""
        with self._locks_guard:
            lock = self._locks.get(channel_id)
            if lock is None:
                lock = self._locks[channel_id] = threading.Lock()
            return lock

    def _charge(self, verified: Verified, now: int, reply_to: str) -> Outcome:
        request = verified.request
        response: bytes | None = None
        for _ in range(CAS_ATTEMPTS):
            try:
                last = self.ledger.lookup(request.voucher.channel_id)
            except LedgerError as exc:
                raise ProtocolError(ErrorCode.BUSY, "ledger unavailable") from exc
            decision = self.verifier.charge(verified, last)
            if isinstance(decision, Replay):
                return Outcome(reply_to, decision.response, ErrorCode.OK, replay=True)
            if response is None:
                response = self._respond(verified, now)
            result = self._accept(verified, decision, response)
            if result:
                return Outcome(reply_to, response, ErrorCode.OK, increment=decision.increment)
            # Another acceptance moved the channel: re-run rules 6-8 against it.
        raise ProtocolError(ErrorCode.BUSY, "channel contended, retry the same request")

    def _respond(self, verified: Verified, now: int) -> bytes:
        request = verified.request
        try:
            data = verified.provider.serve(request.params, now, verified.device)
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(ErrorCode.PROVIDER_ERROR,
                                f"{request.product} failed: {type(exc).__name__}") from exc
        receipt = sign_receipt(self._secret, self.verifier.separator,
                               request.voucher.channel_id, request.voucher.cumulative,
                               verified.request_hash, data)
        response = Response(request.request_id, ErrorCode.OK, data=data, receipt=receipt).encode()
        if len(response) > MAX_RESPONSE:
            raise ProtocolError(ErrorCode.PROVIDER_ERROR,
                                f"{request.product} answer of {len(response)} bytes is too large")
        return response

    def _accept(self, verified: Verified, charge: Charge, response: bytes) -> bool:
        voucher = verified.request.voucher
        try:
            result = self.ledger.accept(voucher.channel_id, voucher.cumulative, voucher.pack(),
                                        verified.request_hash, response, charge.increment)
        except LedgerError as exc:
            raise ProtocolError(ErrorCode.BUSY, "ledger unavailable, nothing charged") from exc
        return result.status is AcceptStatus.ACCEPTED
