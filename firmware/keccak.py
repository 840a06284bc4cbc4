# Keccak-256, the hash Ethereum uses (original Keccak padding 0x01, not SHA-3's 0x06).
#
# keccak256(data) -> 32 bytes. No MicroPython port ships keccak, so it is done
# here: the permutation runs as viper native code where the port has a native
# emitter (unix, qemu Cortex-M, esp32, rp2) and as plain Python otherwise.
# Not re-entrant: one module-level state, which is fine for straight-line
# callers (asyncio tasks cannot interleave inside keccak256).

_RATE = const(136)  # bytes absorbed per permutation for a 256-bit output

_ROUND_CONSTANTS = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)

# rho and pi as one walk over the lanes: (rotation, destination lane) pairs,
# starting from lane 1; each destination receives the previous lane rotated.
_RHO_PI = bytes((
    1, 10, 3, 7, 6, 11, 10, 17, 15, 18, 21, 3, 28, 5, 36, 16,
    45, 8, 55, 21, 2, 24, 14, 4, 27, 15, 41, 23, 56, 19, 8, 13,
    25, 12, 43, 2, 62, 20, 18, 14, 39, 22, 61, 9, 20, 6, 44, 1,
))

_ZERO_STATE = bytes(200)

try:
    from _keccak_viper import permute as _permute_native, xor_into as _xor_native

    # the state in bytes 0..199, then the permutation's scratch lanes and, from byte
    # 480, the round constants (the word layout is in _keccak_viper.py)
    _state = bytearray(672)
    for _i in range(24):
        _state[480 + 8 * _i:488 + 8 * _i] = _ROUND_CONSTANTS[_i].to_bytes(8, "little")
    del _i

    def _permute():
        _permute_native(_state)

    def _absorb(chunk):
        _xor_native(_state, chunk, len(chunk))

except (ImportError, SyntaxError, ValueError, NotImplementedError):
    # No native emitter (or a .mpy built for another architecture): plain Python
    # on whole 64-bit lanes. Correct everywhere, much slower on 32-bit ports.
    _MASK64 = const(0xFFFFFFFFFFFFFFFF)
    _state = bytearray(200)

    def _permute():
        lanes = [int.from_bytes(_state[8 * i:8 * i + 8], "little") for i in range(25)]
        parity = [0] * 5
        for rnd in range(24):
            for x in range(5):
                parity[x] = lanes[x] ^ lanes[x + 5] ^ lanes[x + 10] ^ lanes[x + 15] ^ lanes[x + 20]
            for x in range(5):
                right = parity[(x + 1) % 5]
                d = parity[(x + 4) % 5] ^ (((right << 1) | (right >> 63)) & _MASK64)
                for y in range(x, 25, 5):
                    lanes[y] ^= d
            carried = lanes[1]
            for i in range(0, 48, 2):
                n, j = _RHO_PI[i], _RHO_PI[i + 1]
                moved = lanes[j]
                lanes[j] = ((carried << n) | (carried >> (64 - n))) & _MASK64
                carried = moved
            for y in range(0, 25, 5):
                a0, a1, a2, a3, a4 = lanes[y:y + 5]
                lanes[y] = a0 ^ (~a1 & a2)
                lanes[y + 1] = a1 ^ (~a2 & a3)
                lanes[y + 2] = a2 ^ (~a3 & a4)
                lanes[y + 3] = a3 ^ (~a4 & a0)
                lanes[y + 4] = a4 ^ (~a0 & a1)
            lanes[0] ^= _ROUND_CONSTANTS[rnd]
        for i in range(25):
            _state[8 * i:8 * i + 8] = lanes[i].to_bytes(8, "little")

    def _absorb(chunk):
        for i in range(len(chunk)):
            _state[i] ^= chunk[i]


def keccak256(data):
    """Keccak-256 of a bytes-like object, as 32 bytes."""
    view = memoryview(data)
    state = _state
    state[:200] = _ZERO_STATE
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
