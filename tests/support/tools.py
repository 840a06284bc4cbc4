"""One way for a test to get a part it needs: ``require(name)``.

It returns where the part is. When the part is missing, the test fails under ``CI=true``
(CI installs everything with ``make setup``, so a missing part is a broken setup, never
a green run that tested less) and skips elsewhere; either way the message names the part
and how to get it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
from nanotoll.servers.process import ServiceError

SETUP = "run `make setup`"


class Missing(Exception):
    """A part that is not there; the message says which and how to get it."""


def _micropython() -> str:
    from nanotoll.servers.tools import micropython_binary

    return micropython_binary()


def _littlefs() -> str:
    binary = _micropython()
    probe = subprocess.run([binary, "-c", "import vfs; print(hasattr(vfs, 'VfsLfs2'))"],
                           capture_output=True, text=True, timeout=30, check=False)
    if probe.stdout.strip() != "True":
        raise Missing(f"littlefs: the MicroPython unix port at {binary} has no vfs.VfsLfs2; "
                      f"{SETUP} builds one with it")
    return binary


def _tls() -> str:
    """The unix port with ssl and tls (make setup builds it with mbedTLS from Debian's
    source): returns the binary."""
    binary = _micropython()
    probe = subprocess.run(
        [binary, "-c", "import ssl, tls; ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); print(1)"],
        capture_output=True, text=True, timeout=30, check=False)
    if probe.stdout.strip() != "1":
        raise Missing(f"tls: the MicroPython unix port at {binary} has no ssl/tls "
                      f"({(probe.stderr.strip().splitlines() or ['no output'])[-1]}); "
                      f"{SETUP} builds it with mbedTLS")
    return binary


def _mpy_cross() -> str:
    from nanotoll.device.image import mpy_cross

    path = mpy_cross()
    if path is None:
        raise Missing(f"mpy-cross is not installed: {SETUP} (or set NANOTOLL_MPY_CROSS)")
    return str(path)


def _qemu_system_arm() -> str:
    path = shutil.which("qemu-system-arm")
    if path is None:
        raise Missing(f"qemu-system-arm is not installed: {SETUP}")
    return path


def _qemu() -> str:
    """QEMU with MicroPython's stock mps2-an385 firmware: returns the firmware."""
    from nanotoll.device.qemu import BoardError, qemu_firmware

    _qemu_system_arm()
    try:
        return str(qemu_firmware())
    except BoardError as exc:
        raise Missing(str(exc)) from None


def _qemu_board() -> str:
    """QEMU with the nanotoll board firmware (boards/qemu_mps2): returns the firmware."""
    from nanotoll.device.repl import DeviceError
    from nanotoll.device.sim import board_firmware

    _qemu_system_arm()
    try:
        return str(board_firmware())
    except DeviceError as exc:
        raise Missing(str(exc)) from None


def _anvil() -> str:
    from nanotoll.servers.tools import anvil_binary

    return anvil_binary()


def _forge() -> str:
    from nanotoll.servers.tools import forge_binary

    return forge_binary()


def _mosquitto() -> str:
    from nanotoll.servers.tools import mosquitto_binary

    return mosquitto_binary()


def _postgresql() -> str:
    """Debian's PostgreSQL server binaries and the psycopg driver: returns the bin dir."""
    from nanotoll.servers.postgres import postgres_bindir

    if importlib.util.find_spec("psycopg") is None:
        raise Missing(f"psycopg is not installed: {SETUP}")
    return str(postgres_bindir())


def _robotframework() -> str:
    spec = importlib.util.find_spec("robot")
    if spec is None or spec.origin is None:
        raise Missing(f"robotframework is not installed: {SETUP}")
    return str(Path(spec.origin).parent)


def _strace() -> str:
    path = shutil.which("strace")
    if path is None:
        raise Missing(f"strace is not installed: {SETUP}")
    return path


def _chromium() -> str:
    """Debian's chromium and playwright-core from node_modules: returns the browser."""
    from support.paths import ROOT

    path = Path("/usr/bin/chromium")
    if not path.exists():
        raise Missing(f"chromium is not installed (Debian's package): {SETUP}")
    if shutil.which("node") is None:
        raise Missing(f"node is not installed: {SETUP}")
    if not (ROOT / "node_modules" / "playwright-core" / "package.json").exists():
        raise Missing(f"playwright-core is not in node_modules: {SETUP}")
    return str(path)


PARTS: dict[str, Callable[[], str]] = {
    "micropython": _micropython,
    "littlefs": _littlefs,
    "tls": _tls,
    "mpy-cross": _mpy_cross,
    "qemu": _qemu,
    "qemu-board": _qemu_board,
    "anvil": _anvil,
    "forge": _forge,
    "mosquitto": _mosquitto,
    "postgresql": _postgresql,
    "robotframework": _robotframework,
    "strace": _strace,
    "chromium": _chromium,
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


@cache
def _locate(name: str) -> str | Missing:
    try:
        return PARTS[name]()
    except (Missing, ServiceError) as exc:
        return Missing(str(exc))


def require(name: str) -> str:
    """Where the part ``name`` (a key of PARTS) is; fails the test under CI=true and
    skips it elsewhere when it is missing."""
    if name not in PARTS:
        raise KeyError(f"unknown part {name!r} (known: {', '.join(PARTS)})")
    found = _locate(name)
    if isinstance(found, Missing):
        message = f"missing {name}: {found}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found
