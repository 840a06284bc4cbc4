"""The shared vectors under CPython: vouchers, messages and invalid CBOR."""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_utils import keccak
from nanotoll.protocol import cbor
from nanotoll.protocol.errors import ProtocolError
from nanotoll.protocol.messages import (
    decode_catalog,
    decode_request,
    decode_response,
    detail_hash,
)
from nanotoll.protocol.policy import PolicyError, decode_policy
from support.vector_check import VECTORS_DIR, check_voucher, load

VOUCHERS = load(VECTORS_DIR / "vouchers.json")["vouchers"]
MESSAGES = load(VECTORS_DIR / "messages.json")
INVALID = load(VECTORS_DIR / "cbor_invalid.json")["cases"]
INVALID_MESSAGES = load(VECTORS_DIR / "cbor_invalid.json")["messages"]


def test_enough_vectors_with_the_edges() -> None:
    names = {v["name"] for v in VOUCHERS}
    amounts = {int(v["cumulative"]) for v in VOUCHERS}
    assert len(VOUCHERS) >= 50
    assert {1, 2**64 - 1} <= amounts
    assert any(v["expiry"] - v["now"] <= 3600 and v["redeemable"] for v in VOUCHERS)
    assert "near expiry: inside the gateway margin" in names


@pytest.mark.parametrize("vector", VOUCHERS, ids=lambda v: v["name"])
def test_voucher_vector(vector: dict[str, Any]) -> None:
    assert check_voucher(vector) == []
    assert len(bytes.fromhex(vector["cbor"][2:])) == 78


def from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$bytes"}:
        return bytes.fromhex(value["$bytes"])
    if isinstance(value, dict):
        return {key: from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_json(item) for item in value]
    return value


@pytest.mark.parametrize("message", MESSAGES["messages"], ids=lambda m: m["name"])
def test_message_vector(message: dict[str, Any]) -> None:
    raw = bytes.fromhex(message["cbor"])
    value = from_json(message["value"])
    assert cbor.loads(raw) == value
    assert cbor.dumps(value) == raw
    separator = bytes.fromhex(MESSAGES["domain_separator"][2:])
    if message["kind"] == "catalog":
        catalog = decode_catalog(raw)
        catalog.verify(separator)
        assert "0x" + catalog.digest(separator).hex() == message["digest"]
    elif message["kind"] == "request":
        request = decode_request(raw)
        assert "0x" + keccak(raw).hex() == message["request_hash"]
        assert request.encode() == raw
        assert request.voucher.signer(separator) == message["signer"]
    else:
        response = decode_response(raw)
        assert response.encode() == raw
        if response.receipt is not None:
            assert "0x" + response.receipt.digest(separator).hex() == message["digest"]
            assert response.receipt.signer(separator) == message["signer"]
            assert keccak(response.data) == response.receipt.data_hash
        else:
            assert "0x" + response.error_digest(separator).hex() == message["digest"]
            provider = bytes.fromhex(message["signer"][2:])
            response.verify_error(separator, provider)
            assert "0x" + detail_hash(response.detail).hex() == message["detail_hash"]


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["name"])
def test_invalid_cbor_is_refused_with_its_reason(case: dict[str, str]) -> None:
    with pytest.raises(cbor.CBORError) as caught:
        cbor.loads(bytes.fromhex(case["hex"]))
    assert caught.value.reason == case["reason"]


@pytest.mark.parametrize("case", [c for c in INVALID_MESSAGES if c["kind"] != "policy"],
                         ids=lambda c: c["name"])
def test_invalid_message_is_refused_with_its_code(case: dict[str, str]) -> None:
    decode = {"request": decode_request, "response": decode_response,
              "catalog": decode_catalog}[case["kind"]]
    with pytest.raises(ProtocolError) as caught:
        decode(bytes.fromhex(case["hex"]))
    assert caught.value.code.name == case["code"]


@pytest.mark.parametrize("case", [c for c in INVALID_MESSAGES if c["kind"] == "policy"],
                         ids=lambda c: c["name"])
def test_invalid_policy_is_refused(case: dict[str, str]) -> None:
    assert case["code"] == "MALFORMED"  # a policy has one refusal for its bytes: malformed
    with pytest.raises(PolicyError):
        decode_policy(bytes.fromhex(case["hex"]))


def test_generator_output_is_committed() -> None:
    """tools/gen_vectors.py --check: the committed vectors are what the generator makes."""
    import subprocess
    import sys

    root = VECTORS_DIR.parent.parent
    result = subprocess.run([sys.executable, str(root / "tools" / "gen_vectors.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_vectors_are_valid_json_objects() -> None:
    for path in VECTORS_DIR.glob("*.json"):
        assert isinstance(json.loads(path.read_text()), dict), path
