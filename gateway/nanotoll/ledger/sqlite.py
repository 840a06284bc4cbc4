"""SQLite ledger: WAL mode, ``synchronous=FULL``, group commit.

Durability. One write connection, behind a lock. A caller queues its job and takes the
lock; whoever holds it runs every job waiting in the queue in one ``BEGIN IMMEDIATE``
transaction (each job in its own savepoint, so one failing job does not sink the
others), commits, and only then lets the callers return. With ``synchronous=FULL`` in WAL
mode a commit returns after the WAL is fsynced, so whatever a caller was told is stored
survives a power cut. A power cut loses only jobs whose commit had not returned: their
callers were never answered, their requests never PUBACKed, and the broker (or the
device, re-sending the same bytes) delivers them again. Nothing acknowledged is lost.

Concurrency. Group commit is what makes durable writes cheap: while one fsync runs, the
next jobs queue up and the next caller to get the lock commits them all, so N concurrent
accepts cost about one fsync. There is no writer thread: a lone writer (the gateway's
commit stage) runs its own transaction without a thread hand-off. Reads (``lookup``) use
one connection per thread and never wait for the writer (WAL readers see the last
committed state). Several processes may share the file: ``BEGIN IMMEDIATE`` serialises
writers across processes and the compare-and-set runs inside it, so two gateways can
never accept the same increment twice.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .interface import (
    CHANNEL_COLUMNS,
    AcceptItem,
    AcceptResult,
    AcceptStatus,
    ChannelRecord,
    Ledger,
    LedgerError,
    Settlement,
    SettlementItem,
    SettlementState,
    channel_record,
)

SCHEMA_VERSION = 1
MAX_BATCH = 512

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS channels (
    channel_id INTEGER PRIMARY KEY,
    cumulative TEXT NOT NULL,            -- 20-digit decimal: compares like the number
    voucher BLOB NOT NULL,
    request_hash BLOB NOT NULL,
    response BLOB NOT NULL,
    accepted_ms INTEGER NOT NULL,
    redeemed TEXT NOT NULL DEFAULT '00000000000000000000',
    first_unredeemed_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS vouchers (
    channel_id INTEGER NOT NULL,
    cumulative TEXT NOT NULL,
    increment TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    accepted_ms INTEGER NOT NULL,
    PRIMARY KEY (channel_id, cumulative)
);
CREATE TABLE IF NOT EXISTS settlements (
    settlement_id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    raw_tx BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    block_number INTEGER,
    gas_used INTEGER,
    error TEXT,
    route INTEGER NOT NULL DEFAULT 0,
    previous_hashes TEXT NOT NULL DEFAULT ''  -- comma-separated, oldest first
);
CREATE TABLE IF NOT EXISTS settlement_items (
    settlement_id INTEGER NOT NULL REFERENCES settlements(settlement_id),
    channel_id INTEGER NOT NULL,
    cumulative TEXT NOT NULL,
    voucher BLOB NOT NULL,
    outcome TEXT,
    PRIMARY KEY (settlement_id, channel_id)
);
CREATE INDEX IF NOT EXISTS settlements_state ON settlements(state);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
"""


# The compare-and-set as one statement (amounts are fixed-width text, so text comparison
# is numeric comparison): it moves the row only from at most the amount the rules were
# checked against. Parameters: cumulative, voucher, request_hash, response, now, now,
# channel_id, previous.
_MOVE = ("UPDATE channels SET cumulative=?, voucher=?, request_hash=?, response=?, "
         "accepted_ms=?, first_unredeemed_ms=CASE WHEN cumulative > redeemed "
         "THEN first_unredeemed_ms ELSE ? END WHERE channel_id=? AND cumulative <= ?")
_HISTORY = "INSERT INTO vouchers VALUES (?, ?, ?, ?, ?)"


def _amount(value: int) -> str:
    if not 0 <= value < 1 << 64:
        raise ValueError(f"amount {value} is not a uint64")
    return f"{value:020d}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _Job:
    run: Callable[[sqlite3.Connection], Any]
    done: bool = False  # set, under the write lock, once the job's commit returned
    result: Any = None
    error: BaseException | None = None


class SQLiteLedger(Ledger):
    def __init__(self, path: Path, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_ms = busy_timeout_ms
        self._pending: deque[_Job] = deque()  # jobs waiting for a commit
        self._write_lock = threading.Lock()  # guards the write connection
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        writer = self._connect()
        with writer:
            writer.executescript(SCHEMA)
            writer.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                           (str(SCHEMA_VERSION),))
        version = writer.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
        if int(version) != SCHEMA_VERSION:
            raise LedgerError(f"{self.path}: ledger schema {version}, this gateway knows "
                              f"{SCHEMA_VERSION}")
        self._writer: sqlite3.Connection | None = writer

    # ------------------------------------------------------------ plumbing --

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self._busy_timeout_ms / 1000)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # Savepoints journal the pages they change; in memory, not in a temporary
            # file (nothing durable lives there: a crash discards the open transaction).
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot open the ledger: {exc}") from exc
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise LedgerError("the ledger is closed")
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    job.result = job.run(conn)
                except Exception as exc:  # one job's failure is its own, not the batch's
                    conn.execute("ROLLBACK TO job")
                    job.error = exc
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in batch:
                job.error = LedgerError(f"commit failed: {exc}")
        finally:
            for job in batch:
                job.done = True

    def _write(self, run: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``run`` in a committed write transaction: queue it, then take the write
        lock until some holder (this caller or another) has committed it. A holder
        commits every job queued so far in one transaction (group commit)."""
        if self._closed:
            raise LedgerError("the ledger is closed")
        job = _Job(run)
        self._pending.append(job)
        while not job.done:
            with self._write_lock:
                if job.done:  # committed by the holder before us
                    break
                batch = [self._pending.popleft()
                         for _ in range(min(MAX_BATCH, len(self._pending)))]
                if self._writer is None:
                    for waiting in batch:
                        waiting.error, waiting.done = LedgerError("the ledger is closed"), True
                else:
                    self._commit(self._writer, batch)
        if job.error is not None:
            if isinstance(job.error, LedgerError | ValueError):
                raise job.error
            raise LedgerError(str(job.error)) from job.error
        return job.result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    # ------------------------------------------------------------ vouchers --

    @staticmethod
    def _accept_one(conn: sqlite3.Connection, item: AcceptItem, now: int) -> AcceptResult:
        previous = _amount(item.cumulative - item.increment)
        amount = _amount(item.cumulative)
        # The compare-and-set as one statement (amounts are fixed-width text, so text
        # comparison is numeric comparison); no row back: a first voucher or a conflict.
        row = conn.execute(_MOVE + " RETURNING redeemed, first_unredeemed_ms",
                           (amount, item.voucher, item.request_hash, item.response, now, now,
                            item.channel_id, previous)).fetchone()
        if row is not None:
            record = ChannelRecord(item.channel_id, item.cumulative, item.voucher,
                                   item.request_hash, item.response, now, int(row[0]), row[1])
        else:
            current = conn.execute(f"SELECT {CHANNEL_COLUMNS} FROM channels "
                                   "WHERE channel_id=?", (item.channel_id,)).fetchone()
            if current is not None:
                return AcceptResult(AcceptStatus.CONFLICT, channel_record(current))
            record = ChannelRecord(item.channel_id, item.cumulative, item.voucher,
                                   item.request_hash, item.response, now, 0, now)
            conn.execute("INSERT INTO channels VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (item.channel_id, amount, item.voucher, item.request_hash,
                          item.response, now, _amount(0), now))
        conn.execute(_HISTORY, (item.channel_id, amount, _amount(item.increment),
                                item.request_hash, now))
        return AcceptResult(AcceptStatus.ACCEPTED, record)

    @classmethod
    def _accept_all(cls, conn: sqlite3.Connection, items: Sequence[AcceptItem], now: int
                    ) -> list[AcceptResult]:
        """The batch's compare-and-sets. The usual batch (distinct channels, each with a
        row already, none moved by another gateway) takes three statements whatever its
        size: every row moved by one ``executemany``, then read back, then the history
        inserted. If fewer rows moved than items (a channel's first voucher, a conflict)
        the batch is rolled back to its savepoint and done item by item."""
        if len({item.channel_id for item in items}) == len(items):
            rows = [(_amount(item.cumulative), item.voucher, item.request_hash, item.response,
                     now, now, item.channel_id, _amount(item.cumulative - item.increment))
                    for item in items]
            conn.execute("SAVEPOINT batch")
            before = conn.total_changes
            conn.executemany(_MOVE, rows)
            if conn.total_changes - before == len(items):
                moved: dict[int, tuple[int, int]] = {}
                for start in range(0, len(items), 500):
                    chunk = [item.channel_id for item in items[start:start + 500]]
                    marks = ",".join("?" * len(chunk))
                    for channel_id, redeemed, first in conn.execute(
                            "SELECT channel_id, redeemed, first_unredeemed_ms FROM channels "
                            f"WHERE channel_id IN ({marks})", chunk):
                        moved[channel_id] = (int(redeemed), first)
                conn.executemany(_HISTORY, [(item.channel_id, row[0], _amount(item.increment),
                                             item.request_hash, now)
                                            for item, row in zip(items, rows, strict=True)])
                conn.execute("RELEASE batch")
                return [AcceptResult(AcceptStatus.ACCEPTED, ChannelRecord(
                    item.channel_id, item.cumulative, item.voucher, item.request_hash,
                    item.response, now, *moved[item.channel_id])) for item in items]
            conn.execute("ROLLBACK TO batch")
            conn.execute("RELEASE batch")
        return [cls._accept_one(conn, item, now) for item in items]

    def accept(self, channel_id: int, cumulative: int, voucher_bytes: bytes,
               request_hash: bytes, response_bytes: bytes, increment: int) -> AcceptResult:
        return self.accept_many([AcceptItem(channel_id, cumulative, voucher_bytes,
                                            request_hash, response_bytes, increment)])[0]

    def accept_many(self, items: Sequence[AcceptItem]) -> list[AcceptResult]:
        """One job for the writer: the batch commits with whatever else is queued."""
        for item in items:
            item.check()
        if not items:
            return []

        def run(conn: sqlite3.Connection) -> list[AcceptResult]:
            now = _now_ms()
            return self._accept_all(conn, items, now)

        result: list[AcceptResult] = self._write(run)
        return result

    def lookup(self, channel_id: int) -> ChannelRecord | None:
        try:
            row = self._reader().execute(
                f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE channel_id=?", (channel_id,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise LedgerError(f"lookup failed: {exc}") from exc
        return None if row is None else channel_record(row)

    def lookup_many(self, channel_ids: Sequence[int]) -> dict[int, ChannelRecord]:
        if not channel_ids:
            return {}
        found: dict[int, ChannelRecord] = {}
        ids = list(channel_ids)
        try:
            conn = self._reader()
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for row in conn.execute(f"SELECT {CHANNEL_COLUMNS} FROM channels "
                                        f"WHERE channel_id IN ({marks})", chunk):
                    found[row[0]] = channel_record(row)
        except sqlite3.Error as exc:
            raise LedgerError(f"lookup failed: {exc}") from exc
        return found

    def channels(self) -> list[ChannelRecord]:
        rows = self._reader().execute(
            f"SELECT {CHANNEL_COLUMNS} FROM channels ORDER BY channel_id").fetchall()
        return [channel_record(row) for row in rows]

    def unredeemed(self) -> list[ChannelRecord]:
        rows = self._reader().execute(
            f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE cumulative > redeemed "
            "ORDER BY channel_id").fetchall()
        return [channel_record(row) for row in rows]

    def vouchers(self, channel_id: int) -> list[tuple[int, int]]:
        """Every accepted (cumulative, increment) of a channel, in order (for audits)."""
        rows = self._reader().execute(
            "SELECT cumulative, increment FROM vouchers WHERE channel_id=? ORDER BY cumulative",
            (channel_id,)).fetchall()
        return [(int(c), int(i)) for c, i in rows]

    def record_redeemed(self, channel_id: int, paid: int) -> None:
        amount = _amount(paid)

        def run(conn: sqlite3.Connection) -> None:
            # The oldest voucher still above the new amount dates what is left unredeemed
            # (without this the age of a busy channel never resets after a redemption).
            conn.execute(
                "UPDATE channels SET redeemed=?, first_unredeemed_ms=COALESCE("
                "(SELECT MIN(v.accepted_ms) FROM vouchers v WHERE v.channel_id=? "
                "AND v.cumulative > ?), first_unredeemed_ms) "
                "WHERE channel_id=? AND redeemed < ?",
                (amount, channel_id, amount, channel_id, amount))

        self._write(run)

    # --------------------------------------------------------- settlements --

    def _settlement(self, conn: sqlite3.Connection, settlement_id: int) -> Settlement:
        row = conn.execute(
            "SELECT settlement_id, state, nonce, tx_hash, raw_tx, created_ms, updated_ms, "
            "block_number, gas_used, error, route, previous_hashes FROM settlements "
            "WHERE settlement_id=?",
            (settlement_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no settlement {settlement_id}")
        items = conn.execute(
            "SELECT channel_id, cumulative, voucher, outcome FROM settlement_items "
            "WHERE settlement_id=? ORDER BY channel_id", (settlement_id,)).fetchall()
        return Settlement(
            settlement_id=row[0], state=SettlementState(row[1]), nonce=row[2], tx_hash=row[3],
            raw_tx=bytes(row[4]),
            items=tuple(SettlementItem(c, int(a), bytes(v), o) for c, a, v, o in items),
            created_ms=row[5], updated_ms=row[6], block_number=row[7], gas_used=row[8],
            error=row[9], route=row[10],
            previous_hashes=tuple(h for h in row[11].split(",") if h),
        )

    def create_settlement(self, nonce: int, tx_hash: str, raw_tx: bytes,
                          items: Sequence[SettlementItem], route: int = 0) -> Settlement:
        def run(conn: sqlite3.Connection) -> Settlement:
            now = _now_ms()
            cursor = conn.execute(
                "INSERT INTO settlements (state, nonce, tx_hash, raw_tx, created_ms, updated_ms,"
                " route) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (SettlementState.SIGNED.value, nonce, tx_hash, raw_tx, now, now, route))
            settlement_id = int(cursor.lastrowid or 0)
            conn.executemany(
                "INSERT INTO settlement_items VALUES (?, ?, ?, ?, NULL)",
                [(settlement_id, i.channel_id, _amount(i.cumulative), i.voucher) for i in items])
            return self._settlement(conn, settlement_id)

        result: Settlement = self._write(run)
        return result

    def update_settlement(self, settlement_id: int, state: SettlementState, *,
                          tx_hash: str | None = None, raw_tx: bytes | None = None,
                          block_number: int | None = None, gas_used: int | None = None,
                          error: str | None = None,
                          outcomes: dict[int, str] | None = None) -> Settlement:
        def run(conn: sqlite3.Connection) -> Settlement:
            if tx_hash is not None:
                current = self._settlement(conn, settlement_id)
                if tx_hash != current.tx_hash:
                    previous = ",".join((*current.previous_hashes, current.tx_hash))
                    conn.execute("UPDATE settlements SET previous_hashes=? WHERE "
                                 "settlement_id=?", (previous, settlement_id))
            conn.execute(
                "UPDATE settlements SET state=?, updated_ms=?, "
                "tx_hash=COALESCE(?, tx_hash), raw_tx=COALESCE(?, raw_tx), "
                "block_number=?, gas_used=COALESCE(?, gas_used), error=? "
                "WHERE settlement_id=?",
                (state.value, _now_ms(), tx_hash, raw_tx, block_number, gas_used, error,
                 settlement_id))
            for channel_id, outcome in (outcomes or {}).items():
                conn.execute("UPDATE settlement_items SET outcome=? WHERE settlement_id=? AND "
                             "channel_id=?", (outcome, settlement_id, channel_id))
            return self._settlement(conn, settlement_id)

        result: Settlement = self._write(run)
        return result

    def settlements(self, open_only: bool = False) -> list[Settlement]:
        conn = self._reader()
        if open_only:
            states = [s.value for s in SettlementState if s.open]
            ids = conn.execute(
                "SELECT settlement_id FROM settlements WHERE state IN (?, ?, ?) "
                "ORDER BY settlement_id", states).fetchall()
        else:
            ids = conn.execute("SELECT settlement_id FROM settlements ORDER BY settlement_id"
                               ).fetchall()
        return [self._settlement(conn, row[0]) for row in ids]

    def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            now = _now_ms()
            row = conn.execute("SELECT holder, expires_ms FROM leases WHERE name=?",
                               (name,)).fetchone()
            if row is not None and row[0] != holder and row[1] >= now:
                return False
            conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)",
                         (name, holder, now + int(seconds * 1000)))
            return True

        result: bool = self._write(run)
        return result

    def release_lease(self, name: str, holder: str) -> None:
        self._write(lambda conn: conn.execute("DELETE FROM leases WHERE name=? AND holder=?",
                                              (name, holder)))

    def totals(self) -> dict[str, int]:
        conn = self._reader()
        purchases = conn.execute("SELECT COUNT(*) FROM vouchers").fetchone()[0]
        # Increments are uint64 text; summing in SQL would go through floats past 2^53.
        accepted = sum(int(row[0]) for row in conn.execute("SELECT increment FROM vouchers"))
        channels = self.channels()
        return {
            "purchases": int(purchases),
            "channels": len(channels),
            "accepted": accepted,  # units charged: the sum of accepted increments
            "redeemed": sum(min(c.redeemed, c.cumulative) for c in channels),
            "unredeemed": sum(c.unredeemed for c in channels),
            "settlements_open": len(self.settlements(open_only=True)),
        }
