"""The owner-signed policy in CPython: the shared vectors, the wire form, and policies that
contradict themselves refused before they are signed."""

from __future__ import annotations

import json

import pytest
from nanotoll.protocol import cbor
from nanotoll.protocol.eip712 import POLICY_UINTS, domain_separator
from nanotoll.protocol.policy import PolicyError, SpendingPolicy, decode_policy
from nanotoll.protocol.signing import checksum_address
from support.paths import VECTORS_DIR as VECTORS

DATA = json.loads((VECTORS / "policies.json").read_text())


@pytest.mark.parametrize("vector", DATA["policies"], ids=lambda v: v["name"])
def test_every_policy_vector(vector: dict) -> None:
    signed = decode_policy(bytes.fromhex(vector["wire"][2:]))
    policy = signed.policy
    assert policy.integers == tuple(int(vector["fields"][n]) for n, _ in POLICY_UINTS)
    assert ["0x" + a.hex() for a in policy.providers] == vector["providers"]
    assert "0x" + policy.providers_hash().hex() == vector["providers_hash"]
    assert "0x" + policy.caps_hash().hex() == vector["caps_hash"]
    separator = domain_separator(vector["chain_id"], vector["verifying_contract"])
    assert "0x" + separator.hex() == vector["domain_separator"]
    assert "0x" + policy.digest(separator).hex() == vector["digest"]
    assert checksum_address(signed.signer(separator)) == vector["owner"]
    assert signed.encode().hex() == vector["wire"][2:]


def test_invalid_policies_are_refused() -> None:
    for case in DATA["invalid"]:
        with pytest.raises(PolicyError, match="budget"):
            decode_policy(bytes.fromhex(case["hex"]))


def _base(**changes: object) -> SpendingPolicy:
    fields: dict = dict(channel_id=7, seq=1, deposit=100, budget=50, expiry=1_800_000_000)
    fields.update(changes)
    return SpendingPolicy(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("changes", "says"), [
    ({"budget": 101}, "budget 101 is above the deposit 100"),
    ({"seq": 0}, "at least 1"),
    ({"channel_id": 2**32}, "channelId must be"),
    ({"per_minute": 2**32}, "perMinute must be"),
    ({"providers": (b"\x02" * 20, b"\x01" * 20)}, "ascending"),
    ({"providers": (b"\x01" * 19,)}, "20 bytes"),
    ({"product_caps": (("weather", 1), ("nav", 1))}, "ascending"),
    ({"product_caps": (("", 1),)}, "1 to 32 bytes"),
    ({"provider_caps": ((b"\x01" * 20, -1),)}, "caps are integers"),
])
def test_contradictions_are_refused_before_signing(changes: dict, says: str) -> None:
    with pytest.raises(PolicyError, match=says):
        _base(**changes).sign(b"\x01" * 32, bytes(32))


@pytest.mark.parametrize(("mutate", "says"), [
    (lambda items: items[:-1], "array of 14"),
    (lambda items: [2, *items[1:]], "version"),
    (lambda items: [*items[:13], b"\x00" * 63], "64 bytes"),
    (lambda items: [*items[:10], [b"\x00" * 20], *items[11:]], None),
    (lambda items: [*items[:11], [[b"\x01" * 20]], *items[12:]], "pairs"),
])
def test_malformed_wire_forms(mutate, says: str | None) -> None:
    wire = bytes.fromhex(DATA["policies"][0]["wire"][2:])
    items = cbor.loads(wire)
    changed = cbor.dumps(mutate(items))
    if says is None:
        # well formed but another policy: the signature no longer recovers to the owner
        signed = decode_policy(changed)
        separator = domain_separator(DATA["policies"][0]["chain_id"],
                                     DATA["policies"][0]["verifying_contract"])
        assert checksum_address(signed.signer(separator)) != DATA["policies"][0]["owner"]
    else:
        with pytest.raises(PolicyError, match=says):
            decode_policy(changed)
    with pytest.raises(PolicyError, match="not strict CBOR"):
        decode_policy(wire + b"\x00")
