"""One source of truth: the same voucher vectors pass in all three implementations, and
a copy with one byte changed fails in all three (CPython gateway code, the firmware under
MicroPython, the Solidity contract under forge)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from nanotoll.servers.tools import REPO_ROOT, forge_binary
from support.firmware_support import MPY_TESTS, VECTORS, run_micropython
from support.vector_check import check_vouchers

# (field, index of the hex digit to change): a byte of each kind of data a vector holds.
MUTATIONS = [
    ("signature", 40),
    ("digest", 9),
    ("wire", 12),  # inside the channel id
    ("cumulative", 0),
    ("signer", 5),
]
VECTOR_INDEX = 1  # "largest amount": cumulative 2^64-1


def _mutate(field: str, index: int, directory: Path) -> Path:
    data = json.loads((VECTORS / "vouchers.json").read_text())
    vector = data["vouchers"][VECTOR_INDEX]
    text = vector[field]
    offset = index + (2 if text.startswith("0x") else 0)
    digit = text[offset]
    if field == "cumulative":
        replacement = "1" if digit != "1" else "2"
    elif field == "signer":
        replacement = "0" if digit.lower() != "0" else "1"
    else:
        replacement = "0" if digit != "0" else "1"
    vector[field] = text[:offset] + replacement + text[offset + 1 :]
    path = directory / "vouchers.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def _forge_vectors(path: Path | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path is not None:
        env["NANOTOLL_VECTORS"] = str(path)
    return subprocess.run(
        [forge_binary(), "test", "--match-contract", "VectorsTest", "--offline"],
        cwd=REPO_ROOT / "contracts", capture_output=True, text=True, env=env, timeout=600,
        check=False,
    )


def _firmware_vectors(path: Path | None) -> subprocess.CompletedProcess[str]:
    env = {"NANOTOLL_VECTORS": str(path)} if path is not None else {}
    return run_micropython(MPY_TESTS / "test_vectors.py", env=env)


def test_real_vectors_pass_everywhere() -> None:
    assert check_vouchers() == []
    firmware = _firmware_vectors(None)
    assert firmware.returncode == 0, firmware.stdout[-2000:] + firmware.stderr
    forge = _forge_vectors(None)
    assert forge.returncode == 0, forge.stdout[-3000:] + forge.stderr[-2000:]


@pytest.mark.parametrize(("field", "index"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_one_changed_byte_fails_everywhere(tmp_path: Path, field: str, index: int) -> None:
    mutated = _mutate(field, index, tmp_path)
    assert check_vouchers(mutated), "CPython accepted a changed vector"
    firmware = _firmware_vectors(mutated)
    assert firmware.returncode != 0, "the firmware accepted a changed vector"
    forge = _forge_vectors(mutated)
    assert forge.returncode != 0, "the contract accepted a changed vector"
    assert "VectorsTest" in forge.stdout + forge.stderr
