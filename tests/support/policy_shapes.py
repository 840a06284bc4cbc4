"""The owner-signed policy of docs/protocol.md §3.5 as a shape of the mutation suite.

Every field (and every entry of its lists) meets every sample of ``shapes.SAMPLES``; each
list also gets 16 and 17 entries, a duplicate and a descending pair, each array one
element short and long, and the whole policy 1,024 and 1,025 bytes. The verdict is the
one a device reaches, worked out here from §3.5's field rules and its order of checks
(malformed, channel, seq, signature, deposit, limits) against a device whose channel is
``CHANNEL``, whose policy in force has seq ``APPLIED_SEQ`` and which has signed
``SIGNED`` units; no decoder is asked.

A mutated policy is signed again by the owner whenever its signed fields still fit the
EIP-712 ``Policy`` type, so that the schema, not the signature, is what a decoder must
judge; a value that only looks like the original (``true`` for ``1``) keeps the old
signature.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak
from nanotoll.protocol.eip712 import policy_digest
from nanotoll.protocol.policy import caps_hash, providers_hash
from nanotoll.protocol.signing import address_of, sign_compact

from support.shapes import (
    CHANNEL,
    CUMULATIVE,
    NOW,
    PROVIDER,
    SAMPLES,
    SEPARATOR,
    Path,
    _at,
    _contains_raw,
    _put,
    encode,
)

OWNER_KEY = keccak(b"nanotoll conformance owner")
OWNER = bytes.fromhex(address_of(OWNER_KEY)[2:])
APPLIED_SEQ = 4  # the seq of the policy in force on the device
SIGNED = CUMULATIVE  # units the device has already signed
MAX_POLICY_BYTES = 1024
U32, U64 = 2**32 - 1, 2**64 - 1
# (lowest, highest) of channelId, seq, deposit, budget, expiry, expiryMargin,
# maxUnitPrice, perHour, perMinute
INTEGER_RANGES = ((1, U32), (1, U64), (1, U64), (0, U64), (1, U64), (0, U64), (0, U64),
                  (0, U64), (0, U32))
INTEGER_NAMES = ("channelId", "seq", "deposit", "budget", "expiry", "expiryMargin",
                 "maxUnitPrice", "perHour", "perMinute")
REASONS = ("applied", "malformed", "channel", "seq", "signature", "deposit", "limits")
OTHER_PROVIDER = bytes(19) + b"\x01"  # below PROVIDER, so [OTHER_PROVIDER, PROVIDER] ascends


@dataclass(frozen=True)
class PolicyCase:
    """One policy and what the spec says of it."""

    field: str
    label: str
    data: bytes
    reason: str  # the device's verdict: "applied" or the first failing check's reason
    consistent: bool  # well formed and budget <= deposit: what decode_policy takes
    owner_signed: bool  # the signature is the owner's over these fields

    @property
    def name(self) -> str:
        return f"policy {self.field} = {self.label}"


def template(seq: int = APPLIED_SEQ + 1) -> list[Any]:
    return [1, CHANNEL, seq, 10**9, 10**6, NOW + 30 * 86_400, 3600, 5000, 10**5, 30,
            [OTHER_PROVIDER, PROVIDER], [[PROVIDER, 10**6]], [["nav", 4000], ["weather", 9000]],
            b""]


# ------------------------------------------------------------------ signing --


def _digest(tree: Any) -> bytes | None:
    """The owner's digest over ``tree``'s signed fields, None when they do not fit the
    EIP-712 types (a boolean, text for a number, a number out of its width)."""
    if not isinstance(tree, list) or len(tree) != 14:
        return None
    ints, providers, provider_caps, product_caps = tree[1:10], tree[10], tree[11], tree[12]
    widths = [high for _, high in INTEGER_RANGES]
    if any(type(v) is not int or not 0 <= v <= high for v, high in zip(ints, widths,
                                                                        strict=True)):
        return None
    pairs = [*provider_caps, *product_caps] if all(
        isinstance(x, list) for x in (providers, provider_caps, product_caps)) else None
    if pairs is None or any(type(a) is not bytes for a in providers) or any(
            not isinstance(p, list) or len(p) != 2 or type(p[1]) is not int
            or not 0 <= p[1] <= U64 for p in pairs):
        return None
    if any(type(a) is not bytes for a, _ in provider_caps) or any(
            type(n) is not str or len(n.encode()) > 255 for n, _ in product_caps):
        return None
    if len(provider_caps) > 255:
        return None
    return policy_digest(SEPARATOR, tuple(ints), providers_hash(providers),
                         caps_hash(provider_caps, product_caps))


def _template_signature() -> bytes:
    digest = _digest(template())
    assert digest is not None
    return sign_compact(OWNER_KEY, digest)


def signed(tree: Any, keep_signature: bool = False) -> Any:
    """``tree`` signed again by the owner when its fields fit the type; else (or with
    ``keep_signature``) it keeps what it holds, the template's signature by default."""
    if not isinstance(tree, list) or len(tree) != 14 or keep_signature:
        return tree
    digest = _digest(tree)
    signature = sign_compact(OWNER_KEY, digest) if digest is not None else _template_signature()
    return _put(tree, (13,), signature)


def owner_signed(tree: Any) -> bool:
    digest = _digest(tree)
    return digest is not None and isinstance(tree[13], bytes) and \
        tree[13] == sign_compact(OWNER_KEY, digest)


# ------------------------------------------------------------------ the spec --


def _is_uint(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high


def _ascending(keys: list[bytes]) -> bool:
    return all(a < b for a, b in zip(keys, keys[1:], strict=False))


def _pairs(value: Any, key_ok: Any) -> list[bytes] | None:
    """The keys of a well-formed list of [key, cap] pairs, None for anything else."""
    if not isinstance(value, list) or len(value) > 16:
        return None
    keys = []
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2 or not key_ok(pair[0]) \
                or not _is_uint(pair[1], 0, U64):
            return None
        keys.append(pair[0].encode() if isinstance(pair[0], str) else pair[0])
    return keys if _ascending(keys) else None


def _address(value: Any) -> bool:
    return type(value) is bytes and len(value) == 20


def _product_name(value: Any) -> bool:
    return type(value) is str and 1 <= len(value.encode()) <= 32


def well_formed(tree: Any) -> bool:
    """Rule 1 of §3.5: the wire form, every field in its range, lists canonical."""
    if not isinstance(tree, list) or len(tree) != 14 or not _is_uint(tree[0], 1, 1):
        return False
    if not all(_is_uint(v, low, high) for v, (low, high) in zip(tree[1:10], INTEGER_RANGES,
                                                                strict=True)):
        return False
    providers = tree[10]
    if not isinstance(providers, list) or len(providers) > 16 \
            or not all(_address(a) for a in providers) or not _ascending(providers):
        return False
    if _pairs(tree[11], _address) is None or _pairs(tree[12], _product_name) is None:
        return False
    return type(tree[13]) is bytes and len(tree[13]) == 64


def device_reason(tree: Any, data: bytes) -> str:
    """The device's verdict, its checks in §3.5's order."""
    if len(data) > MAX_POLICY_BYTES or _contains_raw(tree) is not None or not well_formed(tree):
        return "malformed"
    if tree[1] != CHANNEL:
        return "channel"
    if tree[2] <= APPLIED_SEQ:
        return "seq"
    if not owner_signed(tree):
        return "signature"
    if tree[3] < SIGNED:
        return "deposit"
    return "limits" if tree[4] > tree[3] else "applied"


def _case(field: str, label: str, tree: Any) -> PolicyCase:
    data = encode(tree)
    reason = device_reason(tree, data)
    consistent = reason != "malformed" and tree[4] <= tree[3]
    return PolicyCase(field, label, data, reason, consistent,
                      reason != "malformed" and owner_signed(tree))


# ------------------------------------------------------------------ cases --

FIELDS: list[tuple[str, Path]] = [
    ("version", (0,)),
    *((name, (index + 1,)) for index, name in enumerate(INTEGER_NAMES)),
    ("providers", (10,)),
    ("provider", (10, 0)),
    ("provider caps", (11,)),
    ("provider cap", (11, 0)),
    ("provider cap address", (11, 0, 0)),
    ("provider cap units", (11, 0, 1)),
    ("product caps", (12,)),
    ("product cap", (12, 0)),
    ("product cap name", (12, 0, 0)),
    ("product cap units", (12, 0, 1)),
    ("signature", (13,)),
]


def _mutations() -> Iterator[PolicyCase]:
    base = template()
    yield _case("template", "as is", signed(base))
    for field, path in FIELDS:
        for sample in SAMPLES:
            tree = signed(_put(base, path, sample.value), keep_signature=path == (13,))
            yield _case(field, sample.label, tree)


def _lengths() -> Iterator[PolicyCase]:
    base = template()
    arrays = {"policy": (), "provider cap": (11, 0), "product cap": (12, 0)}
    for name, path in arrays.items():
        array = _at(base, path)
        for label, changed in (("one short", array[:-1]), ("one long", [*array, 0])):
            yield _case(f"{name} length", label, signed(_put(base, path, changed)))


def _lists() -> Iterator[PolicyCase]:
    base = template()
    addresses = [bytes(19) + bytes([i + 1]) for i in range(17)]
    entries: dict[str, tuple[int, list[Any]]] = {
        "providers": (10, addresses),
        "provider caps": (11, [[a, 7] for a in addresses]),
        "product caps": (12, [[f"p{i:02d}", 7] for i in range(17)]),
    }
    for name, (index, items) in entries.items():
        for count in (0, 1, 16, 17):
            yield _case(f"{name} entries", str(count), signed(_put(base, (index,),
                                                                   items[:count])))
        pair = items[:2]
        yield _case(f"{name} order", "duplicate", signed(_put(base, (index,),
                                                              [pair[0], pair[0]])))
        yield _case(f"{name} order", "descending", signed(_put(base, (index,), pair[::-1])))
    # names compare as bytes: "B" (0x42) before "a" (0x61), "é" (0xc3 0xa9) after "z"
    for label, names in (("bytes order", ["B", "a"]), ("utf-8 after ascii", ["z", "é"]),
                         ("utf-8 before ascii", ["é", "z"]), ("32 bytes of utf-8", ["é" * 16]),
                         ("33 bytes of utf-8", ["a" + "é" * 16])):
        yield _case("product caps names", label,
                    signed(_put(base, (12,), [[n, 1] for n in names])))


def _limits() -> Iterator[PolicyCase]:
    """The device's checks after the shape, at their boundaries."""
    base = template()
    for label, index, value in (
            ("channel 2", 1, CHANNEL + 1), ("seq applied", 2, APPLIED_SEQ),
            ("seq applied + 1", 2, APPLIED_SEQ + 1), ("deposit below signed", 3, SIGNED - 1),
            ("deposit = signed, budget above", 3, SIGNED), ("budget = deposit", 4, 10**9),
            ("budget = deposit + 1", 4, 10**9 + 1)):
        yield _case("limits", label, signed(_put(base, (index,), value)))
    yield _case("limits", "deposit = budget = signed",
                signed(_put(_put(base, (3,), SIGNED), (4,), SIGNED)))
    other = sign_compact(keccak(b"another owner"), _digest(base) or b"")
    yield _case("limits", "another owner's signature", _put(base, (13,), other))


def _padded(size: int) -> Any:
    base = template()
    addresses = [bytes(19) + bytes([i + 1]) for i in range(16)]
    for providers in range(17):
        for products in range(1, 17):
            for pad in range(1, 30):
                names = [f"p{i:02d}" + "x" * 29 for i in range(products)]
                names[-1] = f"p{products - 1:02d}" + "x" * pad
                tree = _put(_put(_put(base, (10,), addresses[:providers]), (12,),
                                 [[n, U64] for n in names]), (13,), bytes(64))
                if len(encode(tree)) == size:  # the same size once signed
                    return signed(tree)
    raise ValueError(f"no policy of {size} bytes")


def policy_cases() -> list[PolicyCase]:
    sizes = [_case("size", str(size), _padded(size)) for size in (1024, 1025)]
    return [*_mutations(), *_lengths(), *_lists(), *_limits(), *sizes]
