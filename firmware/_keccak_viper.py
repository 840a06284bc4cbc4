# Keccak-f[1600] in viper, on 32-bit halves of each 64-bit lane.
#
# Kept apart from keccak.py because a port without a native emitter refuses to
# compile a module that mentions micropython.viper at all; keccak.py falls back
# to plain Python when this import fails.
#
# State: 200 bytes, lane (x, y) at bytes 8*(x + 5*y), little-endian, so word
# 2*lane is the low half and 2*lane + 1 the high half (every target is
# little-endian). Work buffer layout, filled by keccak.py:
#   words 0..9      column parities, then one row during chi
#   words 10..57    round constants, low then high half, 24 rounds
#   bytes 232..279  rho-pi walk: (rotation, destination lane) pairs
# Values are kept within 32 bits where they are shifted right, so the code is
# exact on 64-bit viper (unix port) as well: stores into ptr32 drop the rest.
import micropython

_RC_WORD = const(10)
_RHO_PI_BYTE = const(232)


@micropython.viper
def permute(state, work):
    s = ptr32(state)
    c = ptr32(work)
    rho_pi = ptr8(uint(c) + _RHO_PI_BYTE)
    state_addr = uint(s)
    rnd = 0
    while rnd < 24:
        # theta: column parities, then each column XORed with its neighbours'.
        w = 0
        while w < 10:
            c[w] = s[w] ^ s[w + 10] ^ s[w + 20] ^ s[w + 30] ^ s[w + 40]
            w += 1
        x = 0
        while x < 10:
            left = x - 2
            if left < 0:
                left = 8
            right = x + 2
            if right == 10:
                right = 0
            rl = uint(c[right])
            rh = uint(c[right + 1])
            dl = uint(c[left]) ^ ((rl << 1) | (rh >> 31))
            dh = uint(c[left + 1]) ^ ((rh << 1) | (rl >> 31))
            w = x
            while w < 50:
                s[w] = uint(s[w]) ^ dl
                s[w + 1] = uint(s[w + 1]) ^ dh
                w += 10
            x += 2
        # rho and pi together: walk the 24-lane cycle starting at lane 1.
        tl = uint(s[2])
        th = uint(s[3])
        i = 0
        while i < 48:
            n = rho_pi[i]
            j = uint(rho_pi[i + 1]) << 1
            bl = uint(s[j])
            bh = uint(s[j + 1])
            if n > 32:
                # rotating by 32 + m is swapping the halves, then rotating by m
                t = tl
                tl = th
                th = t
                n -= 32
            s[j] = (tl << n) | (th >> (32 - n))
            s[j + 1] = (th << n) | (tl >> (32 - n))
            tl = bl
            th = bh
            i += 2
        # chi, one row of five lanes at a time, through a copy of the row.
        y = 0
        while y < 50:
            row = ptr32(state_addr + (y << 2))
            w = 0
            while w < 10:
                c[w] = row[w]
                w += 1
            row[0] = c[0] ^ (~c[2] & c[4])
            row[1] = c[1] ^ (~c[3] & c[5])
            row[2] = c[2] ^ (~c[4] & c[6])
            row[3] = c[3] ^ (~c[5] & c[7])
            row[4] = c[4] ^ (~c[6] & c[8])
            row[5] = c[5] ^ (~c[7] & c[9])
            row[6] = c[6] ^ (~c[8] & c[0])
            row[7] = c[7] ^ (~c[9] & c[1])
            row[8] = c[8] ^ (~c[0] & c[2])
            row[9] = c[9] ^ (~c[1] & c[3])
            y += 10
        # iota
        s[0] = s[0] ^ c[_RC_WORD + 2 * rnd]
        s[1] = s[1] ^ c[_RC_WORD + 2 * rnd + 1]
        rnd += 1


@micropython.viper
def xor_into(state, data, count: int):
    s = ptr8(state)
    d = ptr8(data)
    i = 0
    while i < count:
        s[i] = s[i] ^ d[i]
        i += 1
