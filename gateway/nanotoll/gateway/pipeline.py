"""Requests in, responses out: verify → serve → durable write → response bytes, in batches.

No MQTT here (``ingress`` carries bytes in and out), so tests and the benchmark drive the
exact code path the gateway runs. Every input, however bad, yields exactly one response
and one log line; an error response never stores or charges anything.

Two stages, so that errors and replays are answered before the batch's durable write
(the ingress runs both in its one thread; callers may also run them apart):

* :meth:`Pipeline.prepare` runs rules 1–8 on a batch of :class:`Job` s. Errors and
  idempotent replays finish here (nothing to store). A request that passes is served,
  its receipt signed and its response encoded: a :class:`Pending` acceptance.
* :meth:`Pipeline.commit` stores many pending acceptances with one
  :meth:`~.ledger.Ledger.accept_many` (one transaction, one fsync) and only then
  finishes them. A compare-and-set conflict (another gateway process accepted on that
  channel first) sends the job back to ``prepare``, which re-runs the rules against the
  winner: a replay, a stale voucher, or a fresh charge.

Channel turn-taking: while one request of a channel is between ``prepare`` and the end of
its ``commit`` the channel is *busy*, and later requests of it wait (a device sends one
request at a time; a retry of the same bytes must see the first one's outcome). The
last accepted record of each channel is kept in a bounded in-process cache. A record
cached here can only be behind the ledger (amounts only grow), never ahead, and the
ledger's compare-and-set is checked against the ledger itself, so a stale cache costs a
retry, never a double charge.

:meth:`Pipeline.handle` runs both stages for one request, synchronously (tests, tools).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..protocol.errors import ErrorCode, ProtocolError
from ..protocol.messages import MAX_RESPONSE, error_response
from .hotpath import ReceiptSigner, encode_ok_response
from ..ledger import AcceptItem, AcceptStatus, ChannelRecord, Ledger, LedgerError
from .logs import event
from .metrics import Metrics
from .verify import (
    Charge,
    Replay,
    Verified,
    Verifier,
    reply_segment,
    request_id_of,
    request_topic,
    response_topic,
)

CAS_ATTEMPTS = 8
RECORD_CACHE = 100_000  # channels whose last accepted voucher is kept in memory


@dataclass(frozen=True, slots=True)
class Outcome:
    topic: str  # where the response goes; "" when it goes nowhere (see reply_segment)
    response: bytes
    code: ErrorCode
    increment: int = 0  # units charged by this request (0 for errors and replays)
    replay: bool = False


@dataclass(slots=True, eq=False)
class Job:
    """One request travelling through the pipeline."""

    topic: str
    payload: bytes
    token: Any = None  # the ingress's handle for acknowledging the request
    started: float = field(default_factory=time.perf_counter)
    attempts: int = 0
    now: int = 0
    reply_to: str = ""
    verified: Verified | None = None
    fields: dict[str, object] = field(default_factory=dict)  # log fields beyond the request's


@dataclass(slots=True, eq=False)
class Pending:
    """A request that passed every rule, with its response ready: to be stored."""

    job: Job
    charge: Charge
    response: bytes

    @property
    def channel_id(self) -> int:
        assert self.job.verified is not None
        return self.job.verified.request.voucher.channel_id


Finished = tuple[Job, Outcome]


class Pipeline:
    def __init__(self, verifier: Verifier, ledger: Ledger, secret: bytes,
                 metrics: Metrics | None = None, clock: Callable[[], float] = time.time,
                 logger: logging.Logger | None = None) -> None:
        self.verifier = verifier
        self.ledger = ledger
        self._signer = ReceiptSigner(secret, verifier.separator)
        self.metrics = metrics or Metrics()
        self._clock = clock
        self._log = logger or logging.getLogger("nanotoll.gateway")
        self._lock = threading.Lock()  # guards the three below
        self._records: OrderedDict[int, ChannelRecord] = OrderedDict()
        self._busy: set[int] = set()
        self._waiting: dict[int, list[Job]] = {}

    # ------------------------------------------------------------ one call --

    def handle(self, topic: str, payload: bytes) -> Outcome:
        """Both stages for one request; returns once its response is final."""
        job = Job(topic, bytes(payload))
        deadline = time.monotonic() + 30
        while True:
            finished, pending, _ = self.prepare([job])
            if finished:
                return finished[0][1]
            if pending:
                finished, _ = self.commit(pending)
                if finished:
                    return finished[0][1]
            elif time.monotonic() > deadline:  # pragma: no cover - a stuck channel
                raise RuntimeError("channel stayed busy")
            else:
                # Another caller holds the channel: take our job back and try again.
                with self._lock:
                    for waiting in self._waiting.values():
                        if job in waiting:
                            waiting.remove(job)
                time.sleep(0.001)

    # ------------------------------------------------------------- stage 1 --

    def prepare(self, jobs: Sequence[Job]) -> tuple[list[Finished], list[Pending], list[Job]]:
        """Rules 1–8 for each job. Returns the finished (errors, replays), the pending
        (to commit) and jobs to run again now (their channel came free meanwhile)."""
        finished: list[Finished] = []
        ready: list[Job] = []
        for job in jobs:
            outcome = self._check(job)
            if outcome is not None:
                finished.append((job, self._finish(job, outcome)))
            else:
                ready.append(job)
        if not ready:
            return finished, [], []

        runnable: list[Job] = []
        with self._lock:
            for job in ready:
                channel_id = self._channel_of(job)
                if channel_id in self._busy:
                    self._waiting.setdefault(channel_id, []).append(job)
                else:
                    self._busy.add(channel_id)
                    runnable.append(job)
            missing = [self._channel_of(j) for j in runnable
                       if self._channel_of(j) not in self._records]
        try:
            fetched = self.ledger.lookup_many(missing) if missing else {}
        except LedgerError:
            fetched = None
        pending: list[Pending] = []
        freed: list[int] = []
        for job in runnable:
            channel_id = self._channel_of(job)
            if fetched is None and channel_id in missing:
                outcome = self._error(job, ProtocolError(ErrorCode.BUSY, "ledger unavailable"))
            else:
                with self._lock:
                    record = self._records.get(channel_id)
                    if record is None and fetched is not None:
                        record = fetched.get(channel_id)
                        if record is not None:
                            self._remember(record)
                result = self._charge(job, record)
                if isinstance(result, Pending):
                    pending.append(result)
                    continue
                outcome = result
            freed.append(channel_id)
            finished.append((job, self._finish(job, outcome)))
        return finished, pending, self._release(freed)

    def _check(self, job: Job) -> Outcome | None:
        """Rules 1–5 (once per job); an Outcome when they fail."""
        if job.verified is not None:
            return None
        job.now = int(self._clock())
        segment = reply_segment(job.topic, request_topic(self.verifier.provider_hex))
        # "" = no response: a topic level we would not publish to (the request is
        # acknowledged and logged, nothing else).
        job.reply_to = "" if segment is None else response_topic(self.verifier.provider_hex,
                                                                  segment)
        try:
            verified = self.verifier.check(job.topic, job.payload, job.now)
        except ProtocolError as exc:
            return self._error(job, exc)
        except Exception as exc:  # a bug must cost one request, never the gateway
            return self._internal(job, exc)
        job.verified = verified
        return None

    @staticmethod
    def _channel_of(job: Job) -> int:
        assert job.verified is not None
        return job.verified.request.voucher.channel_id

    def _charge(self, job: Job, record: ChannelRecord | None) -> Pending | Outcome:
        """Rules 6–8 against the channel's last accepted voucher; serve and sign."""
        verified = job.verified
        assert verified is not None
        try:
            try:
                decision = self.verifier.charge(verified, record)
            except ProtocolError as exc:
                if exc.code != ErrorCode.STALE_VOUCHER or record is None:
                    raise
                # The cached record may be behind: the error carries the device's highest
                # voucher, so read it from the ledger (errors are rare; worth a read).
                fresh = self.ledger.lookup(record.channel_id)
                if fresh is None or fresh == record:
                    raise
                with self._lock:
                    self._remember(fresh)
                decision = self.verifier.charge(verified, fresh)
            if isinstance(decision, Replay):
                return Outcome(job.reply_to, decision.response, ErrorCode.OK, replay=True)
            return Pending(job, decision, self._respond(verified, job.now))
        except ProtocolError as exc:
            return self._error(job, exc)
        except LedgerError:
            return self._error(job, ProtocolError(ErrorCode.BUSY, "ledger unavailable"))
        except Exception as exc:
            return self._internal(job, exc)

    def _respond(self, verified: Verified, now: int) -> bytes:
        request = verified.request
        try:
            data = verified.provider.serve(request.params, now, verified.device)
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(ErrorCode.PROVIDER_ERROR,
                                f"{request.product} failed: {type(exc).__name__}") from exc
        receipt = self._signer.receipt(request.voucher.channel_id, request.voucher.cumulative,
                                       verified.request_hash, data)
        response = encode_ok_response(request.request_id, data, receipt)
        if len(response) > MAX_RESPONSE:
            raise ProtocolError(ErrorCode.PROVIDER_ERROR,
                                f"{request.product} answer of {len(response)} bytes is too large")
        return response

    # ------------------------------------------------------------- stage 2 --

    def commit(self, pending: Sequence[Pending]) -> tuple[list[Finished], list[Job]]:
        """Store the batch in one durable write; returns the finished and the jobs to run
        through ``prepare`` again (conflicts, and requests that waited for a channel)."""
        if not pending:
            return [], []
        items = []
        for entry in pending:
            voucher = entry.job.verified.request.voucher  # type: ignore[union-attr]
            # The 76 wire bytes (fields checked when the request was decoded).
            wire = (voucher.channel_id.to_bytes(4, "big") + voucher.cumulative.to_bytes(8, "big")
                    + voucher.signature)
            items.append(AcceptItem(voucher.channel_id, voucher.cumulative, wire,
                                    entry.job.verified.request_hash,  # type: ignore[union-attr]
                                    entry.response, entry.charge.increment))
        finished: list[Finished] = []
        again: list[Job] = []
        try:
            results = self.ledger.accept_many(items)
        except (LedgerError, ValueError) as exc:
            error = ProtocolError(ErrorCode.BUSY, "ledger unavailable, nothing charged")
            with self._lock:
                for entry in pending:
                    self._records.pop(entry.channel_id, None)  # re-read when it is back
            for entry in pending:
                entry.job.fields["message"] = str(exc)
                finished.append((entry.job, self._finish(entry.job, self._error(entry.job,
                                                                                 error))))
        else:
            with self._lock:
                for result in results:
                    self._remember(result.record)
            for entry, result in zip(pending, results, strict=True):
                job = entry.job
                if result.status is AcceptStatus.ACCEPTED:
                    outcome = Outcome(job.reply_to, entry.response, ErrorCode.OK,
                                      increment=entry.charge.increment)
                    finished.append((job, self._finish(job, outcome)))
                    continue
                # Another acceptance moved the channel: rules 6-8 again against it.
                job.attempts += 1
                if job.attempts >= CAS_ATTEMPTS:
                    outcome = self._error(job, ProtocolError(
                        ErrorCode.BUSY, "channel contended, retry the same request"))
                    finished.append((job, self._finish(job, outcome)))
                else:
                    again.append(job)
        again.extend(self._release([entry.channel_id for entry in pending]))
        return finished, again

    # ---------------------------------------------------------- bookkeeping --

    def _remember(self, record: ChannelRecord) -> None:
        """Cache a channel's record unless the cache holds a later one (lock held)."""
        cached = self._records.get(record.channel_id)
        if cached is None or cached.cumulative <= record.cumulative:
            self._records[record.channel_id] = record
        self._records.move_to_end(record.channel_id)
        while len(self._records) > RECORD_CACHE:
            self._records.popitem(last=False)

    def _release(self, channel_ids: Sequence[int]) -> list[Job]:
        """Mark channels free; their waiting jobs are returned to be prepared again."""
        again: list[Job] = []
        with self._lock:
            for channel_id in channel_ids:
                self._busy.discard(channel_id)
                again.extend(self._waiting.pop(channel_id, ()))
        return again

    def _error(self, job: Job, exc: ProtocolError) -> Outcome:
        request_id = (job.verified.request.request_id if job.verified is not None
                      else request_id_of(job.payload))
        job.fields["message"] = exc.message
        return Outcome(job.reply_to, error_response(request_id, exc).encode(), exc.code)

    def _internal(self, job: Job, exc: Exception) -> Outcome:
        self._log.exception("request failed")
        outcome = self._error(job, ProtocolError(ErrorCode.PROVIDER_ERROR,
                                                 f"internal error: {type(exc).__name__}"))
        job.fields["message"] = repr(exc)
        return outcome

    def _finish(self, job: Job, outcome: Outcome) -> Outcome:
        latency = (time.perf_counter() - job.started) * 1000
        self.metrics.observe(outcome.code.name, latency, outcome.increment, outcome.replay)
        level = logging.INFO if outcome.code == ErrorCode.OK else logging.WARNING
        if self._log.isEnabledFor(level):
            event(self._log, "request", level, code=outcome.code.name,
                  increment=outcome.increment, replay=outcome.replay, ms=round(latency, 3),
                  **self._log_fields(job))
        return outcome

    @staticmethod
    def _log_fields(job: Job) -> dict[str, object]:
        """What a request's log line says about it (built only when it is written)."""
        fields: dict[str, object] = {"topic": job.topic[:200], "bytes": len(job.payload)}
        if job.verified is not None:
            request = job.verified.request
            fields.update(request_id=request.request_id, product=request.product,
                          channel=request.voucher.channel_id,
                          cumulative=request.voucher.cumulative)
        fields.update(job.fields)
        return fields
