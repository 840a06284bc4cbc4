"""Helpers for the device-agent tests: the firmware under the real MicroPython unix port.

- ``micropython()``: the binary (env ``NANOTOLL_MICROPYTHON``, else
  ``.toolchain/bin/micropython``), through ``support.tools.require``.
- ``FakeGateway``: nanotoll.bench.provider.ReferenceProvider, a provider on paho-mqtt and
  the CPython protocol reference with an in-memory ledger and fault-injection knobs.
- ``Device``: writes a board config, policy and key to a folder and runs
  ``boards/unix/main.py`` as a subprocess, parsing its JSON lines.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from nanotoll.bench.provider import (  # noqa: F401 - re-exported for the tests
    CHAIN_ID,
    DEVICE_KEY,
    ESCROW,
    PRODUCTS,
    PROVIDER_KEY,
    SEPARATOR,
    ChannelBook,
    addr_hex,
)
from nanotoll.bench.provider import ReferenceProvider as FakeGateway  # noqa: F401

from support import paths as _paths
from support.tools import require

ROOT = _paths.ROOT


def micropython() -> str:
    return require("micropython")


def mp_env() -> dict[str, str]:
    env = dict(os.environ)
    env["MICROPYPATH"] = f".frozen:{ROOT / 'firmware'}:{ROOT / 'boards' / 'unix'}"
    return env


def run_mp(script: str, cwd: Path, timeout: float = 60, args: tuple[str, ...] = ()) -> str:
    """Run MicroPython code with firmware/ and boards/unix on the path; return stdout."""
    path = cwd / "mp_script.py"
    path.write_text(script)
    done = subprocess.run(
        [micropython(), str(path), *args], cwd=cwd, env=mp_env(), capture_output=True,
        text=True, timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"micropython failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


POLICY = {"deposit": 10_000_000, "budget": 1_000_000, "max_unit_price": 30_000}


class Device:
    """One device folder (config, key, policy, state) driven through boards/unix/main.py."""

    def __init__(self, folder: Path, broker_port: int, policy: dict[str, Any] | None = None,
                 key: bytes = DEVICE_KEY, channel: int = 1, **extra: Any) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "device.key").write_text(key.hex())
        (folder / "policy.json").write_text(json.dumps(policy or POLICY))
        config = {
            "key_file": "device.key",
            "chain_id": CHAIN_ID,
            "escrow": "0x" + ESCROW.hex(),
            "channel": channel,
            "provider": "0x" + addr_hex(PROVIDER_KEY),
            "broker": {"host": "127.0.0.1", "port": broker_port},
            "policy": "policy.json",
            "state_dir": "state",
            "keepalive": 10,
            "timeout_ms": 8000,
            "resend_ms": 1000,
        }
        config.update(extra)
        self.config = folder / "config.json"
        self.config.write_text(json.dumps(config))

    def argv(self, *args: str) -> list[str]:
        return [micropython(), str(ROOT / "boards" / "unix" / "main.py"), "--config",
                str(self.config), *args]

    def run(self, *args: str, timeout: float = 120) -> tuple[int, list[dict[str, Any]], str]:
        done = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout)
        lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
        return done.returncode, lines, done.stderr

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def buy(self, count: int, product: str = "weather", *extra: str,
            timeout: float = 120) -> tuple[int, list[dict[str, Any]], str]:
        return self.run("--buy", product, "--count", str(count), *extra, timeout=timeout)

    @property
    def state_file(self) -> Path:
        return self.folder / "state" / "state.rec"
