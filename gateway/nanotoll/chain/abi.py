"""The contract ABIs that ship inside the package (``nanotoll/abi/*.json``): what a running
gateway reads, with no forge and no repository around it. ``artifacts`` rewrites them from
forge's output after a contract change.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any


def shipped_abi(name: str) -> list[dict[str, Any]]:
    """The ABI of ``name`` that ships in the package."""
    text = resources.files("nanotoll").joinpath(f"abi/{name}.json").read_text()
    return list(json.loads(text))


def shipped_abi_path(name: str) -> Path:
    return Path(__file__).resolve().parent.parent / "abi" / f"{name}.json"
