"""The message shapes of docs/protocol.md §3 as data, and every mutation of them.

A shape is a valid message held as a tree of values. A mutation replaces one position
(a field) with one sample of every CBOR major type and boundary value, or changes an
array's or a map's length, or pushes the message to its size limit and one byte over.
Each mutated message carries the spec's verdict, worked out here from the spec's field
rules alone and never by calling a decoder, so that the suite can hold every decoder
(CPython's strict one, its fast request reader, the firmware's) to the same answer.

Mutated catalogs and receipts are signed again whenever their signed fields still fit
the EIP-712 types, so that a decoder cannot pass by failing the signature instead of
the schema; a value that only looks like the original (``true`` where ``1`` was signed)
keeps the original signature, which is exactly the confusion to catch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from eth_utils import keccak
from nanotoll.protocol import cbor
from nanotoll.protocol.eip712 import (
    catalog_digest,
    domain_separator,
    error_digest,
    receipt_digest,
)
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.signing import address_of, sign_compact
from nanotoll.protocol.voucher import sign

from support.gateway_support import CHAIN_ID, DEVICE_KEY, ESCROW, PROVIDER_KEY

SEPARATOR = domain_separator(CHAIN_ID, ESCROW)
PROVIDER = bytes.fromhex(address_of(PROVIDER_KEY)[2:])
CHANNEL = 1  # 1, so that `true` in its place is the same number to a careless decoder
CUMULATIVE = 1500
REQUEST_ID = 1
CATALOG_SEQ = 1
REQUEST_SEQ = 3  # the catalog seq a request names: gateway_support's catalog, as the rig signs it
NOW = 1_767_225_600
LIMITS = {"request": 512, "response": 8192, "catalog": 2048}
OK, MALFORMED, TOO_LARGE = ErrorCode.OK, ErrorCode.MALFORMED, ErrorCode.TOO_LARGE
UNSUPPORTED_VERSION = ErrorCode.UNSUPPORTED_VERSION


@dataclass(frozen=True)
class Raw:
    """Bytes written into a message as they are: items the encoder refuses to make."""

    encoded: bytes
    reason: str  # the strict decoder's CBORError reason for these bytes


@dataclass(frozen=True)
class Encoded:
    """Valid CBOR given as bytes: a map key of any type (Python keys must hash)."""

    encoded: bytes


def _head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    size = 1 if value < 0x100 else 2 if value < 0x10000 else 4 if value < 1 << 32 else 8
    return bytes([major << 5 | (24 + size.bit_length() - 1)]) + value.to_bytes(size, "big")


def encode(value: Any) -> bytes:
    """Deterministic CBOR of ``value``, with Raw items spliced in unchanged."""
    if isinstance(value, Raw | Encoded):
        return value.encoded
    if isinstance(value, list):
        return _head(4, len(value)) + b"".join(encode(item) for item in value)
    if isinstance(value, dict):
        pairs = sorted((encode(key), encode(item)) for key, item in value.items())
        return _head(5, len(pairs)) + b"".join(key + item for key, item in pairs)
    return cbor.dumps(value)


# ------------------------------------------------------------------ samples --


@dataclass(frozen=True)
class Sample:
    label: str
    value: Any  # a plain value, or Raw for what the decoder must refuse as CBOR


def _raw(label: str, hex_: str, reason: str) -> Sample:
    return Sample(label, Raw(bytes.fromhex(hex_), reason))


def _samples() -> list[Sample]:
    out: list[Sample] = []
    for n in (0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1):
        out.append(Sample(f"uint {n}", n))
    for n in (1, 24, 25, 256, 257, 2**32, 2**32 + 1, 2**64):
        out.append(Sample(f"nint -{n}", -n))
    for n in (0, 1, 19, 20, 21, 31, 32, 33, 63, 64, 65, 75, 76, 77):
        out.append(Sample(f"bytes({n})", bytes(range(n))))
    texts = ["", "a", "z9", "A", "0a", "_a", "a_", "a-b", "a\n", "é", "weather", "a" * 16,
             "a" * 17, "a" * 32, "a" * 33, "a" * 64, "a" * 65, "ä" * 64, "ä" * 65, "a" * 200,
             "a" * 201]
    for text in texts:
        shown = text if len(text) < 8 else f"{text[0]}*{len(text)}"
        out.append(Sample(f"text {shown!r}", text))
    arrays: list[tuple[str, Any]] = [
        ("[]", []), ("[1]", [1]), ("[-1]", [-1]), ("[true]", [True]), ("['a']", ["a"]),
        ("[b'a']", [b"a"]), ("[[1]]", [[1]]), ("[{}]", [{}]), ("[null]", [None]),
        ("[1]*256", [1] * 256),
    ]
    out += [Sample(f"array {label}", value) for label, value in arrays]
    out.append(_raw("array [1]*257", "990101" + "01" * 257, "too-large"))
    out += [Sample("map {}", {}), Sample("map {'a': 1}", {"a": 1}), Sample("map {1: 1}", {1: 1})]
    out += [Sample("false", False), Sample("true", True), Sample("null", None)]
    raws = [
        ("half float", "f93c00", "float"), ("single float", "fa3f800000", "float"),
        ("double float", "fb3ff0000000000000", "float"), ("tag 0", "c060", "tag"),
        ("tag 2 bignum", "c24101", "tag"), ("undefined", "f7", "simple-value"),
        ("simple 16", "f0", "simple-value"), ("simple 255", "f8ff", "simple-value"),
        ("non-shortest 1", "1801", "non-shortest"), ("non-shortest text", "780161", "non-shortest"),
        ("indefinite array", "9f01ff", "indefinite"), ("indefinite text", "7f6161ff", "indefinite"),
        ("break", "ff", "simple-value"), ("reserved info", "1c", "reserved"),
        ("bad utf-8", "62c328", "bad-utf8"),
    ]
    out += [_raw(label, hex_, reason) for label, hex_, reason in raws]
    return out


SAMPLES = _samples()

# ------------------------------------------------------------------ rules --

Rule = Callable[[Any], ErrorCode]


def is_uint(value: Any) -> bool:
    return type(value) is int and value >= 0


def _verdict(ok: bool) -> ErrorCode:
    return OK if ok else MALFORMED


def uint_rule(low: int = 0, high: int = 2**64 - 1) -> Rule:
    return lambda v: _verdict(is_uint(v) and low <= v <= high)


def bytes_rule(length: int) -> Rule:
    return lambda v: _verdict(type(v) is bytes and len(v) == length)


def text_rule(pattern: str | None = None, max_chars: int | None = None) -> Rule:
    compiled = re.compile(pattern) if pattern else None

    def rule(v: Any) -> ErrorCode:
        if type(v) is not str:
            return MALFORMED
        if compiled is not None and not compiled.fullmatch(v):
            return MALFORMED
        return _verdict(max_chars is None or len(v) <= max_chars)

    return rule


def version_rule(v: Any) -> ErrorCode:
    """Section 3: the first element is the version; another integer is a version this
    decoder does not speak, anything else (``true`` too) is not a version at all."""
    if type(v) is int:
        return OK if v == 1 else UNSUPPORTED_VERSION
    return MALFORMED


def _param_scalar(v: Any) -> bool:
    return type(v) in (int, str, bytes, bool) and (type(v) is not int or -(2**64) <= v < 2**64)


def param_value_rule(v: Any) -> ErrorCode:
    """§3.1: integers, text, bytes, booleans or arrays of them."""
    if isinstance(v, list):
        return _verdict(all(_param_scalar(item) for item in v))
    return _verdict(_param_scalar(v))


PRODUCT_NAME = r"[a-z][a-z0-9_]{0,31}"
PARAM_KEY = r"[a-z][a-z0-9_]{0,15}"


def params_rule(v: Any) -> ErrorCode:
    if type(v) is not dict or len(v) > 16:
        return MALFORMED
    for key, item in v.items():
        if text_rule(PARAM_KEY)(key) != OK or param_value_rule(item) != OK:
            return MALFORMED
    return OK


def voucher_rule(v: Any) -> ErrorCode:
    """bytes(76) whose channel and amount are in range (§2.1 bounds)."""
    if type(v) is not bytes or len(v) != 76:
        return MALFORMED
    channel, amount = int.from_bytes(v[:4], "big"), int.from_bytes(v[4:12], "big")
    return _verdict(channel >= 1 and amount >= 1)


def any_rule(v: Any) -> ErrorCode:
    return OK


# ------------------------------------------------------------------ shapes --

Path = tuple[Any, ...]  # list indexes and map keys from the message root


@dataclass(frozen=True)
class Case:
    """One message and the spec's verdict on it."""

    kind: str  # request, response, catalog
    field: str
    label: str
    data: bytes
    verdict: ErrorCode
    # For a device: False when the message is fine but not the one it waits for (another
    # channel, amount or request hash in the receipt, another provider, another signature).
    binding_kept: bool = True

    @property
    def name(self) -> str:
        return f"{self.kind} {self.field} = {self.label}"


def request_template() -> list[Any]:
    voucher = sign(DEVICE_KEY, SEPARATOR, CHANNEL, CUMULATIVE).pack()
    params = {"alt": 120, "lat": 52_520_008, "lon": 13_404_954}
    return [1, REQUEST_ID, "weather", params, 1500, REQUEST_SEQ, voucher]


def request_bytes() -> bytes:
    return encode(request_template())


DATA = cbor.dumps({"product": "weather", "temp": 21})


def ok_response_template() -> list[Any]:
    request_hash = keccak(request_bytes())
    receipt = [CHANNEL, CUMULATIVE, request_hash, keccak(DATA), b""]
    return [1, REQUEST_ID, 0, [DATA, receipt]]


def error_response_template(code: ErrorCode) -> list[Any]:
    detail: Any = None
    if code == ErrorCode.STALE_VOUCHER:
        detail = sign(DEVICE_KEY, SEPARATOR, CHANNEL, 3000).pack()
    elif code == ErrorCode.PRICE_CHANGED:
        detail = 4
    body = [f"{code.name.lower()} here", detail, CHANNEL, keccak(request_bytes()), b""]
    return _signed("response", [1, REQUEST_ID, int(code), body], None)


def products(count: int = 3, description: str = "nowcast") -> list[list[Any]]:
    names = ["weather", "nav", "route"] + [f"p{i:02d}" for i in range(3, count)]
    return [[names[i], 1500 * (i + 1), description] for i in range(count)]


def catalog_template(items: list[list[Any]] | None = None) -> list[Any]:
    return [1, PROVIDER, CATALOG_SEQ, NOW - 3600, NOW + 86_400,
            items if items is not None else products(), b""]


def _at(tree: Any, path: Path) -> Any:
    for step in path:
        tree = tree[step]
    return tree


def _put(tree: Any, path: Path, value: Any) -> Any:
    """A copy of ``tree`` with ``value`` at ``path``."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree, list):
        copy: Any = list(tree)
    else:
        copy = dict(tree)
    copy[head] = _put(tree[head], rest, value) if rest else value
    return copy


def _signed(kind: str, tree: Any, keep: Path | None) -> Any:
    """Sign the catalog or receipt of ``tree`` again unless ``keep`` (the mutated
    signature) says its bytes are the point of the case."""
    if kind == "catalog":
        if keep == (6,) or not isinstance(tree, list) or len(tree) < 7:
            return tree
        seq, start, until = tree[2], tree[3], tree[4]
        if not all(is_uint(v) and v < 2**64 for v in (seq, start, until)):
            return _put(tree, (6,), _signature_for_kind(kind))
        digest = catalog_digest(SEPARATOR, seq, start, until, keccak(encode(tree[5])))
        return _put(tree, (6,), sign_compact(PROVIDER_KEY, digest))
    if kind == "response" and _is_ok_shape(tree):
        data, receipt = tree[3]
        if isinstance(data, bytes) and keep != (3, 1, 3):
            receipt = _put(receipt, (3,), keccak(data))
        if keep == (3, 1, 4):
            return _put(tree, (3, 1), receipt)
        channel, amount, request_hash, data_hash = receipt[:4]
        fits = (is_uint(channel) and 1 <= channel < 2**32 and is_uint(amount)
                and 1 <= amount < 2**64 and _is32(request_hash) and _is32(data_hash))
        signature = (sign_compact(PROVIDER_KEY, receipt_digest(SEPARATOR, channel, amount,
                                                               request_hash, data_hash))
                     if fits else _signature_for_kind(kind))
        return _put(tree, (3, 1), _put(receipt, (4,), signature))
    if kind == "response" and _is_error_shape(tree) and keep != (3, 4):
        code, (_, detail, channel, request_hash, _) = tree[2], tree[3]
        try:
            digest = error_digest(SEPARATOR, channel, request_hash, code,
                                  keccak(encode(detail)))
        except (ValueError, TypeError):  # a field out of its type: any signature does
            return _put(tree, (3, 4), _signature_for_kind(kind))
        return _put(tree, (3, 4), sign_compact(PROVIDER_KEY, digest))
    return tree


def _is_error_shape(tree: Any) -> bool:
    return (isinstance(tree, list) and len(tree) == 4 and tree[2] != 0
            and isinstance(tree[3], list) and len(tree[3]) == 5)


def _is32(value: Any) -> bool:
    return type(value) is bytes and len(value) == 32


def _is_ok_shape(tree: Any) -> bool:
    return (isinstance(tree, list) and len(tree) == 4 and isinstance(tree[3], list)
            and len(tree[3]) == 2 and isinstance(tree[3][1], list) and len(tree[3][1]) == 5)


def _signature_for_kind(kind: str) -> bytes:
    """The template's own signature: what a field that cannot be signed keeps."""
    if kind == "catalog":
        return _signed("catalog", catalog_template(), None)[6]  # type: ignore[no-any-return]
    tree = _signed("response", ok_response_template(), None)
    return tree[3][1][4]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Field:
    name: str
    path: Path
    rule: Rule
    binding: bool = False  # a device compares it with what it expects


REQUEST_FIELDS = [
    Field("version", (0,), version_rule),
    Field("request_id", (1,), uint_rule(0, 2**32 - 1)),
    Field("product", (2,), text_rule(PRODUCT_NAME)),
    Field("params", (3,), params_rule),
    Field("params value", (3, "alt"), param_value_rule),
    Field("price", (4,), uint_rule()),
    Field("catalog_seq", (5,), uint_rule()),
    Field("voucher", (6,), voucher_rule),
]
OK_RESPONSE_FIELDS = [
    Field("version", (0,), version_rule),
    Field("request_id", (1,), uint_rule(0, 2**32 - 1), binding=True),
    Field("code", (2,), lambda v: _verdict(v == 0 and is_uint(v))),
    Field("body", (3,), lambda v: MALFORMED),
    Field("data", (3, 0), lambda v: _verdict(type(v) is bytes)),
    Field("receipt", (3, 1), lambda v: MALFORMED),
    Field("receipt channel_id", (3, 1, 0), uint_rule(1, 2**32 - 1), binding=True),
    Field("receipt cumulative", (3, 1, 1), uint_rule(1), binding=True),
    Field("receipt request_hash", (3, 1, 2), bytes_rule(32), binding=True),
    Field("receipt data_hash", (3, 1, 3), bytes_rule(32), binding=True),
    Field("receipt signature", (3, 1, 4), bytes_rule(64), binding=True),
]


def _error_fields(code: ErrorCode) -> list[Field]:
    def detail_rule(v: Any) -> ErrorCode:
        if code == ErrorCode.STALE_VOUCHER:
            return OK if v is None else voucher_rule(v)
        if code == ErrorCode.PRICE_CHANGED:
            return uint_rule()(v)
        return _verdict(v is None)

    return [
        Field("version", (0,), version_rule),
        Field("request_id", (1,), uint_rule(0, 2**32 - 1), binding=True),
        Field("message", (3, 0), text_rule(max_chars=200)),
        Field("detail", (3, 1), detail_rule),
        Field("error channel_id", (3, 2), uint_rule(0, 2**32 - 1), binding=True),
        Field("error request_hash", (3, 3), bytes_rule(32), binding=True),
        Field("error signature", (3, 4), bytes_rule(64), binding=True),
    ]


CATALOG_FIELDS = [
    Field("version", (0,), version_rule),
    Field("provider", (1,), bytes_rule(20), binding=True),
    Field("seq", (2,), uint_rule()),
    Field("valid_from", (3,), uint_rule()),
    Field("valid_until", (4,), uint_rule()),
    Field("products", (5,), lambda v: MALFORMED),
    Field("product", (5, 1), lambda v: MALFORMED),
    Field("product name", (5, 1, 0), text_rule(PRODUCT_NAME)),
    Field("unit_price", (5, 1, 1), uint_rule(1)),
    Field("description", (5, 1, 2), text_rule(max_chars=64)),
    Field("signature", (6,), bytes_rule(64), binding=True),
]


def _contains_raw(value: Any) -> Raw | None:
    if isinstance(value, Raw):
        return value
    if isinstance(value, list):
        items: Iterator[Any] = iter(value)
    elif isinstance(value, dict):
        items = iter([*value.keys(), *value.values()])
    else:
        return None
    for item in items:
        found = _contains_raw(item)
        if found is not None:
            return found
    return None


def _cbor_verdict(reason: str) -> ErrorCode:
    return TOO_LARGE if reason == "too-large" else MALFORMED


def _case(kind: str, field: str, label: str, tree: Any, verdict: ErrorCode,
          binding_kept: bool = True, limit_kind: str | None = None) -> Case:
    data = encode(tree)
    if len(data) > LIMITS[limit_kind or kind]:
        verdict = TOO_LARGE
    else:
        raw = _contains_raw(tree)
        if raw is not None:
            verdict = _cbor_verdict(raw.reason)
    return Case(kind, field, label, data, verdict, binding_kept)


def _mutations(kind: str, template: Any, fields: list[Field]) -> Iterator[Case]:
    signed = _signed(kind, template, None)
    yield _case(kind, "template", "as is", signed, OK)
    for field in fields:
        original = encode(_at(signed, field.path))
        for sample in SAMPLES:
            tree = _signed(kind, _put(template, field.path, sample.value), field.path)
            value = _at(tree, field.path)
            verdict = OK if isinstance(sample.value, Raw) else field.rule(sample.value)
            kept = not field.binding or encode(value) == original
            yield _case(kind, field.name, sample.label, tree, verdict, kept)


def _lengths(kind: str, template: Any, arrays: dict[str, Path]) -> Iterator[Case]:
    """Every fixed array one element short and one element long."""
    for name, path in arrays.items():
        array = _at(template, path)
        for label, changed in (("one short", array[:-1]), ("one long", [*array, 0])):
            tree = _signed(kind, _put(template, path, changed), None)
            yield _case(kind, f"{name} length", label, tree, MALFORMED, binding_kept=False)


def request_cases() -> Iterator[Case]:
    template = request_template()
    yield from _mutations("request", template, REQUEST_FIELDS)
    yield from _lengths("request", template, {"request": ()})
    voucher = template[6]
    for label, channel, amount in (("channel 0", 0, 1), ("channel 2^32-1", 2**32 - 1, 1),
                                   ("amount 0", 1, 0), ("amount 2^64-1", 1, 2**64 - 1)):
        changed = channel.to_bytes(4, "big") + amount.to_bytes(8, "big") + voucher[12:]
        yield _case("request", "voucher content", label, _put(template, (6,), changed),
                    voucher_rule(changed))
    for count in (16, 17):
        params = {f"k{i:02d}": i for i in range(count)}
        yield _case("request", "params entries", str(count), _put(template, (3,), params),
                    OK if count <= 16 else MALFORMED)
    duplicate = {Encoded(encode("alt")): 1, "alt": 2, "lat": 3}  # one key twice
    yield _case("request", "params key", "duplicate", _put(template, (3,), duplicate), MALFORMED)
    for sample in SAMPLES:
        key = sample.value if isinstance(sample.value, Raw) else Encoded(encode(sample.value))
        tree = _put(template, (3,), {"lat": 1, "lon": 2, key: 3})
        verdict = OK if isinstance(sample.value, Raw) else text_rule(PARAM_KEY)(sample.value)
        yield _case("request", "params key", sample.label, tree, verdict)
    for size in (512, 513):
        yield _case("request", "size", str(size), _padded_request(size),
                    OK if size <= 512 else TOO_LARGE)


def _padded_request(size: int) -> Any:
    template = request_template()
    for pad in range(size):
        tree = _put(template, (3, "pad"), "x" * pad)
        if len(encode(tree)) == size:
            return tree
    raise ValueError(f"no request of {size} bytes")


def response_cases() -> Iterator[Case]:
    template = ok_response_template()
    yield from _mutations("response", template, OK_RESPONSE_FIELDS)
    yield from _lengths("response", template, {"response": (), "body": (3,),
                                               "receipt": (3, 1)})
    for code in (ErrorCode.STALE_VOUCHER, ErrorCode.PRICE_CHANGED, ErrorCode.UNDERPAID):
        error = error_response_template(code)
        for case in _mutations("response", error, _error_fields(code)):
            yield replace(case, field=f"{code.name} {case.field}")
        for case in _lengths("response", error, {"response": (), "body": (3,)}):
            yield replace(case, field=f"{code.name} {case.field}")
    for code_value in (0, 1, 7, 17, 31, 32, 255):  # another code with an error's body
        tree = _put(error_response_template(ErrorCode.UNDERPAID), (2,), code_value)
        known = code_value in ErrorCode._value2member_map_ and code_value != 0
        yield _case("response", "error code", str(code_value), tree,
                    OK if known and code_value != ErrorCode.PRICE_CHANGED else MALFORMED)
    for size in (8192, 8193):
        yield _case("response", "size", str(size), _padded_response(size),
                    OK if size <= 8192 else TOO_LARGE)


def _padded_response(size: int) -> Any:
    template = ok_response_template()
    low = len(encode(_signed("response", template, None)))
    for pad in range(max(0, size - low - 8), size):
        tree = _signed("response", _put(template, (3, 0), bytes(pad)), None)
        if len(encode(tree)) == size:
            return tree
    raise ValueError(f"no response of {size} bytes")


def catalog_cases() -> Iterator[Case]:
    template = catalog_template()
    yield from _mutations("catalog", template, CATALOG_FIELDS)
    yield from _lengths("catalog", template, {"catalog": (), "product": (5, 1)})
    for count in (0, 1, 32, 33):
        tree = _signed("catalog", catalog_template(products(count, "")), None)
        yield _case("catalog", "products count", str(count), tree,
                    OK if 1 <= count <= 32 else MALFORMED)
    for size in (2048, 2049):
        yield _case("catalog", "size", str(size), _padded_catalog(size),
                    OK if size <= 2048 else TOO_LARGE)


def _padded_catalog(size: int) -> Any:
    for count in range(3, 33):
        for pad in range(65):
            items = products(count, "d" * 64)
            items[-1][2] = "d" * pad
            tree = _signed("catalog", catalog_template(items), None)
            if len(encode(tree)) == size:
                return tree
    raise ValueError(f"no catalog of {size} bytes")


def all_cases() -> list[Case]:
    return [*request_cases(), *response_cases(), *catalog_cases()]
