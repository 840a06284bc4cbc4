"""The ABIs shipped in nanotoll/abi/ must be exactly what forge builds from contracts/.

After changing a contract, run ``python -m nanotoll.chain`` to rewrite them.
"""

from __future__ import annotations

import pytest
from nanotoll.chain.abi import shipped_abi, shipped_abi_path
from nanotoll.chain.artifacts import SHIPPED, load_artifact, render_abi


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_abi_matches_forge(name: str) -> None:
    built = load_artifact(name).abi  # runs forge build first
    assert shipped_abi(name) == built, (
        f"nanotoll/abi/{name}.json differs from forge's output: run 'python -m nanotoll.chain'")
    assert shipped_abi_path(name).read_text() == render_abi(built)
