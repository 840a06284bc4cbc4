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
#   write_table(path, public=None)      a comb table for G (or a key) in flash
#   use_table(path or bytes) -> status  sign with G's table from now on
#   open_table(path or bytes, public)   a key's table, for PublicKey
#   PublicKey(public, comb=None).verify(digest, signature) -> bool
#
# Speed: k*G uses a fixed-base comb (Lim-Lee), Jacobian coordinates with mixed
# additions, and field arithmetic in Thumb-2 assembler on ARMv7-M and later
# (_field_thumb2.py), else in viper (_field_viper.py), else in plain Python where
# the port has no native emitter (_field_plain.py). The comb's table is
# either the small one built in RAM on first use (5 teeth: 62 points, 3,968
# bytes, allocated at import so that it never has to be found in a fragmented
# heap; 25 doublings and up to 52 additions) or a large one in flash (8 teeth:
# 1,020 points, 65 KB; 7 doublings and 32 additions), read in place from a
# ROMFS file or entry by entry from a file, checked against its SHA-256 when it
# is opened. With a secret scalar every comb column costs an addition (a zero
# digit's goes to a copy that is dropped), and the inversions by Euclid in sign()
# are blinded: see "what is constant-time" in docs/boards.md. A verifying key can
# have such a table too: a signature is then
# checked with both combs sharing their doublings. Scalars mod n use MicroPython's
# big integers, inverted with extended Euclid (pow(x, -1, m) returns 0 on
# MicroPython); Z^-1 mod p too, except with the Thumb-2 field, where it is a power
# (Fermat) in the field. Recovery's u2*R uses the curve's endomorphism (GLV):
# two 128-bit halves in one run of 128 doublings instead of 256.
#
# Not re-entrant (one work buffer); nothing here awaits, so asyncio is fine.
#
# Building tables and recovering keys are rare: their code is in _secp256k1_build.py
# and _secp256k1_recover.py, imported for each use and dropped afterwards.

import gc
import sys
from hashlib import sha256
from micropython import const

from keccak import keccak256

# The field: Thumb-2 assembler on ARMv7-M and later (it refuses to load elsewhere),
# else viper where the port has the native emitter, else plain Python.
try:
    import _field_thumb2 as _fe
except (ImportError, SyntaxError, ValueError, NotImplementedError):
    try:
        import _field_viper as _fe
    except (ImportError, SyntaxError, ValueError, NotImplementedError):
        import _field_plain as _fe

P = const(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F)
N = const(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141)
HALF_N = const(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0)
_GX = const(0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798)
_GY = const(0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)

# Comb geometry (teeth, blocks, span): the scalar's teeth * blocks * span bit
# positions (>= 256) form `teeth` rows of blocks * span columns; each block has
# 2^teeth - 1 precomputed points, and k P costs span - 1 doublings and up to
# blocks * span mixed additions.
_RAM_COMB = const((5, 2, 26))  # built in RAM on first use
_FLASH_COMB = const((8, 4, 8))  # kept in flash

# A table in flash: a 16-byte magic naming the geometry, the base point (x || y,
# big-endian), the entries (block-major, pattern 1 first; x then y, 32 bytes
# little-endian each, as a work slot holds them) and the SHA-256 of all before.
_TABLE_MAGIC = const(b"nt-comb 8.4.8 v1")
_TABLE_ENTRIES = const(80)  # where the entries start
TABLE_BYTES = const(65392)  # 80 + 4 * 255 * 64 + 32

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
_EX = const(18)  # the comb entry being added (loaded from its table)
_EY = const(19)
_SLOTS = const(20)
_BUILD = const(20)  # entries of a table in the work buffer: entry e in slots 20 + 2e
_RAM_WORK = const(4608)  # (BUILD + 2 * 62) << 5: the work buffer with the RAM comb's table

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
_square_n = _fe.square_n

# The work buffer, with room for the RAM comb's table, allocated here at import,
# while the heap is still in one piece (later, 4,608 contiguous bytes may no
# longer be free); the table is built on first use, and the room given back once
# a flash table is in use.
_work = bytearray(_RAM_WORK)
_g_comb = None  # the comb k*G uses: a _Comb, or None until first use
_refused = None  # why signing is refused (a bad table that was not rebuilt)


class InvalidKey(ValueError):
    pass


class InvalidSignature(ValueError):
    pass


class TableError(ValueError):
    """A comb table in flash is missing its checksum, cut short, or for another point."""


def _get(slot):
    return int.from_bytes(_work[slot << 5:(slot + 1) << 5], "little")


def _put(slot, value):
    _work[slot << 5:(slot + 1) << 5] = value.to_bytes(32, "little")


# Copies and zero checks of slots are done in Python: on a board native code is
# copied into the heap, and these run a few times a point addition at most, so
# viper versions would save little time for the room they take.
_ZERO_FORMS = (bytes(32), P.to_bytes(32, "little"))  # the two forms of zero a slot holds


def _is_zero(slot):
    at = slot << 5
    if _work[at] not in (0, 0x2F):  # the low byte of 0 and of p: nearly every value stops here
        return False
    value = _work[at:at + 32]
    return value in _ZERO_FORMS


def _copy(dst, src):
    _work[dst << 5:(dst + 1) << 5] = _work[src << 5:(src + 1) << 5]


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


def _invert_z():
    # EX = 1 / Z = Z^(p - 2) (Fermat), by libsecp256k1's addition chain: 255
    # squarings and 15 multiplications in the field, the same steps for every Z
    # (so no blinding is needed), and on the Thumb-2 field several times cheaper
    # than Euclid on big integers. Uses T1..T4 and EY.
    mul = _mul
    square_n = _square_n
    mul(_T1, _Z, _Z)
    mul(_T1, _T1, _Z)  # x2 = z^(2^2 - 1)
    mul(_T2, _T1, _T1)
    mul(_T2, _T2, _Z)  # x3
    _copy(_EX, _T2)
    square_n(_EX, 3)
    mul(_EX, _EX, _T2)  # x6
    square_n(_EX, 3)
    mul(_EX, _EX, _T2)  # x9
    square_n(_EX, 2)
    mul(_EX, _EX, _T1)  # x11
    _copy(_EY, _EX)
    square_n(_EY, 11)
    mul(_T3, _EY, _EX)  # x22
    _copy(_EX, _T3)
    square_n(_EX, 22)
    mul(_T4, _EX, _T3)  # x44
    _copy(_EX, _T4)
    square_n(_EX, 44)
    mul(_EX, _EX, _T4)  # x88
    _copy(_EY, _EX)
    square_n(_EY, 88)
    mul(_EY, _EY, _EX)  # x176
    square_n(_EY, 44)
    mul(_EY, _EY, _T4)  # x220
    square_n(_EY, 3)
    mul(_EY, _EY, _T2)  # x223
    square_n(_EY, 23)
    mul(_EY, _EY, _T3)
    square_n(_EY, 5)
    mul(_EY, _EY, _Z)
    square_n(_EY, 3)
    mul(_EY, _EY, _T1)
    square_n(_EY, 2)
    mul(_EX, _EY, _Z)


def _affine(blind=1):
    # (x, y) of the running point as integers: X / Z^2, Y / Z^3. Where the field
    # is slow, one inversion by Euclid on big integers instead, of Z times blind
    # (so that its variable time does not follow Z when blind is secret).
    if not _fe.INVERT_IN_FIELD:
        z_inv = inverse(_get(_Z) * blind % P, P) * blind % P
        z_inv2 = z_inv * z_inv % P
        return _get(_X) * z_inv2 % P, _get(_Y) * z_inv2 % P * z_inv % P
    _invert_z()
    _mul(_T1, _EX, _EX)
    _mul(_T2, _X, _T1)
    _mul(_T1, _T1, _EX)
    _mul(_T3, _Y, _T1)
    return _get(_T2) % P, _get(_T3) % P


class _Comb:
    # A fixed-base comb for one point: its geometry and its table, in the work
    # buffer (table None), in a buffer (a ROMFS file's bytes in place) or in a
    # file read entry by entry.

    def __init__(self, geometry, table, start, source=None):
        self.teeth, self.blocks, self.span = geometry
        self.per_block = (1 << self.teeth) - 1
        self.table = table
        self.start = start  # the first entry: its slot, or its byte offset in table
        self.source = source  # what keeps the table open (a file), if anything
        self.in_place = not hasattr(table, "readinto")
        self.digits = bytearray(self.span * self.blocks)
        self.shape = self.teeth | self.blocks << 8 | self.span << 16

    def fetch(self, block, pattern):
        # the slot of entry (block, pattern)'s x (its y in the next one)
        e = block * self.per_block + pattern - 1
        if self.table is None:
            return self.start + 2 * e
        if self.in_place:
            # a slice of the table's memoryview: the 64 bytes are copied from flash
            # without an intermediate buffer (and need no word alignment there)
            at = self.start + (e << 6)
            _work[_EX << 5:(_EY + 1) << 5] = self.table[at:at + 64]
        else:
            self.table.seek(self.start + (e << 6))
            self.table.readinto(memoryview(_work)[_EX << 5:(_EY + 1) << 5])
        return _EX

    def split(self, k):
        # digit (step, block) = bit (row * columns + block * span + span - 1 - step)
        # of every row, at digits[step * blocks + block]: the order they are added
        _fe.comb_digits(self.digits, k.to_bytes(34, "little"), self.shape)


def _ready_work(size):
    # a work buffer of at least size bytes, bound to the field code
    global _work
    if _work is None or len(_work) < size:
        _work = None
        _work = bytearray(size)
    _fe.W = _work
    _put(_ONE, 1)


def precompute():
    """Ready the comb k*G uses: the flash table if one is in use, else the RAM one,
    built now (it is built on first use otherwise)."""
    global _g_comb
    if _refused is not None:
        raise TableError(_refused)
    if _g_comb is not None:
        _ready_work(_SLOTS << 5)
        return
    _ready_work(_RAM_WORK)
    import _secp256k1_build

    try:
        _secp256k1_build.build_blocks(sys.modules[__name__], _RAM_COMB, _GX, _GY)
    except BaseException:
        release()
        raise
    finally:
        _forget("_secp256k1_build")
    _g_comb = _Comb(_RAM_COMB, None, _BUILD)


def _forget(name):
    # Drop a module of rarely run code (_secp256k1_build, _secp256k1_recover) once
    # it has been used: with .mpy files on a file system its bytecode would
    # otherwise stay in the heap.
    sys.modules.pop(name, None)


def release():
    """Free the work buffer (4.6 KB with the RAM comb's table); the next use makes it
    again. A flash table in use stays in use."""
    global _work, _g_comb
    _work = None
    _fe.W = None
    if _g_comb is not None and _g_comb.table is None:
        _g_comb = None


def _header(x, y):
    return _TABLE_MAGIC + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def write_table(path, public=None):
    """Build the flash comb table for G, or for a 64-byte public key, and write it
    to path (through a temporary file and a rename, so that a power cut leaves
    the old file or the new one). About a thousand point additions: done once."""
    x, y = (_GX, _GY) if public is None else _point_of(public)
    _ready_work(_SLOTS << 5)
    import _secp256k1_build

    try:
        _secp256k1_build.write_table(sys.modules[__name__], path, _FLASH_COMB, x, y,
                                     _header(x, y))
    finally:
        _forget("_secp256k1_build")


def open_table(source, public=None):
    """The flash comb table at source (a path), checked: a _Comb for G (or for
    public), read in place when the file system gives its bytes (ROMFS), else from
    the file. source may also be the table's bytes (flash mapped in memory).
    TableError when it is cut short, corrupt or for another point; OSError when
    there is no such file."""
    x, y = (_GX, _GY) if public is None else _point_of(public)
    name = source if isinstance(source, str) else "in memory"
    f = open(source, "rb") if isinstance(source, str) else None
    try:
        try:
            # in memory, or a ROMFS file: the bytes where they lie in flash
            data = memoryview(source if f is None else f)
        except TypeError:
            data = None
        size = len(data) if data is not None else f.seek(0, 2)
        if size != TABLE_BYTES:
            raise TableError("comb table %s: %d bytes, not %d" % (name, size, TABLE_BYTES))
        digest = sha256()
        if data is not None:
            head = bytes(data[:_TABLE_ENTRIES])
            digest.update(data[:TABLE_BYTES - 32])
            stored = bytes(data[TABLE_BYTES - 32:])
        else:
            f.seek(0)
            head = f.read(_TABLE_ENTRIES)
            digest.update(head)
            view = memoryview(bytearray(512))
            left = TABLE_BYTES - 32 - _TABLE_ENTRIES
            while left:
                n = f.readinto(view[:min(left, 512)])
                if not n:
                    raise TableError("comb table %s: cut short" % name)
                digest.update(view[:n])
                left -= n
            stored = f.read(32)
        if digest.digest() != stored:
            raise TableError("comb table %s: checksum does not match" % name)
        if head != _header(x, y):
            raise TableError("comb table %s: for another point or layout" % name)
    except BaseException:
        if f is not None:
            f.close()
        raise
    return _Comb(_FLASH_COMB, data if data is not None else f, _TABLE_ENTRIES, f)


def use_table(path, rebuild=True):
    """Sign with the flash comb table for G at path (or in memory: open_table) from
    now on. A table that is missing, cut short or corrupt is built again at path
    when rebuild is true (and path is one); otherwise TableError, and signing is
    refused until a good table is given. Returns what happened, for the boot log:
    "ok" or "rebuilt (<why>)"."""
    global _g_comb, _refused, _work
    try:
        comb = open_table(path)
        status = "ok"
    except (OSError, TableError) as exc:
        if not rebuild or not isinstance(path, str):
            _g_comb = None
            _refused = "no good comb table: %s" % exc
            raise TableError(_refused)
        write_table(path)
        comb = open_table(path)
        status = "rebuilt (%s)" % exc
    _g_comb = comb
    _refused = None
    if _work is not None and len(_work) > _SLOTS << 5:
        # The RAM comb's room is no longer needed. The big buffer is collected before
        # the small one is made, so that the small one fills the lowest hole rather
        # than landing past the big one and leaving its room a hole between objects
        # that live as long as the agent.
        _work = None
        _fe.W = None
        gc.collect()
        _work = bytearray(_SLOTS << 5)
        _fe.W = _work
    return status


def _mul_combs(pairs, uniform=False):
    # (X, Y, Z) = sum of k C over pairs [(comb C, k)], 0 <= k < N, the combs of one
    # span sharing its doublings; False if the result is infinity. uniform (for a
    # secret k): a zero digit costs an addition too, into a copy that is dropped,
    # so that the time taken does not tell which digits of k are zero.
    for comb, k in pairs:
        comb.split(k)
    infinity = True
    for step in range(pairs[0][0].span):
        if not infinity:
            _double()
        for comb, _ in pairs:
            digits = comb.digits
            blocks = comb.blocks
            per_block = comb.per_block
            in_work = comb.table is None
            i = step * blocks
            for block in range(blocks):
                pattern = digits[i + block]
                if pattern:
                    if in_work:  # the RAM comb: no call to find a slot
                        e = comb.start + 2 * (block * per_block + pattern - 1)
                    else:
                        e = comb.fetch(block, pattern)
                    infinity = _add_digit(e, e + 1, infinity)
                elif uniform and not infinity:
                    _copy(_AX, _X)
                    _copy(_AY, _Y)
                    _copy(_AYN, _Z)
                    e = comb.fetch(block, 1)
                    _add_affine(e, e + 1)
                    _copy(_X, _AX)
                    _copy(_Y, _AY)
                    _copy(_Z, _AYN)
    return not infinity


def _mul_g(k, uniform=False):
    # (X, Y, Z) = k G for 0 < k < N, by the comb; False if the result is infinity.
    precompute()
    return _mul_combs(((_g_comb, k),), uniform)


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


def _u1g_plus(u1, second):
    # u1 G + the point second() leaves in (X, Y, Z) (it returns False for
    # infinity), as affine integers (x, y), or None for infinity; u1 G is made
    # affine first so that it is added in mixed form
    have_u1g = False
    if u1 and _mul_g(u1):
        x1, y1 = _affine()
        _put(_BX, x1)
        _put(_BY, y1)
        have_u1g = True
    finite = second()
    if have_u1g:
        if finite:
            finite = _add_affine(_BX, _BY)
        else:
            _load_affine(_BX, _BY)
            finite = True
    return _affine() if finite else None


def _u1g_plus_u2p(u1, u2, x, y):
    # u1 G + u2 (x, y), (x, y) given as integers
    return _u1g_plus(u1, lambda: _mul_point(u2, x, y))


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
    _mul_g(check_private_key(secret), True)
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
_ZERO_BYTE = const(b"\x00")
_ONE_BYTE = const(b"\x01")


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
    msg32 = z.to_bytes(32, "big")
    # a secret factor for the inversions by Euclid, whose steps depend on the number
    # inverted (k's mod n, and R's Z where the field does not invert): any value in
    # 1..n-1 gives the same signature
    blind = int.from_bytes(_hmac(secret, (msg32, b"blind")), "big") % N or 1
    for k in _nonces(bytes(secret), msg32):
        if not 0 < k < N:
            continue
        _mul_g(k, True)
        x, y = _affine(blind)
        r = x % N
        if r == 0:
            continue
        s = inverse(k * blind % N, N) * blind * (z + r * d) % N
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
    import _secp256k1_recover

    try:
        return _secp256k1_recover.recover(sys.modules[__name__], digest, signature)
    finally:
        _forget("_secp256k1_recover")


def _point_of(public):
    # (x, y) of a 64-byte public key x || y; InvalidKey unless a point of the curve
    if not isinstance(public, (bytes, bytearray)) or len(public) != 64:
        raise InvalidKey("a public key is 64 bytes, x || y")
    x = int.from_bytes(public[:32], "big")
    y = int.from_bytes(public[32:], "big")
    if x >= P or y >= P or (y * y - x * x * x - 7) % P:
        raise InvalidKey("public key is not a point of the curve")
    return x, y


def recover_address(digest, signature):
    return address_of_public_key(recover(digest, signature))


class PublicKey:
    """A known public key that signatures are checked against instead of recovering
    their signer: 64 bytes x || y (InvalidKey unless a curve point), and
    optionally its flash comb table (open_table(path, public))."""

    def __init__(self, public, comb=None):
        self.x, self.y = _point_of(public)
        self.public = bytes(public)
        self.comb = comb

    def verify(self, digest, signature):
        """True when (r, s, yParity) is this key's signature of digest (low s): R =
        (z G + r Q) / s has x = r and the parity of its y is yParity. The parity is
        checked although (r, s) alone binds the key to the digest: recovery (the
        gateway's, an auditor's) refuses a flipped bit, and the device must never
        keep a receipt that an offline check would refuse."""
        if len(digest) != 32:
            raise ValueError("a digest is 32 bytes")
        try:
            r, s, parity = split_signature(signature)
        except InvalidSignature:
            return False
        precompute()
        z = int.from_bytes(digest, "big") % N
        w = inverse(s, N)
        u1 = z * w % N
        u2 = r * w % N
        s = w = z = None  # not held through the multiplications: a purchase's heap peak
        comb = self.comb
        if comb is not None and comb.span == _g_comb.span:
            # both combs in one run of doublings; X / Z^2 = r checked as X - r Z^2 = 0
            # in the field: no inversion, and no big-integer product (r Z^2 took 96
            # bytes at a purchase's heap peak)
            if not _mul_combs(((_g_comb, u1), (comb, u2))):
                return False
            _put(_T1, r)
            _mul(_T2, _Z, _Z)
            _mul(_T2, _T2, _T1)
            _sub(_T2, _X, _T2)
            if not _is_zero(_T2):
                return False
            # y = Y / Z^3: one inversion, paid only by a signature whose x matched
            return _affine()[1] & 1 == parity
        if comb is None:
            point = _u1g_plus_u2p(u1, u2, self.x, self.y)
        else:
            point = _u1g_plus(u1, lambda: _mul_combs(((comb, u2),)))
        return point is not None and point[0] == r and point[1] & 1 == parity
