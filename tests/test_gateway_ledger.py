"""The SQLite ledger: compare-and-set across threads and processes, group commit, records."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest
from nanotoll.gateway.ledger import AcceptStatus, LedgerError, SettlementItem, SettlementState
from nanotoll.gateway.ledger_sqlite import SQLiteLedger, _amount

VOUCHER = bytes(76)
MAX = (1 << 64) - 1


def test_accept_lookup_and_uint64_amounts(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")
    try:
        result = ledger.accept(7, MAX, VOUCHER, b"h" * 32, b"resp", MAX)
        assert result.status is AcceptStatus.ACCEPTED
        record = ledger.lookup(7)
        assert record is not None and record.cumulative == MAX and record.response == b"resp"
        assert ledger.lookup(8) is None
        # A second connection (another process would do the same) sees it at once.
        row = sqlite3.connect(tmp_path / "l.db").execute(
            "SELECT cumulative FROM channels WHERE channel_id=7").fetchone()
        assert row[0] == _amount(MAX)
        with pytest.raises(ValueError):
            ledger.accept(7, 5, VOUCHER, b"h" * 32, b"r", 0)
    finally:
        ledger.close()


def test_compare_and_set_refuses_a_second_acceptance_of_the_same_increment(tmp_path: Path
                                                                            ) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")
    try:
        assert ledger.accept(1, 100, VOUCHER, b"a" * 32, b"r1", 100).status \
            is AcceptStatus.ACCEPTED
        # Verified against the same previous amount (0): must lose.
        result = ledger.accept(1, 150, VOUCHER, b"b" * 32, b"r2", 150)
        assert result.status is AcceptStatus.CONFLICT and result.record.cumulative == 100
        assert ledger.accept(1, 150, VOUCHER, b"b" * 32, b"r2", 50).status \
            is AcceptStatus.ACCEPTED
        assert ledger.vouchers(1) == [(100, 100), (150, 50)]
    finally:
        ledger.close()


def test_many_threads_one_channel_each_increment_accepted_once(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")
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

    try:
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
    finally:
        ledger.close()


def _process_racer(path: str, index: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    ledger = SQLiteLedger(Path(path))
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


def test_two_processes_never_accept_the_same_increment_twice(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    SQLiteLedger(path).close()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_process_racer, args=(str(path), i, queue))
                 for i in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    total = queue.get() + queue.get()
    assert total == 120  # 40 steps x 3 channels, each won by exactly one process
    ledger = SQLiteLedger(path)
    try:
        for channel in range(1, 4):
            assert len(ledger.vouchers(channel)) == 40
    finally:
        ledger.close()


def test_settlement_records_move_through_states(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")
    try:
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
    finally:
        ledger.close()


def test_closed_ledger_refuses_writes(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")
    ledger.close()
    with pytest.raises(LedgerError):
        ledger.accept(1, 1, VOUCHER, b"a" * 32, b"r", 1)
