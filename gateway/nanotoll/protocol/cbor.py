"""Strict, deterministic CBOR (RFC 8949 subset) for the nanotoll wire protocol.

Encoding is the core deterministic form: shortest heads, definite lengths, map keys
sorted bytewise by their encoded form. The decoder accepts only that form and only the
types the protocol uses: unsigned and negative integers, byte and text strings, arrays,
maps, false, true and null. No floats, tags, undefined or indefinite lengths.

Besides the generic pair (:func:`dumps`, :func:`loads`), two narrow paths for the
gateway's per-request work, each giving exactly the bytes or values of the generic one:
:class:`FlatMapEncoder` for maps of text keys to integers and booleans (a provider's
answer), and :func:`read_uint_head` for readers that walk a known message shape and hand
anything unexpected to :func:`loads` to judge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MAX_DEPTH = 8
MAX_ITEMS = 256  # elements in one array or pairs in one map
MAX_MESSAGE = 8192  # bytes in one encoded message

_HEAD_SIZES = {24: 1, 25: 2, 26: 4, 27: 8}  # additional information -> bytes that follow
# Shortest form: each wider head must carry a value the narrower one could not.
_SMALLEST = {1: 24, 2: 1 << 8, 4: 1 << 16, 8: 1 << 32}


class CBORError(ValueError):
    """Bytes that are not strict nanotoll CBOR. ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def encode_head(major: int, value: int) -> bytes:
    """The shortest head of major type ``major`` carrying ``value`` (a length or a uint)."""
    if value < 24:
        return bytes([major << 5 | value])
    if value < 0x100:
        return bytes([major << 5 | 24, value])
    if value < 0x10000:
        return bytes([major << 5 | 25]) + value.to_bytes(2, "big")
    if value < 0x100000000:
        return bytes([major << 5 | 26]) + value.to_bytes(4, "big")
    if value < 0x10000000000000000:
        return bytes([major << 5 | 27]) + value.to_bytes(8, "big")
    raise CBORError("int-range", f"{value} does not fit 64 bits")


def _encode(obj: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CBORError("too-deep", f"nesting over {MAX_DEPTH}")
    if obj is False:
        out.append(0xF4)
    elif obj is True:
        out.append(0xF5)
    elif obj is None:
        out.append(0xF6)
    elif isinstance(obj, int):
        out += encode_head(0, obj) if obj >= 0 else encode_head(1, -1 - obj)
    elif isinstance(obj, bytes | bytearray | memoryview):
        out += encode_head(2, len(obj))
        out += obj
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        out += encode_head(3, len(raw))
        out += raw
    elif isinstance(obj, Mapping):
        pairs = []
        for key, value in obj.items():
            key_bytes = bytearray()
            _encode(key, key_bytes, depth + 1)
            pairs.append((bytes(key_bytes), value))
        pairs.sort(key=lambda pair: pair[0])
        out += encode_head(5, len(pairs))
        for encoded_key, value in pairs:
            out += encoded_key
            _encode(value, out, depth + 1)
    elif isinstance(obj, Sequence):
        out += encode_head(4, len(obj))
        for item in obj:
            _encode(item, out, depth + 1)
    else:
        raise CBORError("unsupported-type", type(obj).__name__)


def dumps(obj: Any) -> bytes:
    out = bytearray()
    _encode(obj, out, 1)
    return bytes(out)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise CBORError("truncated", f"need {count} bytes at offset {self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def argument(self, info: int) -> int:
        if info < 24:
            return info
        if info > 27:
            raise CBORError("indefinite" if info == 31 else "reserved", f"additional info {info}")
        size = _HEAD_SIZES[info]
        value = int.from_bytes(self.take(size), "big")
        if value < _SMALLEST[size]:
            raise CBORError("non-shortest", f"{value} encoded in {size} bytes")
        return value

    def item(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise CBORError("too-deep", f"nesting over {MAX_DEPTH}")
        initial = self.take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if major == 7:
            if info == 20:
                return False
            if info == 21:
                return True
            if info == 22:
                return None
            if info in (25, 26, 27):
                raise CBORError("float", "floats are not allowed")
            raise CBORError("simple-value", f"simple value {info} not allowed")
        if major == 6:
            raise CBORError("tag", "tags are not allowed")
        value = self.argument(info)
        if major == 0:
            return value
        if major == 1:
            return -1 - value
        if major in (2, 3):
            if value > MAX_MESSAGE:
                raise CBORError("too-large", f"string of {value} bytes")
            raw = self.take(value)
            if major == 2:
                return bytes(raw)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CBORError("bad-utf8", str(exc)) from exc
        if value > MAX_ITEMS:
            raise CBORError("too-large", f"{value} items")
        if major == 4:
            return [self.item(depth + 1) for _ in range(value)]
        result: dict[Any, Any] = {}
        previous = b""
        for index in range(value):
            start = self.pos
            key = self.item(depth + 1)
            key_bytes = self.data[start : self.pos]
            if isinstance(key, list | dict):
                raise CBORError("bad-key", "map keys must be integers or strings")
            if index and key_bytes <= previous:
                reason = "duplicate-key" if key_bytes == previous else "unsorted-keys"
                raise CBORError(reason, repr(key))
            previous = key_bytes
            result[key] = self.item(depth + 1)
        return result


def loads(data: bytes, max_size: int = MAX_MESSAGE) -> Any:
    """Decode one strict CBOR item that fills ``data`` exactly."""
    if len(data) > max_size:
        raise CBORError("too-large", f"{len(data)} bytes, limit {max_size}")
    if not data:
        raise CBORError("truncated", "empty input")
    reader = _Reader(bytes(data))
    value = reader.item(1)
    if reader.pos != len(data):
        raise CBORError("trailing-bytes", f"{len(data) - reader.pos} bytes after the item")
    return value


# ------------------------------------------------------------ narrow paths --

def read_uint_head(data: bytes, pos: int, major: int) -> tuple[int, int]:
    """(value, next position) of the head at ``pos`` when it is a shortest-form head of
    major type ``major``; CBORError for anything else. What a reader of a known message
    shape steps with (the strict decoder, :func:`loads`, walks arbitrary items)."""
    if pos >= len(data):
        raise CBORError("truncated", f"no head at offset {pos}")
    initial = data[pos]
    if initial >> 5 != major:
        raise CBORError("major-type", f"{initial >> 5} at offset {pos}, expected {major}")
    info = initial & 0x1F
    if info < 24:
        return info, pos + 1
    size = _HEAD_SIZES.get(info)
    if size is None:
        raise CBORError("reserved", f"additional info {info}")
    end = pos + 1 + size
    if end > len(data):
        raise CBORError("truncated", f"need {size} bytes at offset {pos + 1}")
    value = int.from_bytes(data[pos + 1 : end], "big")
    if value < _SMALLEST[size]:
        raise CBORError("non-shortest", f"{value} encoded in {size} bytes")
    return value, end


def _flat_value(value: int | bool) -> bytes:
    if value is True:
        return b"\xf5"
    if value is False:
        return b"\xf4"
    if isinstance(value, int):
        return encode_head(0, value) if value >= 0 else encode_head(1, -1 - value)
    raise TypeError(f"a flat map holds integers and booleans, not {type(value).__name__}")


class FlatMapEncoder:
    """:func:`dumps` of a map of text keys to integers and booleans, for maps built with
    the same keys in the same order every time (a provider's answers): the keys' encoded
    forms and their bytewise order are worked out once per key sequence (up to ``limit``
    sequences), so each map then costs only its values."""

    def __init__(self, limit: int = 64) -> None:
        self._plans: dict[tuple[str, ...], tuple[bytes, tuple[tuple[str, bytes], ...]]] = {}
        self._limit = limit

    def _plan(self, keys: tuple[str, ...]) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
        encoded = []
        for key in keys:
            raw = key.encode("utf-8")
            encoded.append((encode_head(3, len(raw)) + raw, key))
        encoded.sort()
        return encode_head(5, len(keys)), tuple((key, head) for head, key in encoded)

    def encode(self, mapping: dict[str, int | bool]) -> bytes:
        keys = tuple(mapping)
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._plan(keys)
            if len(self._plans) < self._limit:
                self._plans[keys] = plan
        head, order = plan
        out = [head]
        for key, encoded_key in order:
            value = mapping[key]
            out.append(encoded_key)
            out.append(_flat_value(value))
        return b"".join(out)
