"""The gateway's request path, stage by stage, in the order a request takes them:

=========  ==============================================================================
ingress    ``ingress.py``: MQTT in; the requests of one read become one batch of Jobs
decode     ``protocol.messages.decode_request``, asked by the rules (rule 2)
rules      ``rules.py``, :meth:`Rules.check`: rules 1–5, no ledger needed
charge     ``rules.py``, :meth:`Rules.decide`: rules 6–8 against the channel's last
           accepted record (``records.py``), one request per channel at a time
           (``turns.py``); a replay is answered here with its stored response
serve      ``serve/``: the product's provider, the signed receipt, the encoded response
record     ``nanotoll.ledger``: one durable write for the batch (``accept_many``)
respond    each Job's ``respond`` callback (the ingress publishes, then acknowledges)
=========  ==============================================================================

:meth:`Pipeline.run` is the one driver, for the ingress and for tests alike: it takes a
batch through every stage to its end. Errors and replays are responded to before the
batch's durable write (they store nothing); accepted requests after it. A compare-and-set
conflict (another gateway process accepted on that channel first) sends the request
through the charge stage again, against the winner: a replay, a stale voucher, or a fresh
charge. No MQTT here, so tests and benchmarks drive the exact path the gateway runs.
Every input, however bad, yields exactly one response and one log line; an error
response never stores or charges anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..ledger import AcceptItem, AcceptStatus, ChannelRecord, Ledger, LedgerError
from ..logevent import event
from ..protocol.errors import ErrorCode, ProtocolError
from ..protocol.keccak import keccak256
from ..protocol.messages import decode_request, peek_request_id
from ..protocol.topics import reply_segment, response_topic
from .metrics import Metrics
from .records import RecordCache
from .rules import ChargeDue, Replay, Rules, Verified
from .serve import Answerer, ReceiptSigner
from .turns import ChannelTurns

CAS_ATTEMPTS = 8
HANDLE_TIMEOUT = 30.0  # seconds handle() waits for a channel another caller holds


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
    # Hears the job's outcome once it is final, from whichever run() finishes it.
    respond: Callable[[Job, Outcome], None] | None = None
    started: float = field(default_factory=time.perf_counter)
    attempts: int = 0
    now: int = 0
    reply_to: str = ""
    verified: Verified | None = None  # set once rules 1-5 passed
    fields: dict[str, object] = field(default_factory=dict)  # log fields beyond the request's

    @property
    def passed(self) -> Verified:
        """What rules 1-5 found (only asked of a job that passed them)."""
        assert self.verified is not None
        return self.verified

    @property
    def channel_id(self) -> int:
        return self.passed.request.voucher.channel_id


@dataclass(slots=True, eq=False)
class Pending:
    """A request that passed every rule, with its response ready: to be recorded."""

    job: Job
    charge: ChargeDue
    response: bytes


Finished = tuple[Job, Outcome]


class Pipeline:
    def __init__(self, rules: Rules, ledger: Ledger, secret: bytes,
                 metrics: Metrics | None = None, clock: Callable[[], float] = time.time,
                 logger: logging.Logger | None = None) -> None:
        self.rules = rules
        self.ledger = ledger
        self._signer = ReceiptSigner(secret, rules.separator)
        self._answerer = Answerer(self._signer)
        self.metrics = metrics or Metrics()
        self._clock = clock
        self._log = logger or logging.getLogger("nanotoll.gateway")
        self._records = RecordCache()
        self._turns: ChannelTurns[Job] = ChannelTurns()

    # ------------------------------------------------------------- drivers --

    def run(self, jobs: Sequence[Job]) -> None:
        """Take a batch through every stage; each job's ``respond`` hears its outcome.
        Jobs that come back (a channel came free, a compare-and-set lost) run again at
        once, in this call."""
        while jobs:
            finished, pending, again = self._prepare(jobs)  # decode, rules, charge, serve
            self._respond(finished)  # errors and replays: nothing to record
            if pending:
                finished, retry = self._record(pending)
                self._respond(finished)
                again.extend(retry)
            jobs = again

    def handle(self, topic: str, payload: bytes) -> Outcome:
        """:meth:`run` for one request; returns its outcome (tests, tools). When another
        caller holds the request's channel, that caller's run finishes it."""
        outcomes: list[Outcome] = []
        done = threading.Event()

        def respond(job: Job, outcome: Outcome) -> None:
            outcomes.append(outcome)
            done.set()

        self.run([Job(topic, bytes(payload), respond=respond)])
        if not done.wait(HANDLE_TIMEOUT):  # pragma: no cover - a stuck channel
            raise RuntimeError("channel stayed busy")
        return outcomes[0]

    @staticmethod
    def _respond(finished: Sequence[Finished]) -> None:
        for job, outcome in finished:
            if job.respond is not None:
                job.respond(job, outcome)

    # ------------------------------------------ decode, rules, charge, serve --

    def _prepare(self, jobs: Sequence[Job]) -> tuple[list[Finished], list[Pending], list[Job]]:
        """Rules 1–8 and serving for each job. Returns the finished (errors, replays),
        the pending (to record) and jobs to run again now (their channel came free)."""
        finished: list[Finished] = []
        runnable: list[Job] = []
        for job in jobs:
            outcome = self._check(job)
            if outcome is not None:
                finished.append((job, self._finish(job, outcome)))
            elif self._turns.take(job.channel_id, job):
                runnable.append(job)
        if not runnable:
            return finished, [], []

        missing = self._records.missing(job.channel_id for job in runnable)
        try:
            fetched = self.ledger.lookup_many(missing) if missing else {}
        except LedgerError:
            fetched = None
        pending: list[Pending] = []
        freed: list[int] = []
        for job in runnable:
            channel_id = job.channel_id
            if fetched is None and channel_id in missing:
                outcome = self._error(job, ProtocolError(ErrorCode.BUSY, "ledger unavailable"))
            else:
                record = self._records.get(channel_id)
                if record is None and fetched is not None:
                    record = fetched.get(channel_id)
                    if record is not None:
                        self._records.remember((record,))
                result = self._charge_and_serve(job, record)
                if isinstance(result, Pending):
                    pending.append(result)
                    continue
                outcome = result
            freed.append(channel_id)
            finished.append((job, self._finish(job, outcome)))
        return finished, pending, self._turns.release(freed)

    def _check(self, job: Job) -> Outcome | None:
        """Decode and rules 1–5 (once per job); an Outcome when they fail."""
        if job.verified is not None:
            return None
        job.now = int(self._clock())
        provider_hex = self.rules.provider_hex
        segment = reply_segment(job.topic, self.rules.request_prefix)
        # "" = no response: a topic level we would not publish to (the request is
        # acknowledged and logged, nothing else).
        job.reply_to = "" if segment is None else response_topic(provider_hex, segment)
        try:
            job.verified = self.rules.check(job.topic, job.payload, job.now)
        except ProtocolError as exc:
            return self._error(job, exc)
        except Exception as exc:  # a bug must cost one request, never the gateway
            return self._internal(job, exc)
        return None

    def _charge_and_serve(self, job: Job, record: ChannelRecord | None) -> Pending | Outcome:
        """Rules 6–8 against the channel's last accepted record, then serve and sign."""
        verified = job.passed
        try:
            decision = self._decide(job, record)
            if isinstance(decision, Replay):
                return Outcome(job.reply_to, decision.response, ErrorCode.OK, replay=True)
            response = self._answerer.answer(verified.provider, verified.request,
                                             verified.request_hash, verified.device, job.now)
            return Pending(job, decision, response)
        except ProtocolError as exc:
            return self._error(job, exc)
        except LedgerError:
            return self._error(job, ProtocolError(ErrorCode.BUSY, "ledger unavailable"))
        except Exception as exc:
            return self._internal(job, exc)

    def _decide(self, job: Job, record: ChannelRecord | None) -> Replay | ChargeDue:
        try:
            return self.rules.decide(job.passed, record)
        except ProtocolError as exc:
            if exc.code != ErrorCode.STALE_VOUCHER or record is None:
                raise
            # The cached record may be behind: the error carries the device's highest
            # voucher, so read it from the ledger (errors are rare; worth a read).
            fresh = self.ledger.lookup(record.channel_id)
            if fresh is None or fresh == record:
                raise
            self._records.remember((fresh,))
            return self.rules.decide(job.passed, fresh)

    # -------------------------------------------------------------- record --

    def _record(self, pending: Sequence[Pending]) -> tuple[list[Finished], list[Job]]:
        """Store the batch in one durable write; returns the finished and the jobs to run
        again (conflicts, and requests that waited for a channel)."""
        items = []
        for entry in pending:
            verified = entry.job.passed
            voucher = verified.request.voucher
            items.append(AcceptItem(voucher.channel_id, voucher.cumulative, voucher.pack(),
                                    verified.request_hash, entry.response,
                                    entry.charge.increment))
        finished: list[Finished] = []
        again: list[Job] = []
        try:
            results = self.ledger.accept_many(items)
        except (LedgerError, ValueError) as exc:
            error = ProtocolError(ErrorCode.BUSY, "ledger unavailable, nothing charged")
            self._records.forget(entry.job.channel_id for entry in pending)  # re-read later
            for entry in pending:
                entry.job.fields["message"] = str(exc)
                finished.append((entry.job, self._finish(entry.job,
                                                         self._error(entry.job, error))))
        else:
            self._records.remember(result.record for result in results)
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
        again.extend(self._turns.release([entry.job.channel_id for entry in pending]))
        return finished, again

    # ------------------------------------------------------------ outcomes --

    def _error(self, job: Job, exc: ProtocolError) -> Outcome:
        """Every error response is made and signed here (docs/protocol.md 3.2)."""
        if job.verified is not None:
            request = job.verified.request
            request_id, channel_id = request.request_id, request.voucher.channel_id
            request_hash = job.verified.request_hash
        else:
            request_id, channel_id = self._named_by(job.payload)
            request_hash = keccak256(job.payload)
        job.fields["message"] = exc.message
        response = self._signer.error(request_id, exc, channel_id, request_hash)
        return Outcome(job.reply_to, response.encode(), exc.code)

    @staticmethod
    def _named_by(payload: bytes) -> tuple[int, int]:
        """(request id, channel id) of a request refused before its rules passed: the
        channel when it decodes (rules 3-5 refuse decoded requests), else 0."""
        try:
            request = decode_request(payload)
        except ProtocolError:
            return peek_request_id(payload), 0
        return request.request_id, request.voucher.channel_id

    def _internal(self, job: Job, exc: Exception) -> Outcome:
        self._log.exception("request failed")
        outcome = self._error(job, ProtocolError(ErrorCode.PROVIDER_ERROR,
                                                 f"internal error: {type(exc).__name__}"))
        job.fields["message"] = repr(exc)
        return outcome

    def _finish(self, job: Job, outcome: Outcome) -> Outcome:
        latency = (time.perf_counter() - job.started) * 1000
        product = job.verified.request.product if job.verified is not None else ""
        self.metrics.observe(outcome.code.name, latency, outcome.increment, outcome.replay,
                             product)
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
