"""Where the project's tools are: the repository root and each binary ``make setup``
installs (an environment variable first, then the project's install, then PATH)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .process import ServiceError

REPO_ROOT = Path(__file__).resolve().parents[3]


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


def mosquitto_binary() -> str:
    return find_tool("mosquitto", "NANOTOLL_MOSQUITTO", Path("/usr/sbin/mosquitto"))


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
