# secp256k1 for Ethereum on MicroPython: keys, addresses, ECDSA signatures with
# RFC 6979 nonces in the 64-byte EIP-2098 form, and public-key recovery.
#
#   generate_private_key(randbytes) -> bytes(32)
#   public_key(secret) -> bytes(64)             x || y, big-endian
#   address(secret) -> bytes(20)
#   sign(secret, digest) -> bytes(64)           r || (yParity << 255 | s), low s
#   recover(digest, signature) -> bytes(64)
#   recover_address(digest, signature) -> bytes(20)
#
# Signatures equal libsecp256k1's (and so coincurve's and eth_account's) byte
# for byte: the same RFC 6979 HMAC-SHA256 nonce with no extra data, the same
# low-s rule.
#
# Speed: k*G uses a fixed-base comb (Lim-Lee) with a 62-point affine table built
# in RAM on first use (3,968 bytes of table in a 4,544-byte work buffer, allocated
# at import so that it never has to be found in a fragmented heap), Jacobian
# coordinates with mixed additions, and field arithmetic in viper
# (_field_viper.py) or plain Python where the port has no native emitter
# (_field_plain.py). Scalars mod n and the two inversions per signature use
# MicroPython's big integers, with extended Euclid: pow(x, -1, m) returns 0 on
# MicroPython. Recovery's u2*R uses the curve's endomorphism (GLV): two 128-bit
# halves in one run of 128 doublings instead of 256 (~25 M instead of ~33 M
# instructions per recovery on the Cortex-M3).
#
# Not re-entrant (one work buffer); nothing here awaits, so asyncio is fine.

from hashlib import sha256
from micropython import const

from keccak import keccak256

try:
    import _field_viper as _fe
except (ImportError, SyntaxError, ValueError, NotImplementedError):
    import _field_plain as _fe

P = const(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F)
N = const(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141)
HALF_N = const(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0)
_GX = const(0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798)
_GY = const(0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)

# Comb geometry: the scalar's 260 bit positions (256 used) form TEETH rows of
# BLOCKS * SPAN columns; each block has 2^TEETH - 1 precomputed points, and k*G
# costs SPAN - 1 doublings and up to BLOCKS * SPAN mixed additions.
_TEETH = const(5)
_BLOCKS = const(2)
_SPAN = const(26)
_COLUMNS = const(52)  # BLOCKS * SPAN; TEETH * COLUMNS >= 256
_PER_BLOCK = const(31)  # 2^TEETH - 1
_SPAN_MASK = const(0x3FFFFFF)
_BATCH = const(8)  # table entries made affine per inversion while building

# Slots of the work buffer (32 bytes each); 0 and 1 belong to the field's mul().
_X = const(2)  # the running point, Jacobian
_Y = const(3)
_Z = const(4)
_T1 = const(5)
_T2 = const(6)
_T3 = const(7)
_T4 = const(8)
_AX = const(9)  # an affine point operand (the R of a recovery)
_AY = const(10)
_BX = const(11)  # another (u1*G during a recovery)
_BY = const(12)
_ONE = const(13)
_AYN = const(14)  # -y of the (AX, AY) operand, for signed-digit additions
_CX = const(15)  # a second affine operand (lambda(Q) during a verification)
_CY = const(16)
_CYN = const(17)
_TABLE = const(18)  # entry e: x in slot 18 + 2e, y in 19 + 2e
_SLOTS = const(142)  # 18 + 2 * BLOCKS * PER_BLOCK

# The curve's endomorphism: lambda (x, y) = (BETA x, y) is LAMBDA (x, y), so a
# scalar k splits as k1 + k2 LAMBDA (mod n) with |k1|, |k2| < 2^128, and k Q takes
# 128 shared doublings instead of 256. Constants and rounding of libsecp256k1:
# c1 = round(A1 k / n), c2 = round(MB1 k / n), k1 = k - c1 A1 - c2 A2,
# k2 = c1 MB1 - c2 A1 (A1 = b2, MB1 = -b1).
_BETA = const(0x7AE96A2B657C07106E64479EAC3434E99CF0497512F58995C1396C28719501EE)
_A1 = const(0x3086D221A7D46BCDE86C90E49284EB15)
_MB1 = const(0xE4437ED6010E88286F547FA90ABFE4C3)
_A2 = const(0x114CA50F7A8E2F3F657C1108D9D44CFD8)

_mul = _fe.mul
_sub = _fe.sub
_mul_small = _fe.mul_small
_copy = _fe.copy
_is_zero = _fe.is_zero

# The work buffer, allocated here at import, while the heap is still in one piece
# (later, 4,544 contiguous bytes may no longer be free); the comb table in it is
# built on first use.
_work = bytearray(_SLOTS << 5)
_built = False
_digits = bytearray(_SPAN * _BLOCKS)


class InvalidKey(ValueError):
    pass


class InvalidSignature(ValueError):
    pass


def _get(slot):
    return int.from_bytes(_work[slot << 5:(slot + 1) << 5], "little")


def _put(slot, value):
    _work[slot << 5:(slot + 1) << 5] = value.to_bytes(32, "little")


def inverse(a, m):
    """a^-1 mod m for a prime m and a not divisible by m (extended Euclid)."""
    x0, x1, r0, r1 = 0, 1, m, a % m
    while r1:
        q, r = divmod(r0, r1)
        r0, r1 = r1, r
        x0, x1 = x1, x0 - q * x1
    if r0 != 1:
        raise ValueError("not invertible")
    return x0 % m


def _double():
    # (X, Y, Z) = 2 (X, Y, Z). a = 0; Y is never 0 (no points of order 2).
    mul = _mul
    sub = _sub
    small = _mul_small
    mul(_T1, _Y, _Y)  # YY
    mul(_T2, _X, _T1)
    small(_T2, _T2, 4)  # S = 4 X YY
    mul(_T3, _X, _X)
    small(_T3, _T3, 3)  # M = 3 X^2
    mul(_Z, _Y, _Z)
    small(_Z, _Z, 2)  # Z3 = 2 Y Z
    mul(_X, _T3, _T3)
    sub(_X, _X, _T2)
    sub(_X, _X, _T2)  # X3 = M^2 - 2 S
    sub(_T2, _T2, _X)
    mul(_Y, _T3, _T2)
    mul(_T1, _T1, _T1)
    small(_T1, _T1, 8)
    sub(_Y, _Y, _T1)  # Y3 = M (S - X3) - 8 YY^2


def _add_affine(ax, ay):
    # (X, Y, Z) += (x, y) from slots ax, ay. False when the sum is infinity.
    mul = _mul
    sub = _sub
    mul(_T1, _Z, _Z)  # Z1^2
    mul(_T2, ax, _T1)  # U2 = x Z1^2
    mul(_T1, _T1, _Z)
    mul(_T1, ay, _T1)  # S2 = y Z1^3
    sub(_T2, _T2, _X)  # H = U2 - X1
    sub(_T1, _T1, _Y)  # R = S2 - Y1
    if _is_zero(_T2):
        # same x: either the same point (double it) or its negation
        if _is_zero(_T1):
            _double()
            return True
        return False
    mul(_Z, _Z, _T2)  # Z3 = Z1 H
    mul(_T3, _T2, _T2)  # HH
    mul(_T4, _T3, _T2)  # HHH
    mul(_T3, _X, _T3)  # V = X1 HH
    mul(_X, _T1, _T1)
    sub(_X, _X, _T4)
    sub(_X, _X, _T3)
    sub(_X, _X, _T3)  # X3 = R^2 - HHH - 2 V
    sub(_T3, _T3, _X)
    mul(_T3, _T3, _T1)
    mul(_T4, _T4, _Y)
    sub(_Y, _T3, _T4)  # Y3 = R (V - X3) - Y1 HHH
    return True


def _load_affine(ax, ay):
    _copy(_X, ax)
    _copy(_Y, ay)
    _copy(_Z, _ONE)


def _affine():
    # (x, y) of the running point as integers: the one field inversion.
    z_inv = inverse(_get(_Z), P)
    z_inv2 = z_inv * z_inv % P
    return _get(_X) * z_inv2 % P, _get(_Y) * z_inv2 % P * z_inv % P


def _entry(block, pattern):
    return _TABLE + 2 * (block * _PER_BLOCK + pattern - 1)


def _make_affine(entries, zs):
    # Table entries hold Jacobian X, Y with their Z in zs: make them affine with
    # one inversion for all (Montgomery's trick).
    count = len(entries)
    prefix = [0] * count
    acc = 1
    for i in range(count):
        acc = acc * zs[i] % P
        prefix[i] = acc
    inv = inverse(acc, P)
    for i in range(count - 1, -1, -1):
        z_inv = inv * prefix[i - 1] % P if i else inv
        inv = inv * zs[i] % P
        z_inv2 = z_inv * z_inv % P
        e = entries[i]
        _put(e, _get(e) * z_inv2 % P)
        _put(e + 1, _get(e + 1) * z_inv2 % P * z_inv % P)


def _build_table():
    global _work
    if _work is None:
        _work = bytearray(_SLOTS << 5)
    _fe.W = _work
    _put(_ONE, 1)
    _put(_X, _GX)
    _put(_Y, _GY)
    _copy(_Z, _ONE)
    # entries with one bit set: 2^(SPAN * (TEETH row * BLOCKS + block)) G
    entries = []
    zs = []
    for m in range(_TEETH * _BLOCKS):
        if m:
            for _ in range(_SPAN):
                _double()
        e = _entry(m % _BLOCKS, 1 << (m // _BLOCKS))
        _copy(e, _X)
        _copy(e + 1, _Y)
        entries.append(e)
        zs.append(_get(_Z))
    _make_affine(entries, zs)
    # the others: entry(u) = entry(u without its top bit) + entry(top bit), kept
    # Jacobian (Z in z_of) until a batch of them is made affine at once; small
    # batches keep the integers alive at a time, and so the heap needed, low
    for block in range(_BLOCKS):
        z_of = [1] * (_PER_BLOCK + 1)
        pending = []
        top = 1
        for pattern in range(2, _PER_BLOCK + 1):
            if pattern & (pattern - 1) == 0:
                top = pattern
                continue
            low = _entry(block, pattern ^ top)
            high = _entry(block, top)
            _copy(_X, low)
            _copy(_Y, low + 1)
            _put(_Z, z_of[pattern ^ top])
            _add_affine(high, high + 1)
            e = _entry(block, pattern)
            _copy(e, _X)
            _copy(e + 1, _Y)
            z_of[pattern] = _get(_Z)
            pending.append(pattern)
            if len(pending) == _BATCH or pattern == _PER_BLOCK:
                _make_affine([_entry(block, u) for u in pending], [z_of[u] for u in pending])
                for u in pending:
                    z_of[u] = 1
                pending = []


def precompute():
    """Build the comb table now (it is built on first use otherwise)."""
    global _built
    if not _built:
        try:
            _build_table()
        except BaseException:
            release()
            raise
        _built = True


def release():
    """Free the work buffer and table (4.5 KB); the next use rebuilds them."""
    global _work, _built
    _work = None
    _built = False
    _fe.W = None


def _mul_g(k):
    # (X, Y, Z) = k G for 0 < k < N, by the comb; False if the result is infinity.
    precompute()
    digits = _digits
    for i in range(_SPAN * _BLOCKS):
        digits[i] = 0
    # digit (t, block) collects bit (row * COLUMNS + block * SPAN + t) of every row
    for block in range(_BLOCKS):
        for row in range(_TEETH):
            bits = (k >> (row * _COLUMNS + block * _SPAN)) & _SPAN_MASK
            bit = 1 << row
            i = (_SPAN - 1) * _BLOCKS + block
            while bits:
                if bits & 1:
                    digits[i] |= bit
                bits >>= 1
                i -= _BLOCKS
    infinity = True
    i = 0
    for _ in range(_SPAN):
        if not infinity:
            _double()
        for block in range(_BLOCKS):
            pattern = digits[i]
            i += 1
            if pattern:
                e = _TABLE + 2 * (block * _PER_BLOCK + pattern - 1)
                if infinity:
                    _load_affine(e, e + 1)
                    infinity = False
                else:
                    infinity = not _add_affine(e, e + 1)
    return not infinity


def _add_digit(ax, ay, infinity):
    # running point += (ax, ay); the new "is infinity"
    if infinity:
        _load_affine(ax, ay)
        return False
    return not _add_affine(ax, ay)


def _mul_two(k1, k2):
    # (X, Y, Z) = k1 (AX, AY) + k2 (CX, CY) for 0 <= k1, k2 < 2^140; False if
    # infinity. Signed digits (NAF: digit i is bit i+1 of 3k minus bit i+1 of k,
    # about one in three non-zero, since -(x, y) = (x, p - y) is free), and both
    # scalars' digits share one run of doublings (Shamir's trick).
    _put(_AYN, P - _get(_AY) % P)
    _put(_CYN, P - _get(_CY) % P)
    t1 = (3 * k1).to_bytes(18, "big")
    s1 = k1.to_bytes(18, "big")
    t2 = (3 * k2).to_bytes(18, "big")
    s2 = k2.to_bytes(18, "big")
    infinity = True
    for position in range(143, 0, -1):
        index = 17 - (position >> 3)
        shift = position & 7
        if not infinity:
            _double()
        digit = ((t1[index] >> shift) & 1) - ((s1[index] >> shift) & 1)
        if digit:
            infinity = _add_digit(_AX, _AY if digit > 0 else _AYN, infinity)
        digit = ((t2[index] >> shift) & 1) - ((s2[index] >> shift) & 1)
        if digit:
            infinity = _add_digit(_CX, _CY if digit > 0 else _CYN, infinity)
    return not infinity


def _mul_point(k, x, y):
    # (X, Y, Z) = k (x, y) for 0 < k < N and a curve point (x, y) given as integers;
    # False if infinity. k = k1 + k2 LAMBDA with halves below 2^128, and
    # k (x, y) = k1 (x, y) + k2 (BETA x, y); a negative half takes -(x, y) = (x, p - y).
    c1 = (_A1 * k + HALF_N) // N
    c2 = (_MB1 * k + HALF_N) // N
    k1 = k - c1 * _A1 - c2 * _A2
    k2 = c1 * _MB1 - c2 * _A1
    _put(_AX, x)
    _put(_AY, y if k1 >= 0 else P - y)
    _put(_CX, x * _BETA % P)
    _put(_CY, y if k2 >= 0 else P - y)
    return _mul_two(abs(k1), abs(k2))


def _u1g_plus_u2p(u1, u2, x, y):
    # u1 G + u2 (x, y) as affine integers (x, y), or None for infinity; u1 G is made
    # affine first so that it is added in mixed form
    have_u1g = False
    if u1 and _mul_g(u1):
        x1, y1 = _affine()
        _put(_BX, x1)
        _put(_BY, y1)
        have_u1g = True
    finite = _mul_point(u2, x, y)
    if have_u1g:
        if finite:
            finite = _add_affine(_BX, _BY)
        else:
            _load_affine(_BX, _BY)
            finite = True
    return _affine() if finite else None


def _square_n(slot, times):
    for _ in range(times):
        _mul(slot, slot, slot)


def _sqrt_into_y(a):
    # Y = a^((p + 1) / 4), a square root of slot a when there is one. The
    # exponent's binary form is blocks of 223, 22 and 2 ones: libsecp256k1's
    # addition chain, 253 squarings and 13 multiplications (pow() on
    # MicroPython's big integers costs about three times as much).
    mul = _mul
    mul(_T1, a, a)
    mul(_T1, _T1, a)  # x2 = a^(2^2 - 1)
    mul(_T2, _T1, _T1)
    mul(_T2, _T2, a)  # x3
    _copy(_X, _T2)
    _square_n(_X, 3)
    mul(_X, _X, _T2)  # x6
    _square_n(_X, 3)
    mul(_X, _X, _T2)  # x9
    _square_n(_X, 2)
    mul(_X, _X, _T1)  # x11
    _copy(_Y, _X)
    _square_n(_Y, 11)
    mul(_T3, _Y, _X)  # x22
    _copy(_X, _T3)
    _square_n(_X, 22)
    mul(_T4, _X, _T3)  # x44
    _copy(_X, _T4)
    _square_n(_X, 44)
    mul(_X, _X, _T4)  # x88
    _copy(_Y, _X)
    _square_n(_Y, 88)
    mul(_Y, _Y, _X)  # x176
    _square_n(_Y, 44)
    mul(_Y, _Y, _T4)  # x220
    _square_n(_Y, 3)
    mul(_Y, _Y, _T2)  # x223
    _square_n(_Y, 23)
    mul(_Y, _Y, _T3)
    _square_n(_Y, 6)
    mul(_Y, _Y, _T1)
    _square_n(_Y, 2)


def check_private_key(secret):
    """The key as an integer; InvalidKey unless 32 bytes holding 1..n-1."""
    if not isinstance(secret, (bytes, bytearray)) or len(secret) != 32:
        raise InvalidKey("a private key is 32 bytes")
    d = int.from_bytes(secret, "big")
    if not 0 < d < N:
        raise InvalidKey("private key must be in 1..n-1")
    return d


def generate_private_key(randbytes):
    """A new key from randbytes(n) -> n random bytes (e.g. os.urandom)."""
    while True:
        raw = bytes(randbytes(32))
        if len(raw) == 32 and 0 < int.from_bytes(raw, "big") < N:
            return raw


def public_key(secret):
    _mul_g(check_private_key(secret))
    x, y = _affine()
    return x.to_bytes(32, "big") + y.to_bytes(32, "big")


def address_of_public_key(public):
    if len(public) != 64:
        raise ValueError("a public key is 64 bytes, x || y")
    return keccak256(public)[12:]


def address(secret):
    """The 20-byte Ethereum address of a private key."""
    return address_of_public_key(public_key(secret))


_ipad = bytearray(b"\x36" * 64)
_opad = bytearray(b"\x5c" * 64)
_ZERO_BYTE = b"\x00"
_ONE_BYTE = b"\x01"


def _hmac(key, parts):
    ipad = _ipad
    opad = _opad
    for i in range(32):
        b = key[i]
        ipad[i] = b ^ 0x36
        opad[i] = b ^ 0x5C
    inner = sha256(ipad)
    for part in parts:
        inner.update(part)
    outer = sha256(opad)
    outer.update(inner.digest())
    return outer.digest()


def _nonces(key32, msg32):
    # RFC 6979 section 3.2 with HMAC-SHA256, as libsecp256k1's default nonce
    # function: key || (digest mod n), no extra data; on retry K = HMAC(K, V || 0).
    v = b"\x01" * 32
    k = bytes(32)
    k = _hmac(k, (v, _ZERO_BYTE, key32, msg32))
    v = _hmac(k, (v,))
    k = _hmac(k, (v, _ONE_BYTE, key32, msg32))
    v = _hmac(k, (v,))
    while True:
        v = _hmac(k, (v,))
        yield int.from_bytes(v, "big")
        k = _hmac(k, (v, _ZERO_BYTE))
        v = _hmac(k, (v,))


def sign(secret, digest):
    """ECDSA over a 32-byte digest: r || (yParity << 255 | s), s <= n/2."""
    d = check_private_key(secret)
    if len(digest) != 32:
        raise ValueError("a digest is 32 bytes")
    z = int.from_bytes(digest, "big") % N
    for k in _nonces(bytes(secret), z.to_bytes(32, "big")):
        if not 0 < k < N:
            continue
        _mul_g(k)
        x, y = _affine()
        r = x % N
        if r == 0:
            continue
        s = inverse(k, N) * (z + r * d) % N
        if s == 0:
            continue
        parity = y & 1
        if s > HALF_N:
            s = N - s
            parity ^= 1
        if x >= N:
            # recovery id 2 or 3 (odds about 2^-127): not expressible in 64 bytes
            raise InvalidSignature("R.x >= n has no EIP-2098 form")
        return r.to_bytes(32, "big") + ((parity << 255) | s).to_bytes(32, "big")


def split_signature(signature):
    """(r, s, yParity) of a 64-byte compact signature; InvalidSignature if out of range."""
    if len(signature) != 64:
        raise InvalidSignature("a signature is 64 bytes")
    r = int.from_bytes(signature[:32], "big")
    vs = int.from_bytes(signature[32:], "big")
    parity = vs >> 255
    s = vs & ((1 << 255) - 1)
    if not 0 < r < N:
        raise InvalidSignature("r out of range")
    if not 0 < s <= HALF_N:
        raise InvalidSignature("s is zero or high (only low s is valid)")
    return r, s, parity


def recover(digest, signature):
    """The 64-byte public key that made signature over digest."""
    if len(digest) != 32:
        raise ValueError("a digest is 32 bytes")
    r, s, parity = split_signature(signature)
    precompute()
    y2 = (r * r % P * r + 7) % P
    _put(_AX, y2)
    _sqrt_into_y(_AX)
    y = _get(_Y) % P
    if y * y % P != y2:
        raise InvalidSignature("r is not the x of a curve point")
    if y & 1 != parity:
        y = P - y
    z = int.from_bytes(digest, "big") % N
    r_inv = inverse(r, N)
    u1 = -z * r_inv % N
    u2 = s * r_inv % N
    point = _u1g_plus_u2p(u1, u2, r, y)  # Q = u1 G + u2 R
    if point is None:
        raise InvalidSignature("signature recovers to no key")
    x, y = point
    return x.to_bytes(32, "big") + y.to_bytes(32, "big")


def recover_address(digest, signature):
    return address_of_public_key(recover(digest, signature))

