"""A throw-away PostgreSQL server on a free loopback port (Debian's postgresql 15).

For tests, benchmarks and the fleet tool: ``with PostgresServer() as pg: pg.url``. It runs
``initdb`` into a fresh temporary cluster, starts ``postgres`` listening on 127.0.0.1 only
(no Unix socket outside its own directory), and on exit stops it with a fast shutdown and
deletes the cluster.

PostgreSQL refuses to run as root. When this process is root (CI), the cluster directory
is created under the system temporary directory (pytest's own temp dirs are private to
root), owned by the ``postgres`` system user that Debian's package creates, and
``initdb`` and ``postgres`` run as that user; otherwise they run as the caller.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .process import LOOPBACK, ManagedProcess, ServiceError, free_port, port_in_use, wait_for_port

PG_VERSIONS = ("15", "16", "17")
DATABASE = "nanotoll"
USER = "nanotoll"


def postgres_bindir() -> Path:
    """The directory holding initdb and postgres: $NANOTOLL_PG_BINDIR or Debian's."""
    configured = os.environ.get("NANOTOLL_PG_BINDIR")
    if configured:
        path = Path(configured)
        if not (path / "initdb").exists():
            raise ServiceError(f"NANOTOLL_PG_BINDIR={configured} has no initdb")
        return path
    for version in PG_VERSIONS:
        path = Path(f"/usr/lib/postgresql/{version}/bin")
        if (path / "initdb").exists() and (path / "postgres").exists():
            return path
    raise ServiceError("PostgreSQL server binaries not found: run 'make setup' (it installs "
                       "Debian's postgresql) or set NANOTOLL_PG_BINDIR")


def _run_as() -> dict[str, Any]:
    """subprocess keyword arguments that drop root to the postgres user."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError("running as root but there is no 'postgres' user to run the "
                           "server as (Debian's postgresql package creates it)") from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


class PostgresServer(ManagedProcess):
    """postgres on 127.0.0.1:<free port>, trust authentication, one database ``nanotoll``.

    ``fsync=False`` trades crash safety for speed (for tests that never cut power); the
    default keeps PostgreSQL's durable settings.
    """

    name = "postgres"

    def __init__(self, port: int | None = None, workdir: Path | None = None,
                 fsync: bool = True, max_connections: int = 100) -> None:
        super().__init__(workdir)
        self.host = LOOPBACK
        self.port = port or free_port()
        self.fsync = fsync
        self.max_connections = max_connections
        self.bindir = postgres_bindir()
        self._as = _run_as()
        self.datadir: Path | None = None
        self._cluster_root: Path | None = None

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        return f"postgresql://{USER}@{self.host}:{self.port}/{database}"

    def _prepare_cluster(self) -> Path:
        # Under the system temp dir when root: the postgres user must reach it.
        parent = None if not self._as else tempfile.gettempdir()
        root = Path(tempfile.mkdtemp(prefix="nanotoll-pg-", dir=parent or self.workdir))
        if self._as:
            os.chown(root, self._as["user"], self._as["group"])
        self._cluster_root = root
        data = root / "data"
        result = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, check=False, **self._as)
        if result.returncode != 0:
            raise ServiceError(f"initdb failed ({result.returncode}):\n"
                               f"{result.stdout.decode(errors='replace')[-2000:]}")
        return data

    def start(self) -> None:
        if port_in_use(self.port):
            raise ServiceError(f"port {self.port} is taken: stop what listens there or pick "
                               "another port")
        if self.datadir is None:
            self.datadir = self._prepare_cluster()
        settings = {
            "listen_addresses": LOOPBACK,
            "port": str(self.port),
            "unix_socket_directories": str(self.datadir),
            "max_connections": str(self.max_connections),
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "shared_buffers": "64MB",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        argv = [str(self.bindir / "postgres"), "-D", str(self.datadir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.datadir.parent, start_new_session=True, **self._as)
        wait_for_port(self.port, self.process, 30, "postgres", self.log_path)
        self._wait_ready()
        self._create_database(DATABASE)

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url_for("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceError(f"postgres did not accept connections: {exc}") from exc
                time.sleep(0.1)

    def _create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname=%s",
                                  (name,)).fetchone()
            if exists is None:
                conn.execute(f'CREATE DATABASE "{name}"')

    def create_database(self, name: str) -> str:
        """A new empty database on this server; returns its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and _ only")
        self._create_database(name)
        return self.url_for(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open sessions, checkpoint, exit)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash); ``start`` again recovers from the WAL."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
            # Orphaned backends keep the port and shared memory until they notice.
            deadline = time.monotonic() + 10
            while port_in_use(self.port) and time.monotonic() < deadline:
                time.sleep(0.05)

    def remove(self) -> None:
        if self._cluster_root is not None:
            shutil.rmtree(self._cluster_root, ignore_errors=True)
            self._cluster_root = None
            self.datadir = None

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self.remove()
