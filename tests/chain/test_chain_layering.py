"""The packages stack as protocol <- ledger <- chain <- gateway: nothing imports upward, and
the chain's run-time modules leave the development tools (forge artifacts, local servers)
alone. Each check imports in a fresh interpreter, where nothing else is loaded yet."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def loaded_after(module: str) -> set[str]:
    script = (f"import json, sys; import {module}; "
              "print(json.dumps(sorted(m for m in sys.modules if m.startswith('nanotoll'))))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, timeout=60)
    return set(json.loads(result.stdout))


def packages(modules: set[str]) -> set[str]:
    return {".".join(name.split(".")[:2]) for name in modules if name.count(".") >= 1}


@pytest.mark.parametrize("module", ["nanotoll.ledger", "nanotoll.ledger.sqlite",
                                    "nanotoll.ledger.postgres"])
def test_the_ledger_imports_nothing_else_of_nanotoll(module: str) -> None:
    assert packages(loaded_after(module)) == {"nanotoll.ledger"}


@pytest.mark.parametrize("module", ["nanotoll.chain.node", "nanotoll.chain.settle",
                                    "nanotoll.chain.eventlog", "nanotoll.chain.cache"])
def test_the_chain_at_run_time_imports_only_the_ledger_below_it(module: str) -> None:
    assert packages(loaded_after(module)) <= {"nanotoll.chain", "nanotoll.ledger",
                                              "nanotoll.logevent"}
