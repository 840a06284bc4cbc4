"""The ledger contract, against SQLite and PostgreSQL alike: compare-and-set across threads
and processes, batches, uint64 amounts, settlement records, leases."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from nanotoll.ledger import (
    AcceptItem,
    AcceptStatus,
    LedgerError,
    SettlementItem,
    SettlementState,
    open_ledger,
)
from nanotoll.ledger.sqlite import _amount

if TYPE_CHECKING:
    from support.gateway_pg import LedgerStore


VOUCHER = bytes(76)
MAX = (1 << 64) - 1


def test_accept_lookup_and_uint64_amounts(ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open()
    result = ledger.accept(7, MAX, VOUCHER, b"h" * 32, b"resp", MAX)
    assert result.status is AcceptStatus.ACCEPTED
    record = ledger.lookup(7)
    assert record is not None and record.cumulative == MAX and record.response == b"resp"
    assert ledger.lookup(8) is None
    # A second ledger on the same store (another process would do the same) sees it.
    assert ledger_store.open().lookup(7) == record
    assert ledger.totals()["accepted"] == MAX
    with pytest.raises(ValueError):
        ledger.accept(7, 5, VOUCHER, b"h" * 32, b"r", 0)
    with pytest.raises(ValueError):
        ledger.accept(7, 1 << 64, VOUCHER, b"h" * 32, b"r", 1)


def test_sqlite_stores_amounts_as_fixed_width_text(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        ledger.accept(7, MAX, VOUCHER, b"h" * 32, b"resp", MAX)
        row = sqlite3.connect(tmp_path / "l.db").execute(
            "SELECT cumulative FROM channels WHERE channel_id=7").fetchone()
        assert row[0] == _amount(MAX)
    finally:
        ledger.close()


def test_compare_and_set_refuses_a_second_acceptance_of_the_same_increment(
        ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open()
    assert ledger.accept(1, 100, VOUCHER, b"a" * 32, b"r1", 100).status \
        is AcceptStatus.ACCEPTED
    # Verified against the same previous amount (0): must lose.
    result = ledger.accept(1, 150, VOUCHER, b"b" * 32, b"r2", 150)
    assert result.status is AcceptStatus.CONFLICT and result.record.cumulative == 100
    assert result.record.response == b"r1"
    assert ledger.accept(1, 150, VOUCHER, b"b" * 32, b"r2", 50).status \
        is AcceptStatus.ACCEPTED
    assert ledger.vouchers(1) == [(100, 100), (150, 50)]
    # The same voucher again (a retry that lost its answer) is a conflict, not a charge.
    assert ledger.accept(1, 150, VOUCHER, b"b" * 32, b"r2", 50).status \
        is AcceptStatus.CONFLICT
    assert ledger.totals()["purchases"] == 2 and ledger.totals()["accepted"] == 150


def test_accept_many_is_one_commit_of_independent_compare_and_sets(
        ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open()
    ledger.accept(2, 10, VOUCHER, b"x" * 32, b"r", 10)
    items = [AcceptItem(3, 5, VOUCHER, b"a" * 32, b"three", 5),
             AcceptItem(2, 30, VOUCHER, b"b" * 32, b"two-stale", 30),  # checked against 0
             AcceptItem(1, 7, VOUCHER, b"c" * 32, b"one", 7),
             AcceptItem(2, 40, VOUCHER, b"d" * 32, b"two", 30)]
    results = ledger.accept_many(items)
    assert [r.status for r in results] == [AcceptStatus.ACCEPTED, AcceptStatus.CONFLICT,
                                           AcceptStatus.ACCEPTED, AcceptStatus.ACCEPTED]
    assert results[1].record.cumulative == 10 and results[3].record.cumulative == 40
    assert results[3].record.response == b"two"
    found = ledger.lookup_many([1, 2, 3, 99])
    assert sorted(found) == [1, 2, 3] and found[3].response == b"three"
    assert ledger.accept_many([]) == []
    with pytest.raises(ValueError):
        ledger.accept_many([AcceptItem(4, 5, VOUCHER, b"a" * 32, b"r", 6)])


def test_accept_many_over_known_channels_returns_the_stored_rows_and_a_conflict_stays_one(
        ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open()
    for channel_id in (1, 2, 3):
        ledger.accept(channel_id, 10, VOUCHER, b"x" * 32, b"r", 10)
    ledger.record_redeemed(2, 10)
    # Distinct channels, each with a row, none moved meanwhile (SQLite's batched path).
    results = ledger.accept_many([AcceptItem(c, 20, VOUCHER, bytes([c]) * 32, b"ok", 10)
                                  for c in (3, 1, 2)])
    assert [r.status for r in results] == [AcceptStatus.ACCEPTED] * 3
    assert [r.record for r in results] == [ledger.lookup(c) for c in (3, 1, 2)]
    assert results[2].record.redeemed == 10 and results[2].record.unredeemed == 10
    # One of them checked against an amount that moved: only that one loses.
    results = ledger.accept_many([AcceptItem(1, 30, VOUCHER, b"a" * 32, b"one", 10),
                                  AcceptItem(2, 30, VOUCHER, b"b" * 32, b"two", 20),
                                  AcceptItem(3, 30, VOUCHER, b"c" * 32, b"three", 10)])
    assert [r.status for r in results] == [AcceptStatus.ACCEPTED, AcceptStatus.CONFLICT,
                                           AcceptStatus.ACCEPTED]
    assert results[1].record == ledger.lookup(2) and results[1].record.cumulative == 20
    assert [r.record for r in results[::2]] == [ledger.lookup(1), ledger.lookup(3)]
    assert ledger.vouchers(2) == [(10, 10), (20, 10)]
    assert ledger.vouchers(3) == [(10, 10), (20, 10), (30, 10)]
    assert ledger.totals()["purchases"] == 8


def test_many_threads_one_channel_each_increment_accepted_once(ledger_store: LedgerStore
                                                               ) -> None:
    ledger = ledger_store.open()
    wins: list[int] = []
    lock = threading.Lock()

    def racer(index: int) -> None:
        # 8 racers per step all claim the same step of 10 units on every channel.
        for step in range(1, 26):
            for channel in range(1, 5):
                result = ledger.accept(channel, step * 10, VOUCHER, bytes([index]) * 32,
                                       b"r", 10)
                if result.status is AcceptStatus.ACCEPTED:
                    with lock:
                        wins.append(channel)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each (channel, step) is won exactly once: 25 steps x 4 channels.
    assert len(wins) == 100
    for channel in range(1, 5):
        assert [c for c, _ in ledger.vouchers(channel)] == [s * 10 for s in range(1, 26)]
    assert ledger.totals()["purchases"] == 100


def _process_racer(url: str, index: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    ledger = open_ledger(url)
    won = 0
    try:
        for step in range(1, 41):
            for channel in range(1, 4):
                if ledger.accept(channel, step * 5, VOUCHER, bytes([index]) * 32, b"r",
                                 5).status is AcceptStatus.ACCEPTED:
                    won += 1
    finally:
        ledger.close()
    queue.put(won)


def test_two_processes_never_accept_the_same_increment_twice(ledger_store: LedgerStore
                                                             ) -> None:
    ledger_store.open()  # creates the schema
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_process_racer, args=(ledger_store.url, i, queue))
                 for i in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    total = queue.get() + queue.get()
    assert total == 120  # 40 steps x 3 channels, each won by exactly one process
    ledger = ledger_store.open()
    for channel in range(1, 4):
        assert len(ledger.vouchers(channel)) == 40


def test_settlement_records_move_through_states(ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open()
    ledger.accept(1, 300, VOUCHER, b"a" * 32, b"r", 300)
    ledger.accept(2, 500, VOUCHER, b"a" * 32, b"r", 500)
    assert [r.channel_id for r in ledger.unredeemed()] == [1, 2]
    items = [SettlementItem(1, 300, VOUCHER), SettlementItem(2, 500, VOUCHER)]
    created = ledger.create_settlement(4, "0xabc", b"raw", items)
    assert created.state is SettlementState.SIGNED and created.amount == 800
    for state in (SettlementState.SENT, SettlementState.MINED):
        ledger.update_settlement(created.settlement_id, state, block_number=9)
    assert [s.settlement_id for s in ledger.settlements(open_only=True)] == [1]
    done = ledger.update_settlement(created.settlement_id, SettlementState.CONFIRMED,
                                    block_number=9, gas_used=50_000,
                                    outcomes={1: "paid", 2: "skipped"})
    assert [i.outcome for i in done.items] == ["paid", "skipped"]
    assert ledger.settlements(open_only=True) == []
    ledger.record_redeemed(1, 300)
    ledger.record_redeemed(1, 100)  # never lowers
    assert [r.channel_id for r in ledger.unredeemed()] == [2]
    assert ledger.totals()["redeemed"] == 300
    replaced = ledger.update_settlement(created.settlement_id, SettlementState.SENT,
                                        tx_hash="0xdef", raw_tx=b"raw2")
    assert replaced.hashes == ("0xdef", "0xabc") and replaced.raw_tx == b"raw2"
    assert ledger_store.open().settlements()[0].hashes == ("0xdef", "0xabc")


def test_lease_has_one_holder_until_released_or_expired(ledger_store: LedgerStore) -> None:
    ledger, other = ledger_store.open(), ledger_store.open()
    assert ledger.acquire_lease("settlement", "a", 30)
    assert not other.acquire_lease("settlement", "b", 30)
    assert ledger.acquire_lease("settlement", "a", 30)  # renewal
    other.release_lease("settlement", "b")  # not the holder: no effect
    assert not other.acquire_lease("settlement", "b", 30)
    ledger.release_lease("settlement", "a")
    assert other.acquire_lease("settlement", "b", 0.05)
    time.sleep(0.1)
    assert ledger.acquire_lease("settlement", "a", 30)  # b's lease ran out


def test_closed_ledger_refuses_writes(ledger_store: LedgerStore) -> None:
    ledger = ledger_store.open()
    ledger.close()
    with pytest.raises(LedgerError):
        ledger.accept(1, 1, VOUCHER, b"a" * 32, b"r", 1)
