# Strict, deterministic CBOR (RFC 8949 subset) for the nanotoll wire protocol.
#
#   dumps(obj) -> bytes        loads(data, max_size=8192) -> obj
#
# Types: int (-2^64 .. 2^64-1), bytes/bytearray/memoryview (byte string), str
# (text), list/tuple (array), dict (map), False, True, None; Raw(encoded) is
# written as is. Encoding is the core deterministic form: shortest heads,
# definite lengths, map keys sorted bytewise by their encoding (MicroPython's
# dicts have no order, so the order never comes from iteration).
#
# The decoder accepts only that form and raises CBORError, whose .reason is one
# of the short codes of tests/vectors/cbor_invalid.json: truncated,
# trailing-bytes, non-shortest, indefinite, reserved, float, tag,
# simple-value, duplicate-key, unsorted-keys, bad-key, bad-utf8, too-deep,
# too-large (and int-range, unsupported-type when encoding). It mirrors
# gateway/nanotoll/protocol/cbor.py, down to how depth is counted: the
# outermost item is at depth 1 and nothing may sit deeper than _MAX_DEPTH.

from micropython import const

_MAX_DEPTH = const(8)
_MAX_ITEMS = const(256)  # elements of one array, pairs of one map
_MAX_MESSAGE = const(8192)  # bytes of one message, and of one string in it


class CBORError(ValueError):
    def __init__(self, reason, detail=""):
        super().__init__(reason + ": " + detail if detail else reason)
        self.reason = reason


class Raw:
    """An item already encoded, written out unchanged (e.g. a signed voucher)."""

    def __init__(self, encoded):
        self.encoded = encoded


def _head(out, major, value):
    if value < 24:
        out.append(major << 5 | value)
    elif value < 0x100:
        out.append(major << 5 | 24)
        out.append(value)
    elif value < 0x10000:
        out.append(major << 5 | 25)
        out.extend(value.to_bytes(2, "big"))
    elif value < 0x100000000:
        out.append(major << 5 | 26)
        out.extend(value.to_bytes(4, "big"))
    elif value < 0x10000000000000000:
        out.append(major << 5 | 27)
        out.extend(value.to_bytes(8, "big"))
    else:
        raise CBORError("int-range", "does not fit 64 bits")


def _encode(obj, out, depth):
    if depth > _MAX_DEPTH:
        raise CBORError("too-deep", "nesting over 8")
    if obj is False:
        out.append(0xF4)
    elif obj is True:
        out.append(0xF5)
    elif obj is None:
        out.append(0xF6)
    elif isinstance(obj, int):
        if obj >= 0:
            _head(out, 0, obj)
        else:
            _head(out, 1, -1 - obj)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _head(out, 2, len(obj))
        out.extend(obj)
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        _head(out, 3, len(raw))
        out.extend(raw)
    elif isinstance(obj, (list, tuple)):
        _head(out, 4, len(obj))
        for item in obj:
            _encode(item, out, depth + 1)
    elif isinstance(obj, dict):
        pairs = []
        for key in obj:
            encoded_key = bytearray()
            _encode(key, encoded_key, depth + 1)
            pairs.append((bytes(encoded_key), obj[key]))
        pairs.sort(key=lambda pair: pair[0])
        _head(out, 5, len(pairs))
        previous = None
        for encoded_key, value in pairs:
            if encoded_key == previous:
                # e.g. 1 and True are one dict key in Python but not in CBOR
                raise CBORError("duplicate-key")
            previous = encoded_key
            out.extend(encoded_key)
            _encode(value, out, depth + 1)
    elif isinstance(obj, Raw):
        out.extend(obj.encoded)
    else:
        raise CBORError("unsupported-type", str(type(obj)))


def dumps(obj):
    out = bytearray()
    _encode(obj, out, 1)
    return bytes(out)


def _utf8_ok(raw):
    # RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
    i = 0
    n = len(raw)
    while i < n:
        b = raw[i]
        if b < 0x80:
            i += 1
            continue
        if 0xC2 <= b <= 0xDF:
            need, low, high = 1, 0x80, 0xBF
        elif 0xE0 <= b <= 0xEF:
            need = 2
            low = 0xA0 if b == 0xE0 else 0x80
            high = 0x9F if b == 0xED else 0xBF
        elif 0xF0 <= b <= 0xF4:
            need = 3
            low = 0x90 if b == 0xF0 else 0x80
            high = 0x8F if b == 0xF4 else 0xBF
        else:
            return False
        if i + need >= n:
            return False
        if not low <= raw[i + 1] <= high:
            return False
        for j in range(i + 2, i + need + 1):
            if not 0x80 <= raw[j] <= 0xBF:
                return False
        i += need + 1
    return True


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, count):
        end = self.pos + count
        if end > len(self.data):
            raise CBORError("truncated", "need %d bytes at offset %d" % (count, self.pos))
        chunk = self.data[self.pos:end]
        self.pos = end
        return bytes(chunk)  # a memoryview's slice copied; a bytes slice as it is

    def take_byte(self):
        pos = self.pos
        if pos >= len(self.data):
            raise CBORError("truncated", "need 1 bytes at offset %d" % pos)
        self.pos = pos + 1
        return self.data[pos]

    def argument(self, info):
        if info < 24:
            return info
        if info > 27:
            raise CBORError("indefinite" if info == 31 else "reserved", "additional info %d" % info)
        size = 1 << (info - 24)
        if size == 1:
            value = self.take_byte()
        else:
            value = int.from_bytes(self.take(size), "big")
        # shortest form: a wider head must carry what a narrower one could not
        if value < (24 if size == 1 else 1 << (4 * size)):
            raise CBORError("non-shortest", "%d in %d bytes" % (value, size))
        return value

    def item(self, depth):
        if depth > _MAX_DEPTH:
            raise CBORError("too-deep", "nesting over 8")
        initial = self.take_byte()  # indexed, not take(1): no 1-byte object an item
        major = initial >> 5
        info = initial & 0x1F
        if major == 7:
            if info == 20:
                return False
            if info == 21:
                return True
            if info == 22:
                return None
            if 25 <= info <= 27:
                raise CBORError("float", "floats are not allowed")
            raise CBORError("simple-value", "simple value %d not allowed" % info)
        if major == 6:
            raise CBORError("tag", "tags are not allowed")
        value = self.argument(info)
        if major == 0:
            return value
        if major == 1:
            return -1 - value
        if major == 2 or major == 3:
            if value > _MAX_MESSAGE:
                raise CBORError("too-large", "string of %d bytes" % value)
            raw = self.take(value)
            if major == 2:
                return raw
            if not _utf8_ok(raw):
                raise CBORError("bad-utf8", "invalid UTF-8 in text")
            return str(raw, "utf-8")
        if value > _MAX_ITEMS:
            raise CBORError("too-large", "%d items" % value)
        if major == 4:
            return [self.item(depth + 1) for _ in range(value)]
        result = {}
        previous = None
        for _ in range(value):
            start = self.pos
            key = self.item(depth + 1)
            encoded_key = bytes(self.data[start:self.pos])
            if isinstance(key, (list, dict)):
                raise CBORError("bad-key", "map keys must be integers or strings")
            if previous is not None and encoded_key <= previous:
                raise CBORError(
                    "duplicate-key" if encoded_key == previous else "unsorted-keys", repr(key)
                )
            previous = encoded_key
            result[key] = self.item(depth + 1)
        return result


def loads(data, max_size=_MAX_MESSAGE):
    """Decode one strict CBOR item that fills data exactly."""
    if len(data) > max_size:
        raise CBORError("too-large", "%d bytes, limit %d" % (len(data), max_size))
    if not data:
        raise CBORError("truncated", "empty input")
    # Read in place, not copied: a bytearray is what the MQTT client hands over.
    reader = _Reader(data if isinstance(data, bytes) else memoryview(data))
    value = reader.item(1)
    if reader.pos != len(data):
        raise CBORError("trailing-bytes", "%d bytes after the item" % (len(data) - reader.pos))
    return value
