# Keccak-f[1600] in viper, on 32-bit halves of each 64-bit lane.
#
# Kept apart from keccak.py because a port without a native emitter refuses to
# compile a module that mentions micropython.viper at all; keccak.py falls back
# to plain Python when this import fails.
#
# One buffer of 32-bit words (filled by keccak.py): lane (x, y) of the state at
# words 2 (x + 5 y) (low half) and 2 (x + 5 y) + 1 (high half), little-endian so
# that the state's first 200 bytes are its bytes; words 50..99 the lanes after rho
# and pi (B); 100..113 the column parities C[4], C[0..4], C[0] (each column's
# neighbours at fixed offsets); 114..123 theta's D; 124..125 the round's
# constant; 126..173 the 24 round constants, low then high half; then, from byte
# 696, rho and pi's walk: per lane 1..24 four bytes (word of the low half to
# rotate, word of the high half, word of the destination in B, rotation mod 32;
# a rotation by 32 or more swaps the halves). Values are kept within 32 bits where
# they are shifted right, so the code is exact on 64-bit viper (unix port) as
# well: stores into ptr32 drop the rest.
#
# On a board the native code is copied into the heap at import, even from ROMFS:
# so the round is loops over rows and lanes, with the loops' pointer in a
# register (r, once the round's constant is set aside) and every other index a
# constant offset from it, rather than written out lane by lane.
import micropython


@micropython.viper
def _round(b: ptr32, r: uint):
    b[124] = b[126 + 2 * r]
    b[125] = b[127 + 2 * r]
    # theta: column parities C, then D[x] = C[x - 1] ^ (C[x + 1] rotated by 1),
    # XORed into each row
    r = uint(0)
    while r < uint(10):
        b[102 + r] = uint(b[r]) ^ uint(b[10 + r]) ^ uint(b[20 + r]) ^ uint(b[30 + r]) ^ uint(b[40 + r])
        r += 1
    b[100] = b[110]
    b[101] = b[111]
    b[112] = b[102]
    b[113] = b[103]
    r = uint(0)
    while r < uint(10):
        b[114 + r] = uint(b[100 + r]) ^ ((uint(b[104 + r]) << 1) | (uint(b[105 + r]) >> 31))
        b[115 + r] = uint(b[101 + r]) ^ ((uint(b[105 + r]) << 1) | (uint(b[104 + r]) >> 31))
        r += 2
    base = uint(b)
    r = base
    while r < base + 200:
        ptr32(r)[0] = uint(ptr32(r)[0]) ^ uint(b[114])
        ptr32(r)[1] = uint(ptr32(r)[1]) ^ uint(b[115])
        ptr32(r)[2] = uint(ptr32(r)[2]) ^ uint(b[116])
        ptr32(r)[3] = uint(ptr32(r)[3]) ^ uint(b[117])
        ptr32(r)[4] = uint(ptr32(r)[4]) ^ uint(b[118])
        ptr32(r)[5] = uint(ptr32(r)[5]) ^ uint(b[119])
        ptr32(r)[6] = uint(ptr32(r)[6]) ^ uint(b[120])
        ptr32(r)[7] = uint(ptr32(r)[7]) ^ uint(b[121])
        ptr32(r)[8] = uint(ptr32(r)[8]) ^ uint(b[122])
        ptr32(r)[9] = uint(ptr32(r)[9]) ^ uint(b[123])
        r += 40
    # rho and pi: B[y, 2x + 3y] = A[x, y] rotated by ROT[x][y], along the walk
    b[50] = b[0]
    b[51] = b[1]
    r = base + 696
    while r < base + 792:
        b[ptr8(r)[2]] = (uint(b[ptr8(r)[0]]) << uint(ptr8(r)[3])) | (uint(b[ptr8(r)[1]]) >> (32 - uint(ptr8(r)[3])))
        b[ptr8(r)[2] + 1] = (uint(b[ptr8(r)[1]]) << uint(ptr8(r)[3])) | (uint(b[ptr8(r)[0]]) >> (32 - uint(ptr8(r)[3])))
        r += 4
    # chi, row by row: A[x, y] = B[x, y] ^ (~B[x + 1, y] & B[x + 2, y]); iota
    r = base
    while r < base + 200:
        ptr32(r)[0] = uint(ptr32(r)[50]) ^ (~uint(ptr32(r)[52]) & uint(ptr32(r)[54]))
        ptr32(r)[1] = uint(ptr32(r)[51]) ^ (~uint(ptr32(r)[53]) & uint(ptr32(r)[55]))
        ptr32(r)[2] = uint(ptr32(r)[52]) ^ (~uint(ptr32(r)[54]) & uint(ptr32(r)[56]))
        ptr32(r)[3] = uint(ptr32(r)[53]) ^ (~uint(ptr32(r)[55]) & uint(ptr32(r)[57]))
        ptr32(r)[4] = uint(ptr32(r)[54]) ^ (~uint(ptr32(r)[56]) & uint(ptr32(r)[58]))
        ptr32(r)[5] = uint(ptr32(r)[55]) ^ (~uint(ptr32(r)[57]) & uint(ptr32(r)[59]))
        ptr32(r)[6] = uint(ptr32(r)[56]) ^ (~uint(ptr32(r)[58]) & uint(ptr32(r)[50]))
        ptr32(r)[7] = uint(ptr32(r)[57]) ^ (~uint(ptr32(r)[59]) & uint(ptr32(r)[51]))
        ptr32(r)[8] = uint(ptr32(r)[58]) ^ (~uint(ptr32(r)[50]) & uint(ptr32(r)[52]))
        ptr32(r)[9] = uint(ptr32(r)[59]) ^ (~uint(ptr32(r)[51]) & uint(ptr32(r)[53]))
        r += 40
    b[0] = uint(b[0]) ^ uint(b[124])
    b[1] = uint(b[1]) ^ uint(b[125])


@micropython.viper
def permute(state):
    r = 0
    while r < 24:
        _round(state, r)
        r += 1


@micropython.viper
def xor_into(state, data, count: int):
    s = ptr8(state)
    d = ptr8(data)
    i = 0
    while i < count:
        s[i] = s[i] ^ d[i]
        i += 1
