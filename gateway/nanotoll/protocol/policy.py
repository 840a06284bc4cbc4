"""The owner-signed spending policy (docs/protocol.md section 3.5): its fields, the two
hashes that fold its lists into the EIP-712 ``Policy``, its CBOR wire form, signing and
checking.

The owner's tool makes and signs it; the device (``firmware/owner_policy.py``) applies it
only when it verifies against the owner's address. A policy is bound to one escrow and
chain (the domain) and one channel; ``seq`` only grows, so an older policy never comes
back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import cbor
from .eip712 import MAX_AMOUNT, MAX_CHANNEL_ID, POLICY_UINTS, policy_digest
from .keccak import keccak256
from .signing import recover_signer, sign_compact

VERSION = 1
MAX_POLICY_BYTES = 1024
MAX_LIST = 16  # providers, provider caps, product caps: each at most this many entries
FIELDS = 14  # [1, nine integers, providers, provider caps, product caps, signature]


class PolicyError(ValueError):
    """Bytes that are not a well-formed policy, or limits that contradict each other."""


@dataclass(frozen=True, slots=True)
class SpendingPolicy:
    """What the owner allows one device's channel to spend. Zero for ``max_unit_price``,
    ``per_hour`` or ``per_minute`` means no such limit; no ``providers`` means any
    provider the device was provisioned with."""

    channel_id: int
    seq: int
    deposit: int
    budget: int
    expiry: int
    expiry_margin: int = 3600
    max_unit_price: int = 0
    per_hour: int = 0
    per_minute: int = 0
    providers: tuple[bytes, ...] = ()  # 20-byte addresses, ascending
    provider_caps: tuple[tuple[bytes, int], ...] = ()  # (address, units), ascending
    product_caps: tuple[tuple[str, int], ...] = ()  # (product name, units), ascending

    @property
    def integers(self) -> tuple[int, ...]:
        return (self.channel_id, self.seq, self.deposit, self.budget, self.expiry,
                self.expiry_margin, self.max_unit_price, self.per_hour, self.per_minute)

    def check(self) -> None:
        """Refuse limits that contradict each other or lists that are not canonical."""
        for (name, maximum), value in zip(POLICY_UINTS, self.integers, strict=True):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
                raise PolicyError(f"{name} must be an integer in 0..{maximum}")
        if self.channel_id == 0 or self.seq == 0 or self.deposit == 0 or self.expiry == 0:
            raise PolicyError("channelId, seq, deposit and expiry must be at least 1")
        if self.budget > self.deposit:
            raise PolicyError(f"budget {self.budget} is above the deposit {self.deposit}")
        _ascending("providers", [bytes(a) for a in self.providers], 20)
        _ascending("provider caps", [bytes(a) for a, _ in self.provider_caps], 20)
        names = [name for name, _ in self.product_caps]
        if any(not isinstance(n, str) or not 1 <= len(n.encode()) <= 32 for n in names):
            raise PolicyError("product names have 1 to 32 bytes")
        _ascending("product caps", [n.encode() for n in names], None)
        for _, cap in (*self.provider_caps, *self.product_caps):
            if not isinstance(cap, int) or isinstance(cap, bool) or not 0 <= cap <= MAX_AMOUNT:
                raise PolicyError("caps are integers in 0..2^64-1")

    def providers_hash(self) -> bytes:
        return providers_hash(self.providers)

    def caps_hash(self) -> bytes:
        return caps_hash(self.provider_caps, self.product_caps)

    def digest(self, separator: bytes) -> bytes:
        self.check()
        return policy_digest(separator, self.integers, self.providers_hash(), self.caps_hash())

    def sign(self, owner_key: bytes, separator: bytes) -> SignedPolicy:
        return SignedPolicy(self, sign_compact(owner_key, self.digest(separator)))


def _ascending(what: str, keys: list[bytes], size: int | None) -> None:
    if len(keys) > MAX_LIST:
        raise PolicyError(f"{what}: at most {MAX_LIST} entries")
    if size is not None and any(len(k) != size for k in keys):
        raise PolicyError(f"{what}: addresses have {size} bytes")
    if any(a >= b for a, b in zip(keys, keys[1:], strict=False)):
        raise PolicyError(f"{what}: entries must be unique and in ascending order")


def providers_hash(providers: Sequence[bytes]) -> bytes:
    """keccak256 of the 20-byte addresses back to back; 32 zero bytes for no list."""
    return keccak256(b"".join(providers)) if providers else bytes(32)


def caps_hash(provider_caps: Sequence[tuple[bytes, int]],
              product_caps: Sequence[tuple[str, int]]) -> bytes:
    """keccak256 of: the number of provider caps (1 byte), each as address ‖ uint64, then
    each product cap as name length (1 byte) ‖ name ‖ uint64; 32 zero bytes for none."""
    if not provider_caps and not product_caps:
        return bytes(32)
    out = bytearray([len(provider_caps)])
    for address, cap in provider_caps:
        out += bytes(address) + cap.to_bytes(8, "big")
    for name, cap in product_caps:
        raw = name.encode()
        out += bytes([len(raw)]) + raw + cap.to_bytes(8, "big")
    return keccak256(bytes(out))


@dataclass(frozen=True, slots=True)
class SignedPolicy:
    policy: SpendingPolicy
    signature: bytes  # 64-byte compact, low-s, by the device's owner

    def encode(self) -> bytes:
        p = self.policy
        return cbor.dumps([
            VERSION, *p.integers, list(p.providers),
            [[address, cap] for address, cap in p.provider_caps],
            [[name, cap] for name, cap in p.product_caps], self.signature])

    def signer(self, separator: bytes) -> bytes:
        """The 20-byte address the signature recovers to."""
        return recover_signer(self.policy.digest(separator), self.signature)


def _uint(value: Any, what: str, maximum: int = MAX_AMOUNT) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise PolicyError(f"policy {what}: an integer in 0..{maximum}")
    return value


def _pairs(value: Any, what: str) -> list[list[Any]]:
    if not isinstance(value, list) or any(not isinstance(v, list) or len(v) != 2
                                          for v in value):
        raise PolicyError(f"policy {what}: an array of [key, cap] pairs")
    return value


def decode_policy(data: bytes) -> SignedPolicy:
    """A signed policy from its wire bytes, strictly (the signature is not checked here)."""
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy of {len(data)} bytes, at most {MAX_POLICY_BYTES}")
    try:
        value = cbor.loads(data, MAX_POLICY_BYTES)
    except cbor.CBORError as exc:
        raise PolicyError(f"policy: not strict CBOR ({exc.reason})") from None
    if not isinstance(value, list) or len(value) != FIELDS:
        raise PolicyError(f"policy: an array of {FIELDS} items")
    if type(value[0]) is not int or value[0] != VERSION:  # `true` == 1 to Python
        raise PolicyError(f"policy: version {value[0]!r} is not {VERSION}")
    names = [name for name, _ in POLICY_UINTS]
    integers = [_uint(v, n, m) for v, n, m in
                zip(value[1:10], names, (m for _, m in POLICY_UINTS), strict=True)]
    providers = value[10]
    if not isinstance(providers, list) or any(not isinstance(a, bytes) for a in providers):
        raise PolicyError("policy providers: an array of 20-byte strings")
    provider_caps = _pairs(value[11], "provider caps")
    product_caps = _pairs(value[12], "product caps")
    if any(not isinstance(a, bytes) for a, _ in provider_caps):
        raise PolicyError("policy provider caps: keys are 20-byte strings")
    if any(not isinstance(n, str) for n, _ in product_caps):
        raise PolicyError("policy product caps: keys are product names")
    signature = value[13]
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise PolicyError("policy signature: 64 bytes")
    (channel_id, seq, deposit, budget, expiry, expiry_margin, max_unit_price, per_hour,
     per_minute) = integers
    policy = SpendingPolicy(
        channel_id=channel_id, seq=seq, deposit=deposit, budget=budget, expiry=expiry,
        expiry_margin=expiry_margin, max_unit_price=max_unit_price, per_hour=per_hour,
        per_minute=per_minute, providers=tuple(providers),
        provider_caps=tuple((a, _uint(c, "cap")) for a, c in provider_caps),
        product_caps=tuple((n, _uint(c, "cap")) for n, c in product_caps))
    policy.check()
    return SignedPolicy(policy, signature)


__all__ = ["MAX_CHANNEL_ID", "PolicyError", "SignedPolicy", "SpendingPolicy", "caps_hash",
           "decode_policy", "providers_hash"]
