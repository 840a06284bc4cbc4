"""Changing products and prices without a restart.

In the gateway, SIGHUP asks :func:`reload_config`: the config file is read again and its
``[catalog]`` (products, prices, seq, validity) replaces the running one through
:meth:`GatewayService.reload`; other tables need a restart. From outside,
``nanotoll gateway reload --config FILE`` checks the file first (it parses and every
product loads and starts), then sends SIGHUP to each ``nanotoll gateway run`` process
started on that same file, found through ``/proc``; ``--pid`` names one instead.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from ..logevent import event
from .config import ConfigError, GatewayConfig, load_config
from .serve import ProductLoadError, ProviderContext, close_products, load_configured

if TYPE_CHECKING:
    from .service import GatewayService

# Any valid key: a check only builds and starts the products, it signs nothing.
CHECK_KEY = (1).to_bytes(32, "big")


def reload_config(service: GatewayService, path: str) -> bool:
    """Re-read ``path`` and sell its products and prices; a config that does not parse or
    whose products fail to load is refused (logged) and the running offer kept."""
    log = logging.getLogger("nanotoll.gateway")
    try:
        service.reload(load_config(path))
    except (ConfigError, ProductLoadError) as exc:
        event(log, "reload_refused", logging.ERROR, config=path, error=str(exc))
        return False
    return True


def check_config(path: str | Path) -> GatewayConfig:
    """The config at ``path`` if it parses and all its products load and start
    (ConfigError or ProductLoadError otherwise)."""
    config = load_config(path)
    products = load_configured(config.catalog.products, ProviderContext(CHECK_KEY, bytes(32)))
    close_products(products.values())
    return config


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _config_argument(argv: list[str]) -> str | None:
    """The --config of a ``gateway run`` command line (None for any other command)."""
    try:
        at = argv.index("gateway")
    except ValueError:
        return None
    if argv[at + 1:at + 2] != ["run"]:
        return None
    rest = argv[at + 2:]
    for index, part in enumerate(rest):
        if part == "--config" and index + 1 < len(rest):
            return rest[index + 1]
        if part.startswith("--config="):
            return part.split("=", 1)[1]
    return "gateway.toml"


def find_gateways(path: str | Path) -> list[int]:
    """Pids of the ``nanotoll gateway run`` processes started on the file at ``path``."""
    target = Path(path).resolve()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        config = _config_argument(_argv(int(entry.name)))
        if config is None:
            continue
        try:
            where = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if (where / config).resolve() == target:
            found.append(int(entry.name))
    return sorted(found)


def signal_reload(pids: list[int]) -> list[int]:
    """SIGHUP each pid; returns those that were signalled (a process may have ended)."""
    signalled = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            continue
        signalled.append(pid)
    return signalled
