"""The gateway as a child process (``nanotoll gateway run``), for the demo, tests and bench.

:func:`gateway_toml` writes a config file; :class:`GatewayProcess` starts the gateway on
it with the provider key in its environment (never on its command line), waits until it
has subscribed, and stops it with SIGTERM (or :meth:`kill` for crash tests).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .process import ManagedProcess, ServiceError
from .tools import REPO_ROOT

DEFAULT_PRODUCTS: tuple[tuple[str, int, str], ...] = (
    ("weather", 1500, "nowcast for a position, altitude and time"),
    ("nav", 4000, "airspace, geofence and waypoint updates"),
    ("route", 25000, "time-boxed corridor access grant"),
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def gateway_toml(*, mqtt_port: int, rpc_url: str, escrow: str, chain_id: int,
                 ledger_path: Path | None = None, ledger_url: str | None = None,
                 mqtt_host: str = "127.0.0.1", client_id: str = "",
                 catalog_seq: int = 1,
                 products: Sequence[tuple[str, int, str]] = DEFAULT_PRODUCTS,
                 key_env: str = "NANOTOLL_PROVIDER_KEY",
                 extra: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The text of a gateway config; ``extra`` adds keys to tables (e.g. settlement).
    The ledger is a SQLite file at ``ledger_path`` or any ``ledger_url``."""
    if (ledger_path is None) == (ledger_url is None):
        raise ValueError("give ledger_path or ledger_url")
    url = ledger_url or f"sqlite:///{Path(ledger_path or '').resolve()}"
    tables: dict[str, dict[str, Any]] = {
        "mqtt": {"host": mqtt_host, "port": mqtt_port, "client_id": client_id},
        "provider": {"key_env": key_env},
        "chain": {"rpc_url": rpc_url, "escrow": escrow, "chain_id": chain_id},
        "ledger": {"url": url},
        "catalog": {"seq": catalog_seq},
    }
    for name, table in (extra or {}).items():
        tables.setdefault(name, {}).update(table)
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
        lines.append("")
    for name, price, description in products:
        lines += ["[[catalog.products]]", f"name = {_toml_value(name)}", f"price = {price}",
                  f"description = {_toml_value(description)}", ""]
    return "\n".join(lines)


class GatewayProcess(ManagedProcess):
    """``python -m nanotoll.cli gateway run --config PATH`` with the key in its environment."""

    name = "gateway"

    def __init__(self, config_path: Path, provider_key: bytes, workdir: Path | None = None,
                 key_env: str = "NANOTOLL_PROVIDER_KEY", timeout: float = 30.0,
                 python: str = sys.executable) -> None:
        super().__init__(workdir)
        self.python = python  # another environment's interpreter (one with plugins)
        self.config_path = Path(config_path)
        self._key_env = key_env
        self._key = provider_key
        self.timeout = timeout
        self._starts = 0

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env[self._key_env] = self._key.hex()
        package_root = str(REPO_ROOT / "gateway")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH"))
                                            if p)
        return env

    def start(self) -> None:
        self.spawn([self.python, "-m", "nanotoll.cli", "gateway", "run", "--config",
                    str(self.config_path)], env=self._environment())
        self._starts += 1
        self._wait_started(self._starts)

    def _wait_started(self, count: int) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise ServiceError(f"gateway exited with code {self.process.returncode}\n{tail}")
            if self.log_path.exists() and \
                    self.log_path.read_text(errors="replace").count('"gateway_ready"') >= count:
                return
            time.sleep(0.05)
        raise ServiceError(f"gateway did not start within {self.timeout:.0f} s; see "
                           f"{self.log_path}")

    def kill(self) -> None:
        """SIGKILL: what a power cut looks like to the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return int(self.process.wait(timeout=timeout))
