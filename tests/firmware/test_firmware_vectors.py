"""The shared vectors checked by the firmware under MicroPython's unix port."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.firmware_support import MPY_TESTS, VECTORS, run_micropython

SCRIPT = MPY_TESTS / "test_vectors.py"


def run_vectors(env: dict[str, str] | None = None):
    return run_micropython(SCRIPT, env=env)


@pytest.mark.parametrize("plain", [False, True], ids=["viper", "plain"])
def test_every_vector_holds_on_the_unix_port(plain: bool) -> None:
    result = run_vectors({"NANOTOLL_FIRMWARE_PLAIN": "1" if plain else "0"})
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert "checked 64 vouchers, 11 messages, 23 invalid CBOR cases on micropython" in summary
    assert ("_field_plain" in summary) == plain
    assert summary.endswith("- 0 problems")


def _flip_hex_digit(text: str, index: int) -> str:
    digit = text[index]
    return text[:index] + ("1" if digit == "0" else "0") + text[index + 1 :]


VOUCHER_FIELDS = [
    "domain_separator",
    "struct_hash",
    "digest",
    "signature",
    "wire",
    "cbor",
    "signer",
]


@pytest.mark.parametrize("field", VOUCHER_FIELDS)
def test_one_changed_byte_in_a_voucher_vector_fails(tmp_path: Path, field: str) -> None:
    data = json.loads((VECTORS / "vouchers.json").read_text())
    vector = data["vouchers"][7]
    vector[field] = _flip_hex_digit(vector[field], len(vector[field]) - 3)
    mutated = tmp_path / "vouchers.json"
    mutated.write_text(json.dumps(data))
    result = run_vectors({"NANOTOLL_VECTORS": str(mutated)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"MISMATCH {vector['name']}: " in result.stdout


def test_one_changed_byte_in_a_message_vector_fails(tmp_path: Path) -> None:
    data = json.loads((VECTORS / "messages.json").read_text())
    data["messages"][0]["cbor"] = _flip_hex_digit(data["messages"][0]["cbor"], 200)
    mutated = tmp_path / "messages.json"
    mutated.write_text(json.dumps(data))
    result = run_micropython(
        SCRIPT, str(VECTORS / "vouchers.json"), str(mutated), str(VECTORS / "cbor_invalid.json")
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "MISMATCH catalog: " in result.stdout


def test_a_wrong_rejection_reason_fails(tmp_path: Path) -> None:
    data = json.loads((VECTORS / "cbor_invalid.json").read_text())
    data["cases"][0]["reason"] = "float"
    mutated = tmp_path / "cbor_invalid.json"
    mutated.write_text(json.dumps(data))
    result = run_micropython(
        SCRIPT, str(VECTORS / "vouchers.json"), str(VECTORS / "messages.json"), str(mutated)
    )
    assert result.returncode == 1
    assert "rejected as non-shortest, expected float" in result.stdout
