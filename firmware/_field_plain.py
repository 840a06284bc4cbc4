# Arithmetic modulo the secp256k1 field prime on plain Python integers: the
# fallback for ports without a native emitter, with the functions and slot
# layout of _field_viper.py (read its header). Correct, not fast.

W = None

INVERT_IN_FIELD = False  # as _field_viper.py

_P = const(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F)


def _get(slot):
    return int.from_bytes(W[slot << 5:(slot + 1) << 5], "little")


def _put(slot, value):
    W[slot << 5:(slot + 1) << 5] = value.to_bytes(32, "little")


def mul(dst, a, b):
    _put(dst, _get(a) * _get(b) % _P)


def square_n(slot, times):
    _put(slot, pow(_get(slot), 1 << times, _P))


def sub(dst, a, b):
    _put(dst, (_get(a) - _get(b)) % _P)


def mul_small(dst, a, k):
    _put(dst, _get(a) * k % _P)


def comb_digits(out, k, shape):
    # see comb_digits() in _field_viper.py
    teeth, blocks, span = shape & 0xFF, (shape >> 8) & 0xFF, shape >> 16
    columns = blocks * span
    for step in range(span):
        for block in range(blocks):
            pos = block * span + span - 1 - step
            digit = 0
            for row in range(teeth):
                digit |= ((k[pos >> 3] >> (pos & 7)) & 1) << row
                pos += columns
            out[step * blocks + block] = digit
