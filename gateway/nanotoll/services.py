"""Local servers for tests, the demo and the fleet: each on a free loopback port.

Every server is a context manager that starts a real process, waits until it answers,
and stops it (terminate, then kill) on exit, so an error or Ctrl-C never leaves one behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]


class ServiceError(RuntimeError):
    """A server that could not start; the message says how to fix it."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so an ExitStack of servers stops every child process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None, timeout: float,
                  what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise ServiceError(f"{what} exited with code {process.returncode}\n{tail}")
        if port_in_use(port):
            return
        time.sleep(0.05)
    raise ServiceError(f"{what} did not open port {port} within {timeout:.0f} s")


def find_tool(name: str, env_var: str, *candidates: Path) -> str:
    """Path of a tool: the env var, then the project's install, then PATH."""
    configured = os.environ.get(env_var)
    if configured:
        if not Path(configured).exists():
            raise ServiceError(f"{env_var}={configured} does not exist: point it at {name}, "
                               "or unset it to use the one 'make setup' installs")
        return configured
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise ServiceError(f"{name} not found: run 'make setup' (or set {env_var})")


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=grace)


class ManagedProcess:
    """A child process with a log file, stopped on exit of the ``with`` block."""

    name = "process"

    def __init__(self, workdir: Path | None = None) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"nanotoll-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, env=env, start_new_session=True,
            )

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self) -> None:
        raise NotImplementedError


class Mosquitto(ManagedProcess):
    """mosquitto 2 on loopback, anonymous, with persistence so restarts keep sessions."""

    name = "mosquitto"

    def __init__(self, port: int | None = None, workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self.host = LOOPBACK
        self.port = port or free_port()
        self.binary = find_tool("mosquitto", "NANOTOLL_MOSQUITTO", Path("/usr/sbin/mosquitto"))

    def start(self) -> None:
        if port_in_use(self.port):
            raise ServiceError(f"port {self.port} is taken: stop what listens there or pick "
                               "another port")
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} {LOOPBACK}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            # Without it, Nagle's algorithm holds small QoS 1 packets ~40 ms on loopback.
            "set_tcp_nodelay true\n"
            "max_inflight_messages 200\n"
            "max_queued_messages 100000\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\n"
        )
        self.spawn([self.binary, "-c", str(config)])
        wait_for_port(self.port, self.process, 10, "mosquitto", self.log_path)

    def restart(self) -> None:
        """Stop and start on the same port and store: what a broker crash looks like."""
        self.stop()
        self.start()


def micropython_binary() -> str:
    """The MicroPython unix port that make setup built from Debian's source package."""
    return find_tool("micropython", "NANOTOLL_MICROPYTHON",
                     REPO_ROOT / ".toolchain" / "bin" / "micropython")


def _foundry_tool(name: str) -> Path:
    return REPO_ROOT / "node_modules" / "@foundry-rs" / f"{name}-linux-amd64" / "bin" / name


def forge_binary() -> str:
    return find_tool("forge", "NANOTOLL_FORGE", _foundry_tool("forge"))


def anvil_binary() -> str:
    return find_tool("anvil", "NANOTOLL_ANVIL", _foundry_tool("anvil"))
