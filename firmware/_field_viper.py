# Arithmetic modulo p = 2^256 - 2^32 - 977 (the secp256k1 field) in viper.
#
# Kept apart from secp256k1.py because a port without a native emitter refuses
# to compile any module that mentions micropython.viper; secp256k1.py then uses
# _field_plain.py, which has the same functions.
#
# Operands live in one work buffer W (bound by secp256k1.py), in 32-byte slots:
# slot s is bytes 32*s .. 32*s+31, a number below 2^256 as 16 little-endian
# limbs of 16 bits. Functions take slot numbers. Results are below 2^256 and
# congruent mod p, but not always below p (secp256k1.py reads them back as
# integers and reduces them there; its _is_zero() knows both forms of zero).
# Slots 0 and 1 hold the 512-bit product inside mul(), so no operand may be there.
#
# Why limbs of 16 bits: viper has no 32x32->64 multiply, and a 16x16 product
# plus two 16-bit addends still fits in 32 bits. Values that get shifted right
# are kept within 32 bits, so the code is exact on 64-bit viper (unix port)
# too; stores into ptr16 drop the upper bits.
#
# Viper keeps only the first three locals in registers (Thumb, Xtensa, x86-64)
# and arguments come first. In mul() the three arguments are therefore reused,
# once the pointers are taken, as the inner loop's row multiplier, running
# value and carry: that alone makes it about a third faster.
import micropython

W = None

# secp256k1.py inverts with Euclid on big integers: Fermat's 270 multiplications of
# this field cost more.
INVERT_IN_FIELD = False


@micropython.viper
def mul(dst: uint, a: uint, b: uint):
    base = uint(ptr8(W))
    r = ptr16(base + (dst << 5))
    x = ptr16(base + (a << 5))
    y = ptr16(base + (b << 5))
    t = ptr16(base)
    zero = ptr32(base)
    zero[0] = 0
    zero[1] = 0
    zero[2] = 0
    zero[3] = 0
    zero[4] = 0
    zero[5] = 0
    zero[6] = 0
    zero[7] = 0
    # Schoolbook product, one row per limb of x: t[i + j] += x[i] * y[j].
    # From here: dst = row multiplier, a = running value, b = carry.
    i = 0
    while i < 16:
        dst = uint(x[i])
        p = ptr16(base + (i << 1))
        a = dst * uint(y[0]) + uint(p[0]); p[0] = a; b = a >> 16
        a = dst * uint(y[1]) + uint(p[1]) + b; p[1] = a; b = a >> 16
        a = dst * uint(y[2]) + uint(p[2]) + b; p[2] = a; b = a >> 16
        a = dst * uint(y[3]) + uint(p[3]) + b; p[3] = a; b = a >> 16
        a = dst * uint(y[4]) + uint(p[4]) + b; p[4] = a; b = a >> 16
        a = dst * uint(y[5]) + uint(p[5]) + b; p[5] = a; b = a >> 16
        a = dst * uint(y[6]) + uint(p[6]) + b; p[6] = a; b = a >> 16
        a = dst * uint(y[7]) + uint(p[7]) + b; p[7] = a; b = a >> 16
        a = dst * uint(y[8]) + uint(p[8]) + b; p[8] = a; b = a >> 16
        a = dst * uint(y[9]) + uint(p[9]) + b; p[9] = a; b = a >> 16
        a = dst * uint(y[10]) + uint(p[10]) + b; p[10] = a; b = a >> 16
        a = dst * uint(y[11]) + uint(p[11]) + b; p[11] = a; b = a >> 16
        a = dst * uint(y[12]) + uint(p[12]) + b; p[12] = a; b = a >> 16
        a = dst * uint(y[13]) + uint(p[13]) + b; p[13] = a; b = a >> 16
        a = dst * uint(y[14]) + uint(p[14]) + b; p[14] = a; b = a >> 16
        a = dst * uint(y[15]) + uint(p[15]) + b; p[15] = a
        p[16] = a >> 16
        i += 1
    # Reduce: 2^256 = 2^32 + 977 (mod p), so the high half h folds in as
    # h * 977 at the same limbs plus h shifted up two limbs. Unrolled, so
    # every index is an immediate.
    a = uint(t[0]) + uint(t[16]) * 977; r[0] = a; b = a >> 16
    a = uint(t[1]) + uint(t[17]) * 977 + b; r[1] = a; b = a >> 16
    a = uint(t[2]) + uint(t[18]) * 977 + uint(t[16]) + b; r[2] = a; b = a >> 16
    a = uint(t[3]) + uint(t[19]) * 977 + uint(t[17]) + b; r[3] = a; b = a >> 16
    a = uint(t[4]) + uint(t[20]) * 977 + uint(t[18]) + b; r[4] = a; b = a >> 16
    a = uint(t[5]) + uint(t[21]) * 977 + uint(t[19]) + b; r[5] = a; b = a >> 16
    a = uint(t[6]) + uint(t[22]) * 977 + uint(t[20]) + b; r[6] = a; b = a >> 16
    a = uint(t[7]) + uint(t[23]) * 977 + uint(t[21]) + b; r[7] = a; b = a >> 16
    a = uint(t[8]) + uint(t[24]) * 977 + uint(t[22]) + b; r[8] = a; b = a >> 16
    a = uint(t[9]) + uint(t[25]) * 977 + uint(t[23]) + b; r[9] = a; b = a >> 16
    a = uint(t[10]) + uint(t[26]) * 977 + uint(t[24]) + b; r[10] = a; b = a >> 16
    a = uint(t[11]) + uint(t[27]) * 977 + uint(t[25]) + b; r[11] = a; b = a >> 16
    a = uint(t[12]) + uint(t[28]) * 977 + uint(t[26]) + b; r[12] = a; b = a >> 16
    a = uint(t[13]) + uint(t[29]) * 977 + uint(t[27]) + b; r[13] = a; b = a >> 16
    a = uint(t[14]) + uint(t[30]) * 977 + uint(t[28]) + b; r[14] = a; b = a >> 16
    a = uint(t[15]) + uint(t[31]) * 977 + uint(t[29]) + b; r[15] = a; b = a >> 16
    # What spilled past 2^256: the carry plus the two top limbs of h, which
    # landed on limbs 16 and 17. Fold it once more: e0 + e1 * 2^16.
    a = b + uint(t[30])
    dst = uint(t[31]) + (a >> 16)
    a = a & 0xFFFF
    b = uint(r[0]) + a * 977
    r[0] = b
    b = uint(r[1]) + dst * 977 + (b >> 16)
    r[1] = b
    b = uint(r[2]) + a + (b >> 16)
    r[2] = b
    b = uint(r[3]) + dst + (b >> 16)
    r[3] = b
    b = b >> 16
    i = 4
    while b and i < 16:
        a = uint(r[i]) + b
        r[i] = a
        b = a >> 16
        i += 1
    if b:
        # wrapped past 2^256 once more: what is left is tiny, add 2^32 + 977
        a = uint(r[0]) + 977
        r[0] = a
        a = uint(r[1]) + (a >> 16)
        r[1] = a
        a = uint(r[2]) + 1 + (a >> 16)
        r[2] = a
        b = a >> 16
        i = 3
        while b and i < 16:
            a = uint(r[i]) + b
            r[i] = a
            b = a >> 16
            i += 1


def square_n(slot, times):
    # slot = slot^(2^times), times >= 1
    for _ in range(times):
        mul(slot, slot, slot)


@micropython.viper
def sub(dst: uint, a: uint, b: uint):
    base = uint(ptr8(W))
    r = ptr16(base + (dst << 5))
    x = ptr16(base + (a << 5))
    y = ptr16(base + (b << 5))
    borrow = uint(0)
    i = 0
    while i < 16:
        v = uint(x[i]) + 0x10000 - uint(y[i]) - borrow
        r[i] = v
        borrow = uint(1) - (v >> 16)
        i += 1
    while borrow:
        # borrowed 2^256: take away 2^32 + 977 to land on a - b + p
        v = uint(r[0]) + 0x10000 - 977
        r[0] = v
        v = uint(r[1]) + 0xFFFF + (v >> 16)
        r[1] = v
        v = uint(r[2]) + 0xFFFE + (v >> 16)
        r[2] = v
        borrow = uint(1) - (v >> 16)
        i = 3
        while borrow and i < 16:
            v = uint(r[i]) + 0xFFFF
            r[i] = v
            borrow = uint(1) - (v >> 16)
            i += 1


@micropython.viper
def mul_small(dst: uint, a: uint, k: uint):
    # dst = a * k for a small k (below 2^15)
    base = uint(ptr8(W))
    r = ptr16(base + (dst << 5))
    x = ptr16(base + (a << 5))
    carry = uint(0)
    i = 0
    while i < 16:
        v = uint(x[i]) * k + carry
        r[i] = v
        carry = v >> 16
        i += 1
    while carry:
        v = uint(r[0]) + carry * 977
        r[0] = v
        v = uint(r[1]) + (v >> 16)
        r[1] = v
        v = uint(r[2]) + carry + (v >> 16)
        r[2] = v
        carry = v >> 16
        i = 3
        while carry and i < 16:
            v = uint(r[i]) + carry
            r[i] = v
            carry = v >> 16
            i += 1


@micropython.viper
def comb_digits(out: ptr8, k: ptr8, shape: uint):
    # The digits of a fixed-base comb (secp256k1.py's _Comb; shape = teeth |
    # blocks << 8 | span << 16) for the scalar k in little-endian bytes (long
    # enough for teeth * blocks * span bits): out[step * blocks + block] holds,
    # as bit row, bit (row * blocks * span + block * span + span - 1 - step) of k.
    teeth = shape & 0xFF
    blocks = (shape >> 8) & 0xFF
    span = shape >> 16
    columns = blocks * span
    step = uint(0)
    while step < span:
        block = uint(0)
        while block < blocks:
            pos = block * span + span - 1 - step
            digit = uint(0)
            row = uint(0)
            while row < teeth:
                digit |= ((uint(k[pos >> 3]) >> (pos & 7)) & 1) << row
                pos += columns
                row += 1
            out[step * blocks + block] = digit
            block += 1
        step += 1
