# Public-key recovery for secp256k1 (secp256k1.recover): the key that made a
# signature, for signers known only by their address (an owner's policy, a
# provider provisioned without its key, the device's own stored voucher).
#
# Kept out of secp256k1.py because a device recovers rarely: with .mpy files on a
# file system every function's bytecode stays in the heap while its module is
# loaded, so secp256k1 imports this module for a recovery and drops it afterwards.
# It works in secp256k1's work buffer through the module object it is handed (`c`)
# and imports nothing of secp256k1's, so that the two do not import each other.

from micropython import const

# Slots of secp256k1.py's work buffer (32 bytes each) that recovery uses.
_X = const(2)
_Y = const(3)
_T1 = const(5)
_T2 = const(6)
_T3 = const(7)
_T4 = const(8)
_AX = const(9)


def _sqrt_into_y(c, a):
    # Y = a^((p + 1) / 4), a square root of slot a when there is one. The
    # exponent's binary form is blocks of 223, 22 and 2 ones: libsecp256k1's
    # addition chain, 253 squarings and 13 multiplications (pow() on
    # MicroPython's big integers costs about three times as much).
    mul = c._mul
    copy = c._copy

    def square_n(slot, times):
        for _ in range(times):
            mul(slot, slot, slot)

    mul(_T1, a, a)
    mul(_T1, _T1, a)  # x2 = a^(2^2 - 1)
    mul(_T2, _T1, _T1)
    mul(_T2, _T2, a)  # x3
    copy(_X, _T2)
    square_n(_X, 3)
    mul(_X, _X, _T2)  # x6
    square_n(_X, 3)
    mul(_X, _X, _T2)  # x9
    square_n(_X, 2)
    mul(_X, _X, _T1)  # x11
    copy(_Y, _X)
    square_n(_Y, 11)
    mul(_T3, _Y, _X)  # x22
    copy(_X, _T3)
    square_n(_X, 22)
    mul(_T4, _X, _T3)  # x44
    copy(_X, _T4)
    square_n(_X, 44)
    mul(_X, _X, _T4)  # x88
    copy(_Y, _X)
    square_n(_Y, 88)
    mul(_Y, _Y, _X)  # x176
    square_n(_Y, 44)
    mul(_Y, _Y, _T4)  # x220
    square_n(_Y, 3)
    mul(_Y, _Y, _T2)  # x223
    square_n(_Y, 23)
    mul(_Y, _Y, _T3)
    square_n(_Y, 6)
    mul(_Y, _Y, _T1)
    square_n(_Y, 2)


def recover(c, digest, signature):
    """The 64-byte public key that made signature over digest."""
    if len(digest) != 32:
        raise ValueError("a digest is 32 bytes")
    r, s, parity = c.split_signature(signature)
    c.precompute()
    p = c.P
    n = c.N
    y2 = (r * r % p * r + 7) % p
    c._put(_AX, y2)
    _sqrt_into_y(c, _AX)
    y = c._get(_Y) % p
    if y * y % p != y2:
        raise c.InvalidSignature("r is not the x of a curve point")
    if y & 1 != parity:
        y = p - y
    z = int.from_bytes(digest, "big") % n
    r_inv = c.inverse(r, n)
    u1 = -z * r_inv % n
    u2 = s * r_inv % n
    point = c._u1g_plus_u2p(u1, u2, r, y)  # Q = u1 G + u2 R
    if point is None:
        raise c.InvalidSignature("signature recovers to no key")
    x, y = point
    return x.to_bytes(32, "big") + y.to_bytes(32, "big")
