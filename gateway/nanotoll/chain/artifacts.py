"""forge artifacts of ``contracts/``, for deploying in development and tests.

The ABIs shipped in the package (:mod:`.abi`) are copies of forge's output;
``tests/contracts/test_abi_drift.py`` fails when they differ, and
``python -m nanotoll.chain`` rewrites them after a contract change.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..servers.process import ServiceError
from ..servers.tools import REPO_ROOT, forge_binary
from .abi import shipped_abi_path

CONTRACTS_DIR = REPO_ROOT / "contracts"
OUT_DIR = CONTRACTS_DIR / "out"

# Contracts whose ABI ships in nanotoll/abi/: the escrow, the test stablecoin the demo uses, and
# the ERC-8004 identity and reputation registries (contracts/src/erc8004/).
SHIPPED = ("NanotollEscrow", "TestStablecoin", "IdentityRegistry", "ReputationRegistry")

_built = False


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes


def build_contracts(force: bool = False) -> None:
    """Run ``forge build`` in contracts/ once per process (forge itself skips unchanged files)."""
    global _built
    if _built and not force:
        return
    forge = forge_binary()
    result = subprocess.run(
        [forge, "build", "--quiet"], cwd=CONTRACTS_DIR, capture_output=True, text=True,
        check=False, timeout=600,
    )
    if result.returncode != 0:
        raise ServiceError(
            f"forge build failed in {CONTRACTS_DIR} (exit {result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-3000:]}"
        )
    _built = True


def artifact_path(name: str, source: str | None = None) -> Path:
    return OUT_DIR / f"{source or name}.sol" / f"{name}.json"


def load_artifact(name: str, source: str | None = None, build: bool = True) -> Artifact:
    """ABI and creation bytecode of contract ``name`` (in ``source``.sol, default ``name``.sol)."""
    if build:
        build_contracts()
    path = artifact_path(name, source)
    if not path.exists():
        raise ServiceError(f"no forge artifact at {path}: run 'forge build' in contracts/")
    document = json.loads(path.read_text())
    code = document["bytecode"]["object"]
    return Artifact(name=name, abi=list(document["abi"]),
                    bytecode=bytes.fromhex(code.removeprefix("0x")))


def render_abi(abi: list[dict[str, Any]]) -> str:
    """The shipped file's exact text for ``abi`` (stable, diff-friendly)."""
    return json.dumps(abi, indent=1, sort_keys=True) + "\n"


def write_shipped_abis() -> list[Path]:
    """Rebuild with forge and rewrite nanotoll/abi/*.json from the artifacts."""
    written = []
    for name in SHIPPED:
        path = shipped_abi_path(name)
        path.write_text(render_abi(load_artifact(name).abi))
        written.append(path)
    return written

