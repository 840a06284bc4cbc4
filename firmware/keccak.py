# Keccak-256, the hash Ethereum uses (original Keccak padding 0x01, not SHA-3's 0x06).
#
# keccak256(data) -> 32 bytes. No MicroPython port ships keccak, so it is done
# here: the permutation runs as viper native code where the port has a native
# emitter (unix, qemu Cortex-M, esp32, rp2) and as plain Python otherwise.
# Not re-entrant: one module-level state, which is fine for straight-line
# callers (asyncio tasks cannot interleave inside keccak256).

_RATE = const(136)  # bytes absorbed per permutation for a 256-bit output

# The round constants in Keccak's compact form: bit j of byte i is bit 2^j - 1 of
# round i's constant (no other bits are ever set). Bytes, not 64-bit integers:
# on a 32-bit board each such integer would be a big int kept in the heap.
_RC_BITS = const(b"\x01\x1a\x5e\x70\x1f\x21\x79\x55\x0e\x0c\x35\x26\x3f\x4f\x5d\x53\x52\x48\x16\x66\x79\x58\x21\x74")

# The rotation of each lane (x + 5 y) in rho.
_ROTATIONS = const((
    0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39,
    41, 45, 15, 21, 8, 18, 2, 61, 56, 14,
))


def _round_constant(i, out, at):
    # round i's constant as 8 little-endian bytes into out[at:at + 8]
    bits = _RC_BITS[i]
    for j in range(7):
        if bits >> j & 1:
            position = (1 << j) - 1
            out[at + (position >> 3)] |= 1 << (position & 7)


try:
    from _keccak_viper import permute as _permute_native, xor_into as _xor_native

    # the state in bytes 0..199, the permutation's scratch, the round constants from
    # byte 504 and rho and pi's walk from byte 696 (the layout is in _keccak_viper.py)
    _state = bytearray(792)

    def _layout():
        # in a function, so its loop variables are locals, not module names
        for i in range(24):
            _round_constant(i, _state, 504 + 8 * i)
        for i in range(1, 25):
            x, n = i % 5, _ROTATIONS[i]
            at = 696 + 4 * (i - 1)
            # the halves swap when rotating by 32 or more
            _state[at] = 2 * i + (n >= 32)
            _state[at + 1] = 2 * i + (n < 32)
            _state[at + 2] = 50 + 2 * (i // 5 + 5 * ((2 * x + 3 * (i // 5)) % 5))
            _state[at + 3] = n & 31

    _layout()
    del _layout

    def _permute():
        _permute_native(_state)

    def _absorb(chunk):
        _xor_native(_state, chunk, len(chunk))

    def _clear():
        _xor_native(_state, _state, 200)  # x ^ x: no 200 bytes of zeros kept for it

except (ImportError, SyntaxError, ValueError, NotImplementedError):
    # No native emitter (or a .mpy built for another architecture): plain Python
    # on whole 64-bit lanes. Correct everywhere, much slower on 32-bit ports.
    _MASK64 = const(0xFFFFFFFFFFFFFFFF)
    _state = bytearray(200)

    def _permute():
        lanes = [int.from_bytes(_state[8 * i:8 * i + 8], "little") for i in range(25)]
        parity = [0] * 5
        constant = bytearray(8)
        for rnd in range(24):
            for x in range(5):
                parity[x] = lanes[x] ^ lanes[x + 5] ^ lanes[x + 10] ^ lanes[x + 15] ^ lanes[x + 20]
            for x in range(5):
                right = parity[(x + 1) % 5]
                d = parity[(x + 4) % 5] ^ (((right << 1) | (right >> 63)) & _MASK64)
                for y in range(x, 25, 5):
                    lanes[y] ^= d
            moved = lanes[:]
            for i in range(1, 25):
                x, y, n = i % 5, i // 5, _ROTATIONS[i]
                lane = moved[i]
                lanes[y + 5 * ((2 * x + 3 * y) % 5)] = ((lane << n) | (lane >> (64 - n))) & _MASK64
            for y in range(0, 25, 5):
                a0, a1, a2, a3, a4 = lanes[y:y + 5]
                lanes[y] = a0 ^ (~a1 & a2)
                lanes[y + 1] = a1 ^ (~a2 & a3)
                lanes[y + 2] = a2 ^ (~a3 & a4)
                lanes[y + 3] = a3 ^ (~a4 & a0)
                lanes[y + 4] = a4 ^ (~a0 & a1)
            constant[:] = bytes(8)
            _round_constant(rnd, constant, 0)
            lanes[0] ^= int.from_bytes(constant, "little")
        for i in range(25):
            _state[8 * i:8 * i + 8] = lanes[i].to_bytes(8, "little")

    def _absorb(chunk):
        for i in range(len(chunk)):
            _state[i] ^= chunk[i]

    def _clear():
        _state[:] = bytes(200)


def keccak256(data):
    """Keccak-256 of a bytes-like object, as 32 bytes."""
    view = memoryview(data)
    state = _state
    _clear()
    start = 0
    end = len(view)
    while end - start >= _RATE:
        _absorb(view[start:start + _RATE])
        _permute()
        start += _RATE
    _absorb(view[start:end])
    # pad10*1 with Keccak's domain bit: 0x01 after the data, 0x80 at the block end
    state[end - start] ^= 0x01
    state[_RATE - 1] ^= 0x80
    _permute()
    return bytes(state[:32])
