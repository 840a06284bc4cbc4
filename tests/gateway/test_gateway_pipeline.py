"""The pipeline's parts of its own: the record cache, the channel turns, and the one
driver (Pipeline.run) that the ingress and handle() share, on a real SQLite ledger."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from nanotoll.gateway.pipeline import Job, Outcome
from nanotoll.gateway.records import RecordCache
from nanotoll.gateway.turns import ChannelTurns
from nanotoll.ledger import ChannelRecord
from nanotoll.protocol.errors import ErrorCode
from support.gateway_support import Device
from support.pipeline_rig import Rig


def record(channel_id: int, cumulative: int) -> ChannelRecord:
    return ChannelRecord(channel_id, cumulative, bytes(76), bytes(32), b"", 0, 0, 0)


def test_record_cache_keeps_the_later_record_and_forgets_the_oldest() -> None:
    cache = RecordCache(capacity=2)
    cache.remember([record(1, 10)])
    cache.remember([record(1, 5)])  # behind what is kept: ignored
    assert cache.get(1) == record(1, 10)
    cache.remember([record(2, 1), record(3, 1)])  # over capacity: channel 1 leaves
    assert cache.get(1) is None and cache.missing([1, 2, 3]) == [1]
    cache.forget([2])
    assert cache.missing([1, 2, 3]) == [1, 2]


def test_channel_turns_queue_later_jobs_until_release() -> None:
    turns: ChannelTurns[str] = ChannelTurns()
    assert turns.take(7, "first")
    assert not turns.take(7, "second") and not turns.take(7, "third")
    assert turns.take(8, "other")  # another channel is free
    assert turns.release([7]) == ["second", "third"]
    assert turns.take(7, "second")
    assert turns.release([7, 8]) == []


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.ledger.close()


def test_run_answers_errors_before_the_batch_is_recorded(rig: Rig) -> None:
    heard: list[tuple[str, ErrorCode, int]] = []

    def respond(job: Job, outcome: Outcome) -> None:
        purchases = rig.ledger.totals()["purchases"]
        heard.append((job.topic, outcome.code, purchases))

    first, second = Device(1), Device(5)
    jobs = [Job(first.topic, first.request(), respond=respond),
            Job(second.topic + "x", second.request(pay=9_000 + 1500), respond=respond),
            Job(second.topic, second.request(cumulative=9_000 + 1500), respond=respond)]
    rig.pipeline.run(jobs)
    assert [code for _, code, _ in heard] == [ErrorCode.WRONG_TOPIC, ErrorCode.OK, ErrorCode.OK]
    assert heard[0][2] == 0  # the error went out before anything was stored
    assert heard[1][2] == heard[2][2] == 2  # the purchases after their one durable write


def test_one_channel_from_many_callers_gets_one_outcome_each(rig: Rig) -> None:
    """Callers that find the channel taken are finished by the caller that holds it."""
    device = Device(1)
    payloads = [device.request() for _ in range(12)]
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def buy(payload: bytes) -> None:
        outcome = rig.pipeline.handle(device.topic, payload)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=buy, args=(payload,)) for payload in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == len(payloads)
    assert {outcome.code for outcome in outcomes} <= {ErrorCode.OK, ErrorCode.STALE_VOUCHER}
    charged = sum(outcome.increment for outcome in outcomes)
    stored = rig.ledger.lookup(1)
    assert stored is not None and stored.cumulative == charged  # nothing charged twice
