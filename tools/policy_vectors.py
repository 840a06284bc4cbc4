"""tests/vectors/policies.json: owner-signed spending policies (docs/protocol.md 3.5).

Called by tools/gen_vectors.py. eth_account's typed-data encoder is the independent
reference for each digest and signature; nanotoll.protocol.policy must agree with it.

``policies`` are signed policies with every intermediate value; ``verdicts`` replay some
of them at a device with a given channel, last applied seq and signed cumulative, with
the outcome every implementation must reach ("applied" or the reason it is refused).
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_utils import keccak, to_checksum_address
from nanotoll.protocol import eip712
from nanotoll.protocol.policy import SignedPolicy, SpendingPolicy, decode_policy
from nanotoll.protocol.signing import address_of, sign_compact

CHAIN_ID = 31337
SEED = b"nanotoll/vectors/policy/v1"


def _seeded(label: str, index: int) -> bytes:
    return keccak(SEED + label.encode() + index.to_bytes(4, "big"))


OWNER_KEY = _seeded("owner", 0)
OTHER_OWNER_KEY = _seeded("owner", 1)
CONTRACT = to_checksum_address(_seeded("contract", 0)[-20:])
OTHER_CONTRACT = to_checksum_address(_seeded("contract", 1)[-20:])
PROVIDERS = tuple(sorted(_seeded("provider", i)[-20:] for i in range(3)))


def _reference(key: bytes, chain_id: int, contract: str, policy: SpendingPolicy
               ) -> tuple[bytes, bytes]:
    uint = {"channelId": "uint32", "perMinute": "uint32"}
    names = [name for name, _ in eip712.POLICY_UINTS]
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Policy": [{"name": n, "type": uint.get(n, "uint64")} for n in names] + [
                {"name": "providersHash", "type": "bytes32"},
                {"name": "capsHash", "type": "bytes32"},
            ],
        },
        "primaryType": "Policy",
        "domain": {"name": eip712.DOMAIN_NAME, "version": eip712.DOMAIN_VERSION,
                   "chainId": chain_id, "verifyingContract": contract},
        "message": {**dict(zip(names, policy.integers, strict=True)),
                    "providersHash": policy.providers_hash(), "capsHash": policy.caps_hash()},
    }
    signable = encode_typed_data(full_message=typed)
    signed = Account.sign_message(signable, private_key=key)
    parity = signed.v - 27
    compact = signed.r.to_bytes(32, "big") + ((parity << 255) | signed.s).to_bytes(32, "big")
    return _hash_eip191_message(signable), compact


def _cases() -> list[tuple[str, bytes, int, str, SpendingPolicy]]:
    base = SpendingPolicy(channel_id=7, seq=1, deposit=5_000_000, budget=2_000_000,
                          expiry=1_767_312_000)
    full = SpendingPolicy(
        channel_id=7, seq=2, deposit=9_000_000, budget=9_000_000, expiry=1_769_904_000,
        expiry_margin=7200, max_unit_price=5000, per_hour=100_000, per_minute=30,
        providers=PROVIDERS, provider_caps=((PROVIDERS[0], 3_000_000),),
        product_caps=(("nav", 500_000), ("weather", 1_000_000)))
    extremes = SpendingPolicy(
        channel_id=eip712.MAX_CHANNEL_ID, seq=eip712.MAX_AMOUNT, deposit=eip712.MAX_AMOUNT,
        budget=eip712.MAX_AMOUNT, expiry=eip712.MAX_AMOUNT, expiry_margin=0,
        max_unit_price=eip712.MAX_AMOUNT, per_hour=eip712.MAX_AMOUNT,
        per_minute=eip712.MAX_CHANNEL_ID)
    return [
        ("no lists, defaults", OWNER_KEY, CHAIN_ID, CONTRACT, base),
        ("every limit and list", OWNER_KEY, CHAIN_ID, CONTRACT, full),
        ("largest values", OWNER_KEY, CHAIN_ID, CONTRACT, extremes),
        ("budget 0 (spending frozen)", OWNER_KEY, CHAIN_ID, CONTRACT,
         SpendingPolicy(7, 3, 9_000_000, 0, 1_769_904_000)),
        ("another owner", OTHER_OWNER_KEY, CHAIN_ID, CONTRACT,
         SpendingPolicy(7, 5, 9_000_000, 9_000_000, 1_769_904_000)),
        ("another chain", OWNER_KEY, 8453, CONTRACT,
         SpendingPolicy(7, 5, 9_000_000, 9_000_000, 1_769_904_000)),
        ("another contract", OWNER_KEY, CHAIN_ID, OTHER_CONTRACT,
         SpendingPolicy(7, 5, 9_000_000, 9_000_000, 1_769_904_000)),
        ("another channel", OWNER_KEY, CHAIN_ID, CONTRACT,
         SpendingPolicy(8, 5, 9_000_000, 9_000_000, 1_769_904_000)),
    ]


def _hx(raw: bytes) -> str:
    return "0x" + raw.hex()


def build_policies() -> dict[str, Any]:
    policies = []
    for name, key, chain_id, contract, policy in _cases():
        digest, signature = _reference(key, chain_id, contract, policy)
        separator = eip712.domain_separator(chain_id, contract)
        if policy.digest(separator) != digest or sign_compact(key, digest) != signature:
            raise SystemExit(f"reference and nanotoll.protocol disagree on policy {name!r}")
        wire = SignedPolicy(policy, signature).encode()
        if decode_policy(wire) != SignedPolicy(policy, signature):
            raise SystemExit(f"policy {name!r} does not decode to itself")
        policies.append({
            "name": name,
            "owner": address_of(key),
            "chain_id": chain_id,
            "verifying_contract": contract,
            "fields": {n: str(v) for (n, _), v in zip(eip712.POLICY_UINTS, policy.integers,
                                                       strict=True)},
            "providers": [_hx(a) for a in policy.providers],
            "provider_caps": [[_hx(a), str(c)] for a, c in policy.provider_caps],
            "product_caps": [[n, str(c)] for n, c in policy.product_caps],
            "providers_hash": _hx(policy.providers_hash()),
            "caps_hash": _hx(policy.caps_hash()),
            "domain_separator": _hx(separator),
            "digest": _hx(digest),
            "signature": _hx(signature),
            "wire": _hx(wire),
        })
    owner = address_of(OWNER_KEY)

    def verdict(policy: str, channel: int, seq: int, cumulative: int, outcome: str
                ) -> dict[str, Any]:
        return {"policy": policy, "owner": owner, "chain_id": CHAIN_ID,
                "verifying_contract": CONTRACT, "device_channel": channel,
                "applied_seq": seq, "cumulative": cumulative, "outcome": outcome}

    verdicts = [
        verdict("no lists, defaults", 7, 0, 0, "applied"),
        verdict("every limit and list", 7, 1, 4_000_000, "applied"),
        verdict("no lists, defaults", 7, 1, 0, "seq"),  # a replay of the applied one
        verdict("no lists, defaults", 7, 2, 0, "seq"),  # older than the applied one
        verdict("every limit and list", 7, 1, 9_000_001, "deposit"),
        verdict("another owner", 7, 2, 0, "signature"),
        verdict("another chain", 7, 2, 0, "signature"),
        verdict("another contract", 7, 2, 0, "signature"),
        verdict("another channel", 7, 2, 0, "channel"),
        verdict("another channel", 8, 2, 0, "applied"),
        verdict("budget 0 (spending frozen)", 7, 2, 10, "applied"),
    ]
    invalid = [
        {"name": "budget above deposit", "hex": _tamper(policies[0]["wire"], 4, 6_000_000)},
    ]
    return {"version": 1, "generator": "tools/gen_vectors.py (tools/policy_vectors.py)",
            "type": eip712.POLICY_TYPE, "policies": policies, "verdicts": verdicts,
            "invalid": invalid}


def _tamper(wire_hex: str, index: int, value: int) -> str:
    """The wire bytes with array item ``index`` replaced: refused before any signature."""
    from nanotoll.protocol import cbor

    items = cbor.loads(bytes.fromhex(wire_hex[2:]))
    items[index] = value
    return cbor.dumps(items).hex()
