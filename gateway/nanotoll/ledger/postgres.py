"""PostgreSQL ledger (psycopg 3): the same contract as the SQLite one, shared by processes.

Compare-and-set. ``accept`` is one statement on the channel's row::

    INSERT INTO channels ... ON CONFLICT (channel_id) DO UPDATE SET ...
        WHERE channels.cumulative <= <previous>  RETURNING ...

PostgreSQL takes the row lock, and under READ COMMITTED re-checks the ``WHERE`` against
the newest committed version of the row when another transaction changed it meanwhile.
So of two gateways that verified against the same previous amount, exactly one updates
the row; the other gets no row back (``CONFLICT``) and re-runs the rules. The voucher
history row is inserted in the same transaction, and its primary key (channel,
cumulative) is a second guard. ``accept_many`` does a batch in one transaction, rows
locked in channel order so that two processes' batches cannot deadlock.

Durability. Each transaction commits with ``synchronous_commit`` as the server has it
(``on`` by default: the commit returns after the WAL is flushed). PostgreSQL flushes the
WAL of concurrent commits together, and ``accept_many`` puts a whole batch in one
commit. A request is answered only after its commit returned.

Amounts are ``NUMERIC(20,0)``, exact for all of uint64. Connections are one per thread;
a broken one is dropped and the next call reconnects.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

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
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS nanotoll_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS channels (
    channel_id BIGINT PRIMARY KEY,
    cumulative NUMERIC(20,0) NOT NULL,
    voucher BYTEA NOT NULL,
    request_hash BYTEA NOT NULL,
    response BYTEA NOT NULL,
    accepted_ms BIGINT NOT NULL,
    redeemed NUMERIC(20,0) NOT NULL DEFAULT 0,
    first_unredeemed_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS vouchers (
    channel_id BIGINT NOT NULL,
    cumulative NUMERIC(20,0) NOT NULL,
    increment NUMERIC(20,0) NOT NULL,
    request_hash BYTEA NOT NULL,
    accepted_ms BIGINT NOT NULL,
    PRIMARY KEY (channel_id, cumulative)
);
CREATE TABLE IF NOT EXISTS settlements (
    settlement_id BIGSERIAL PRIMARY KEY,
    state TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    tx_hash TEXT NOT NULL,
    raw_tx BYTEA NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    block_number BIGINT,
    gas_used BIGINT,
    error TEXT,
    route BIGINT NOT NULL DEFAULT 0,
    previous_hashes TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS settlement_items (
    settlement_id BIGINT NOT NULL REFERENCES settlements(settlement_id),
    channel_id BIGINT NOT NULL,
    cumulative NUMERIC(20,0) NOT NULL,
    voucher BYTEA NOT NULL,
    outcome TEXT,
    PRIMARY KEY (settlement_id, channel_id)
);
CREATE INDEX IF NOT EXISTS settlements_state ON settlements(state);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
"""

# The compare-and-set: insert a channel's first voucher, or move it up only from at most
# the amount the rules were checked against. No row back means another acceptance won.
_ACCEPT = f"""
INSERT INTO channels AS c ({CHANNEL_COLUMNS})
VALUES (%(channel)s, %(amount)s, %(voucher)s, %(hash)s, %(response)s, %(now)s, 0, %(now)s)
ON CONFLICT (channel_id) DO UPDATE SET
    cumulative = EXCLUDED.cumulative, voucher = EXCLUDED.voucher,
    request_hash = EXCLUDED.request_hash, response = EXCLUDED.response,
    accepted_ms = EXCLUDED.accepted_ms,
    first_unredeemed_ms = CASE WHEN c.cumulative > c.redeemed THEN c.first_unredeemed_ms
                               ELSE EXCLUDED.accepted_ms END
WHERE c.cumulative <= %(previous)s
RETURNING {CHANNEL_COLUMNS}
"""
_HISTORY = ("INSERT INTO vouchers (channel_id, cumulative, increment, request_hash, "
            "accepted_ms) VALUES (%s, %s, %s, %s, %s)")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _check_amount(value: int) -> int:
    if not 0 <= value < 1 << 64:
        raise ValueError(f"amount {value} is not a uint64")
    return value


def _safe_url(url: str) -> str:
    """The URL without a password, for messages."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, credentials = head.partition("//")
    return f"{scheme}//{credentials.split(':', 1)[0]}:***@{tail}"



def _one(cursor: psycopg.Cursor[Any]) -> Any:
    """The row of an aggregate query (which always has one)."""
    row = cursor.fetchone()
    if row is None:
        raise LedgerError("an aggregate query returned no row")
    return row

class PostgresLedger(Ledger):
    def __init__(self, url: str, connect_timeout: float = 10.0, create: bool = True) -> None:
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        self.url = url
        self._connect_timeout = connect_timeout
        self._local = threading.local()
        self._connections: list[psycopg.Connection[Any]] = []
        self._guard = threading.Lock()
        self._closed = False

        def install(conn: psycopg.Connection[Any]) -> None:
            # One installer at a time across processes: CREATE ... IF NOT EXISTS races.
            conn.execute("SELECT pg_advisory_xact_lock(7261700)")
            conn.execute(SCHEMA)
            conn.execute("INSERT INTO nanotoll_meta VALUES ('schema', %s) "
                         "ON CONFLICT (key) DO NOTHING", (str(SCHEMA_VERSION),))

        if create:
            self._transaction(install)
        elif self._read("SELECT to_regclass('nanotoll_meta')")[0][0] is None:
            self.close()
            raise LedgerError(f"{_safe_url(url)}: no ledger in this database (nanotoll "
                              "gateway run creates it); check [ledger] url or --ledger")
        row = self._read("SELECT value FROM nanotoll_meta WHERE key='schema'")
        if int(row[0][0]) != SCHEMA_VERSION:
            raise LedgerError(f"{_safe_url(url)}: ledger schema {row[0][0]}, this gateway "
                              f"knows {SCHEMA_VERSION}")

    # ------------------------------------------------------------ plumbing --

    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        if self._closed:
            raise LedgerError("the ledger is closed")
        try:
            conn = psycopg.connect(self.url, connect_timeout=max(1, int(self._connect_timeout)),
                                   autocommit=False)
        except psycopg.Error as exc:
            raise LedgerError(f"{_safe_url(self.url)}: cannot connect: {exc}") from exc
        # Session settings for the guarantees in the module docstring.
        conn.execute("SET synchronous_commit = on")
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()
        self._local.conn = conn
        with self._guard:
            self._connections.append(conn)
        return conn

    def _drop(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.close()
        finally:
            self._local.conn = None
            with self._guard:
                if conn in self._connections:
                    self._connections.remove(conn)

    def _transaction(self, run: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``run`` in one transaction, committed before returning."""
        conn = self._conn()
        try:
            result = run(conn)
            conn.commit()
            return result
        except psycopg.Error as exc:
            self._rollback(conn)
            raise LedgerError(f"ledger write failed: {exc}") from exc
        except BaseException:
            self._rollback(conn)
            raise

    def _rollback(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.rollback()
        except psycopg.Error:
            self._drop(conn)
            return
        if conn.broken:
            self._drop(conn)

    def _query(self, run: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``run`` that only reads. A connection found dead (the server restarted since
        this thread last used it) is replaced and the read done once more: unlike a
        write, a read has nothing that could count twice."""
        for attempt in (1, 2):
            conn = self._conn()
            try:
                result = run(conn)
                conn.commit()  # end the read transaction: no snapshot held across calls
                return result
            except psycopg.Error as exc:
                self._rollback(conn)
                dropped = getattr(self._local, "conn", None) is not conn
                if attempt == 2 or not dropped or self._closed:
                    raise LedgerError(f"ledger read failed: {exc}") from exc
        raise AssertionError("unreachable")

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        return self._query(lambda conn: conn.execute(sql, params).fetchall())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._guard:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    # ------------------------------------------------------------ vouchers --

    @staticmethod
    def _accept_one(conn: psycopg.Connection[Any], item: AcceptItem, now: int
                    ) -> AcceptResult:
        row = conn.execute(_ACCEPT, {
            "channel": item.channel_id, "amount": item.cumulative, "voucher": item.voucher,
            "hash": item.request_hash, "response": item.response, "now": now,
            "previous": item.cumulative - item.increment,
        }).fetchone()
        if row is None:
            current = conn.execute(f"SELECT {CHANNEL_COLUMNS} FROM channels "
                                   "WHERE channel_id=%s", (item.channel_id,)).fetchone()
            if current is None:  # the accept statement inserts a missing channel
                raise LedgerError(f"channel {item.channel_id} has no row after accept")
            return AcceptResult(AcceptStatus.CONFLICT, channel_record(current))
        conn.execute(_HISTORY, (item.channel_id, item.cumulative, item.increment,
                                item.request_hash, now))
        return AcceptResult(AcceptStatus.ACCEPTED, channel_record(row))

    def accept(self, channel_id: int, cumulative: int, voucher_bytes: bytes,
               request_hash: bytes, response_bytes: bytes, increment: int) -> AcceptResult:
        return self.accept_many([AcceptItem(channel_id, cumulative, voucher_bytes,
                                            request_hash, response_bytes, increment)])[0]

    def accept_many(self, items: Sequence[AcceptItem]) -> list[AcceptResult]:
        for item in items:
            item.check()
        if not items:
            return []
        # Lock rows in channel order: two processes' batches never wait on each other in a
        # cycle. A channel appearing twice is compared against its own earlier item.
        order = sorted(range(len(items)), key=lambda i: (items[i].channel_id, i))

        def run(conn: psycopg.Connection[Any]) -> list[AcceptResult]:
            now = _now_ms()
            results: list[AcceptResult | None] = [None] * len(items)
            for index in order:
                results[index] = self._accept_one(conn, items[index], now)
            return [r for r in results if r is not None]

        return self._transaction(run)

    def lookup(self, channel_id: int) -> ChannelRecord | None:
        rows = self._read(f"SELECT {CHANNEL_COLUMNS} FROM channels WHERE channel_id=%s",
                          (channel_id,))
        return channel_record(rows[0]) if rows else None

    def lookup_many(self, channel_ids: Sequence[int]) -> dict[int, ChannelRecord]:
        if not channel_ids:
            return {}
        rows = self._read(f"SELECT {CHANNEL_COLUMNS} FROM channels "
                          "WHERE channel_id = ANY(%s)", (list(channel_ids),))
        return {int(row[0]): channel_record(row) for row in rows}

    def channels(self) -> list[ChannelRecord]:
        rows = self._read(f"SELECT {CHANNEL_COLUMNS} FROM channels ORDER BY channel_id")
        return [channel_record(row) for row in rows]

    def unredeemed(self) -> list[ChannelRecord]:
        rows = self._read(f"SELECT {CHANNEL_COLUMNS} FROM channels "
                          "WHERE cumulative > redeemed ORDER BY channel_id")
        return [channel_record(row) for row in rows]

    def vouchers(self, channel_id: int) -> list[tuple[int, int]]:
        rows = self._read("SELECT cumulative, increment FROM vouchers WHERE channel_id=%s "
                          "ORDER BY cumulative", (channel_id,))
        return [(int(c), int(i)) for c, i in rows]

    def record_redeemed(self, channel_id: int, paid: int) -> None:
        amount = _check_amount(paid)
        # The oldest voucher still above the new amount dates what is left unredeemed
        # (without this the age of a busy channel never resets after a redemption).
        self._transaction(lambda conn: conn.execute(
            "UPDATE channels SET redeemed=%s, first_unredeemed_ms=COALESCE("
            "(SELECT MIN(v.accepted_ms) FROM vouchers v WHERE v.channel_id=%s "
            "AND v.cumulative > %s), first_unredeemed_ms) "
            "WHERE channel_id=%s AND redeemed < %s",
            (amount, channel_id, amount, channel_id, amount)))

    # --------------------------------------------------------- settlements --

    @staticmethod
    def _settlement(conn: psycopg.Connection[Any], settlement_id: int) -> Settlement:
        row = conn.execute(
            "SELECT settlement_id, state, nonce, tx_hash, raw_tx, created_ms, updated_ms, "
            "block_number, gas_used, error, route, previous_hashes FROM settlements "
            "WHERE settlement_id=%s", (settlement_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no settlement {settlement_id}")
        items = conn.execute(
            "SELECT channel_id, cumulative, voucher, outcome FROM settlement_items "
            "WHERE settlement_id=%s ORDER BY channel_id", (settlement_id,)).fetchall()
        return Settlement(
            settlement_id=int(row[0]), state=SettlementState(row[1]), nonce=int(row[2]),
            tx_hash=row[3], raw_tx=bytes(row[4]),
            items=tuple(SettlementItem(int(c), int(a), bytes(v), o) for c, a, v, o in items),
            created_ms=int(row[5]), updated_ms=int(row[6]), block_number=row[7],
            gas_used=row[8], error=row[9], route=int(row[10]),
            previous_hashes=tuple(h for h in row[11].split(",") if h),
        )

    def create_settlement(self, nonce: int, tx_hash: str, raw_tx: bytes,
                          items: Sequence[SettlementItem], route: int = 0) -> Settlement:
        def run(conn: psycopg.Connection[Any]) -> Settlement:
            now = _now_ms()
            row = conn.execute(
                "INSERT INTO settlements (state, nonce, tx_hash, raw_tx, created_ms, "
                "updated_ms, route) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "RETURNING settlement_id",
                (SettlementState.SIGNED.value, nonce, tx_hash, raw_tx, now, now,
                 route)).fetchone()
            assert row is not None
            settlement_id = int(row[0])
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO settlement_items VALUES (%s, %s, %s, %s, NULL)",
                    [(settlement_id, i.channel_id, _check_amount(i.cumulative), i.voucher)
                     for i in items])
            return self._settlement(conn, settlement_id)

        return self._transaction(run)

    def update_settlement(self, settlement_id: int, state: SettlementState, *,
                          tx_hash: str | None = None, raw_tx: bytes | None = None,
                          block_number: int | None = None, gas_used: int | None = None,
                          error: str | None = None,
                          outcomes: dict[int, str] | None = None) -> Settlement:
        def run(conn: psycopg.Connection[Any]) -> Settlement:
            current = conn.execute("SELECT tx_hash, previous_hashes FROM settlements WHERE "
                                   "settlement_id=%s FOR UPDATE", (settlement_id,)).fetchone()
            if current is None:
                raise LedgerError(f"no settlement {settlement_id}")
            if tx_hash is not None and tx_hash != current[0]:
                previous = ",".join(h for h in (*current[1].split(","), current[0]) if h)
                conn.execute("UPDATE settlements SET previous_hashes=%s WHERE "
                             "settlement_id=%s", (previous, settlement_id))
            conn.execute(
                "UPDATE settlements SET state=%s, updated_ms=%s, "
                "tx_hash=COALESCE(%s, tx_hash), raw_tx=COALESCE(%s, raw_tx), "
                "block_number=%s, gas_used=COALESCE(%s, gas_used), error=%s "
                "WHERE settlement_id=%s",
                (state.value, _now_ms(), tx_hash, raw_tx, block_number, gas_used, error,
                 settlement_id))
            for channel_id, outcome in (outcomes or {}).items():
                conn.execute("UPDATE settlement_items SET outcome=%s WHERE settlement_id=%s "
                             "AND channel_id=%s", (outcome, settlement_id, channel_id))
            return self._settlement(conn, settlement_id)

        return self._transaction(run)

    def settlements(self, open_only: bool = False) -> list[Settlement]:
        def run(conn: psycopg.Connection[Any]) -> list[Settlement]:
            if open_only:
                states = [s.value for s in SettlementState if s.open]
                ids = conn.execute("SELECT settlement_id FROM settlements WHERE "
                                   "state = ANY(%s) ORDER BY settlement_id",
                                   (states,)).fetchall()
            else:
                ids = conn.execute("SELECT settlement_id FROM settlements "
                                   "ORDER BY settlement_id").fetchall()
            return [self._settlement(conn, int(row[0])) for row in ids]

        return self._query(run)

    def totals(self) -> dict[str, int]:
        def run(conn: psycopg.Connection[Any]) -> dict[str, int]:
            purchases, accepted = _one(conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(increment), 0) FROM vouchers"))
            channels, redeemed, unredeemed = _one(conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(LEAST(redeemed, cumulative)), 0), "
                "COALESCE(SUM(GREATEST(cumulative - redeemed, 0)), 0) FROM channels"))
            states = [s.value for s in SettlementState if s.open]
            (open_count,) = _one(conn.execute("SELECT COUNT(*) FROM settlements WHERE "
                                              "state = ANY(%s)", (states,)))
            return {"purchases": int(purchases), "channels": int(channels),
                    "accepted": int(accepted), "redeemed": int(redeemed),
                    "unredeemed": int(unredeemed), "settlements_open": int(open_count)}

        return self._query(run)

    # --------------------------------------------------------------- leases --

    def acquire_lease(self, name: str, holder: str, seconds: float) -> bool:
        def run(conn: psycopg.Connection[Any]) -> bool:
            now = _now_ms()
            row = conn.execute(
                "INSERT INTO leases AS l VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE "
                "SET holder=EXCLUDED.holder, expires_ms=EXCLUDED.expires_ms "
                "WHERE l.holder=EXCLUDED.holder OR l.expires_ms < %s RETURNING holder",
                (name, holder, now + int(seconds * 1000), now)).fetchone()
            return row is not None

        return self._transaction(run)

    def release_lease(self, name: str, holder: str) -> None:
        self._transaction(lambda conn: conn.execute(
            "DELETE FROM leases WHERE name=%s AND holder=%s", (name, holder)))
