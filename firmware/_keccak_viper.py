# Keccak-f[1600] in viper, on 32-bit halves of each 64-bit lane.
#
# Kept apart from keccak.py because a port without a native emitter refuses to
# compile a module that mentions micropython.viper at all; keccak.py falls back
# to plain Python when this import fails.
#
# One buffer of 32-bit words (filled by keccak.py): lane (x, y) of the state at
# words 2 (x + 5 y) (low half) and 2 (x + 5 y) + 1 (high half), little-endian so
# that the state's first 200 bytes are its bytes; words 50..99 the lanes after rho
# and pi (B), 100..109 the column parities (C), 110..119 theta's D, 120..167 the
# round constants, low then high half. Values are kept within 32 bits where they
# are shifted right, so the code is exact on 64-bit viper (unix port) as well:
# stores into ptr32 drop the rest.
#
# Why a round is written out lane by lane (theta's XOR and chi row by row): every
# index is then a constant, which viper turns into one load or store with an
# immediate offset, instead of index arithmetic on locals that live in memory
# (all but three do). The round loop stays out of the round so that no branch in
# it spans the whole body (armv6m's branches reach 2 KB).
import micropython


@micropython.viper
def _round(b: ptr32, r: uint):
    # theta: column parities C, then D[x] = C[x - 1] ^ (C[x + 1] rotated by 1),
    # XORed into each row
    b[100] = uint(b[0]) ^ uint(b[10]) ^ uint(b[20]) ^ uint(b[30]) ^ uint(b[40])
    b[101] = uint(b[1]) ^ uint(b[11]) ^ uint(b[21]) ^ uint(b[31]) ^ uint(b[41])
    b[102] = uint(b[2]) ^ uint(b[12]) ^ uint(b[22]) ^ uint(b[32]) ^ uint(b[42])
    b[103] = uint(b[3]) ^ uint(b[13]) ^ uint(b[23]) ^ uint(b[33]) ^ uint(b[43])
    b[104] = uint(b[4]) ^ uint(b[14]) ^ uint(b[24]) ^ uint(b[34]) ^ uint(b[44])
    b[105] = uint(b[5]) ^ uint(b[15]) ^ uint(b[25]) ^ uint(b[35]) ^ uint(b[45])
    b[106] = uint(b[6]) ^ uint(b[16]) ^ uint(b[26]) ^ uint(b[36]) ^ uint(b[46])
    b[107] = uint(b[7]) ^ uint(b[17]) ^ uint(b[27]) ^ uint(b[37]) ^ uint(b[47])
    b[108] = uint(b[8]) ^ uint(b[18]) ^ uint(b[28]) ^ uint(b[38]) ^ uint(b[48])
    b[109] = uint(b[9]) ^ uint(b[19]) ^ uint(b[29]) ^ uint(b[39]) ^ uint(b[49])
    b[110] = uint(b[108]) ^ ((uint(b[102]) << 1) | (uint(b[103]) >> 31))
    b[111] = uint(b[109]) ^ ((uint(b[103]) << 1) | (uint(b[102]) >> 31))
    b[112] = uint(b[100]) ^ ((uint(b[104]) << 1) | (uint(b[105]) >> 31))
    b[113] = uint(b[101]) ^ ((uint(b[105]) << 1) | (uint(b[104]) >> 31))
    b[114] = uint(b[102]) ^ ((uint(b[106]) << 1) | (uint(b[107]) >> 31))
    b[115] = uint(b[103]) ^ ((uint(b[107]) << 1) | (uint(b[106]) >> 31))
    b[116] = uint(b[104]) ^ ((uint(b[108]) << 1) | (uint(b[109]) >> 31))
    b[117] = uint(b[105]) ^ ((uint(b[109]) << 1) | (uint(b[108]) >> 31))
    b[118] = uint(b[106]) ^ ((uint(b[100]) << 1) | (uint(b[101]) >> 31))
    b[119] = uint(b[107]) ^ ((uint(b[101]) << 1) | (uint(b[100]) >> 31))
    base = uint(b)
    y = uint(0)
    while y < uint(200):
        row = ptr32(base + y)
        row[0] = uint(row[0]) ^ uint(b[110])
        row[1] = uint(row[1]) ^ uint(b[111])
        row[2] = uint(row[2]) ^ uint(b[112])
        row[3] = uint(row[3]) ^ uint(b[113])
        row[4] = uint(row[4]) ^ uint(b[114])
        row[5] = uint(row[5]) ^ uint(b[115])
        row[6] = uint(row[6]) ^ uint(b[116])
        row[7] = uint(row[7]) ^ uint(b[117])
        row[8] = uint(row[8]) ^ uint(b[118])
        row[9] = uint(row[9]) ^ uint(b[119])
        y += 40
    # rho and pi: B[y, 2x + 3y] = A[x, y] rotated by ROT[x][y]
    b[50] = uint(b[0])
    b[51] = uint(b[1])
    b[70] = (uint(b[2]) << 1) | (uint(b[3]) >> 31)
    b[71] = (uint(b[3]) << 1) | (uint(b[2]) >> 31)
    b[90] = (uint(b[5]) << 30) | (uint(b[4]) >> 2)
    b[91] = (uint(b[4]) << 30) | (uint(b[5]) >> 2)
    b[60] = (uint(b[6]) << 28) | (uint(b[7]) >> 4)
    b[61] = (uint(b[7]) << 28) | (uint(b[6]) >> 4)
    b[80] = (uint(b[8]) << 27) | (uint(b[9]) >> 5)
    b[81] = (uint(b[9]) << 27) | (uint(b[8]) >> 5)
    b[82] = (uint(b[11]) << 4) | (uint(b[10]) >> 28)
    b[83] = (uint(b[10]) << 4) | (uint(b[11]) >> 28)
    b[52] = (uint(b[13]) << 12) | (uint(b[12]) >> 20)
    b[53] = (uint(b[12]) << 12) | (uint(b[13]) >> 20)
    b[72] = (uint(b[14]) << 6) | (uint(b[15]) >> 26)
    b[73] = (uint(b[15]) << 6) | (uint(b[14]) >> 26)
    b[92] = (uint(b[17]) << 23) | (uint(b[16]) >> 9)
    b[93] = (uint(b[16]) << 23) | (uint(b[17]) >> 9)
    b[62] = (uint(b[18]) << 20) | (uint(b[19]) >> 12)
    b[63] = (uint(b[19]) << 20) | (uint(b[18]) >> 12)
    b[64] = (uint(b[20]) << 3) | (uint(b[21]) >> 29)
    b[65] = (uint(b[21]) << 3) | (uint(b[20]) >> 29)
    b[84] = (uint(b[22]) << 10) | (uint(b[23]) >> 22)
    b[85] = (uint(b[23]) << 10) | (uint(b[22]) >> 22)
    b[54] = (uint(b[25]) << 11) | (uint(b[24]) >> 21)
    b[55] = (uint(b[24]) << 11) | (uint(b[25]) >> 21)
    b[74] = (uint(b[26]) << 25) | (uint(b[27]) >> 7)
    b[75] = (uint(b[27]) << 25) | (uint(b[26]) >> 7)
    b[94] = (uint(b[29]) << 7) | (uint(b[28]) >> 25)
    b[95] = (uint(b[28]) << 7) | (uint(b[29]) >> 25)
    b[96] = (uint(b[31]) << 9) | (uint(b[30]) >> 23)
    b[97] = (uint(b[30]) << 9) | (uint(b[31]) >> 23)
    b[66] = (uint(b[33]) << 13) | (uint(b[32]) >> 19)
    b[67] = (uint(b[32]) << 13) | (uint(b[33]) >> 19)
    b[86] = (uint(b[34]) << 15) | (uint(b[35]) >> 17)
    b[87] = (uint(b[35]) << 15) | (uint(b[34]) >> 17)
    b[56] = (uint(b[36]) << 21) | (uint(b[37]) >> 11)
    b[57] = (uint(b[37]) << 21) | (uint(b[36]) >> 11)
    b[76] = (uint(b[38]) << 8) | (uint(b[39]) >> 24)
    b[77] = (uint(b[39]) << 8) | (uint(b[38]) >> 24)
    b[78] = (uint(b[40]) << 18) | (uint(b[41]) >> 14)
    b[79] = (uint(b[41]) << 18) | (uint(b[40]) >> 14)
    b[98] = (uint(b[42]) << 2) | (uint(b[43]) >> 30)
    b[99] = (uint(b[43]) << 2) | (uint(b[42]) >> 30)
    b[68] = (uint(b[45]) << 29) | (uint(b[44]) >> 3)
    b[69] = (uint(b[44]) << 29) | (uint(b[45]) >> 3)
    b[88] = (uint(b[47]) << 24) | (uint(b[46]) >> 8)
    b[89] = (uint(b[46]) << 24) | (uint(b[47]) >> 8)
    b[58] = (uint(b[48]) << 14) | (uint(b[49]) >> 18)
    b[59] = (uint(b[49]) << 14) | (uint(b[48]) >> 18)
    # chi, row by row: A[x, y] = B[x, y] ^ (~B[x + 1, y] & B[x + 2, y]); iota
    y = uint(0)
    while y < uint(200):
        row = ptr32(base + y)
        src = ptr32(base + 200 + y)
        row[0] = uint(src[0]) ^ (~uint(src[2]) & uint(src[4]))
        row[1] = uint(src[1]) ^ (~uint(src[3]) & uint(src[5]))
        row[2] = uint(src[2]) ^ (~uint(src[4]) & uint(src[6]))
        row[3] = uint(src[3]) ^ (~uint(src[5]) & uint(src[7]))
        row[4] = uint(src[4]) ^ (~uint(src[6]) & uint(src[8]))
        row[5] = uint(src[5]) ^ (~uint(src[7]) & uint(src[9]))
        row[6] = uint(src[6]) ^ (~uint(src[8]) & uint(src[0]))
        row[7] = uint(src[7]) ^ (~uint(src[9]) & uint(src[1]))
        row[8] = uint(src[8]) ^ (~uint(src[0]) & uint(src[2]))
        row[9] = uint(src[9]) ^ (~uint(src[1]) & uint(src[3]))
        y += 40
    b[0] = uint(b[0]) ^ uint(b[120 + 2 * r])
    b[1] = uint(b[1]) ^ uint(b[121 + 2 * r])

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
