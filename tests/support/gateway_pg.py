"""PostgreSQL for the gateway tests: one throw-away server per session, a database per test.

The root conftest registers these fixtures for every folder. The server is Debian's
postgresql 15 on a free loopback port (:class:`nanotoll.servers.postgres.PostgresServer`),
stopped and deleted at the end.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nanotoll.ledger import Ledger, open_ledger
from nanotoll.servers.postgres import PostgresServer

from support.tools import require

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    require("postgresql")
    # fsync off: these tests cut no power under the server, and a shutdown checkpoint over
    # many test databases would cost seconds of syncs.
    with PostgresServer(workdir=tmp_path_factory.mktemp("postgres"), fsync=False) as server:
        yield server


def fresh_database(server: PostgresServer) -> str:
    return server.create_database(f"test_{next(_databases)}")


class LedgerStore:
    """Where a test's ledger lives; ``open()`` may be called again (a restart, a second
    process), every ledger opened is closed at the end of the test."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind, self.url = kind, url
        self._opened: list[Ledger] = []

    def open(self) -> Ledger:
        ledger = open_ledger(self.url)
        self._opened.append(ledger)
        return ledger

    def close_all(self) -> None:
        for ledger in self._opened:
            ledger.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    """The same test against a SQLite file and a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = fresh_database(server)
    store = LedgerStore(request.param, url)
    yield store
    store.close_all()


OpenLedger = Callable[[], Ledger]
