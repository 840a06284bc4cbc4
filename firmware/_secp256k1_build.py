# Building secp256k1's comb tables: G's small one in the work buffer (when no flash
# table is in use) and the large ones written to flash (secp256k1.write_table).
#
# Kept out of secp256k1.py because it runs at most once a boot: with .mpy files on a
# file system every function's bytecode stays in the heap while its module is loaded,
# so secp256k1 imports this module for a build and drops it afterwards. It works in
# secp256k1's work buffer through the module object it is handed (`c`) and imports
# nothing of secp256k1's, so that the two do not import each other.

from hashlib import sha256
from micropython import const

# Slots of secp256k1.py's work buffer (32 bytes each) that building uses.
_X = const(2)
_Y = const(3)
_Z = const(4)
_ONE = const(13)
_BUILD = const(20)  # entries of a table in the work buffer: entry e in slots 20 + 2e
_BATCH = const(8)  # table entries made affine per inversion


def _make_affine(c, entries, zs):
    # Table entries hold Jacobian X, Y with their Z in zs: make them affine with
    # one inversion for all (Montgomery's trick).
    p = c.P
    get = c._get
    put = c._put
    count = len(entries)
    prefix = [0] * count
    acc = 1
    for i in range(count):
        acc = acc * zs[i] % p
        prefix[i] = acc
    inv = c.inverse(acc, p)
    for i in range(count - 1, -1, -1):
        z_inv = inv * prefix[i - 1] % p if i else inv
        inv = inv * zs[i] % p
        z_inv2 = z_inv * z_inv % p
        e = entries[i]
        put(e, get(e) * z_inv2 % p)
        put(e + 1, get(e + 1) * z_inv2 % p * z_inv % p)


def _single_entries(c, geometry, x, y, slots):
    # the entries with one bit set, affine, into slots[m] (x; y in the next):
    # entry m = row * blocks + block is 2^(span m) (x, y); one inversion for all
    teeth, blocks, span = geometry
    copy = c._copy
    c._put(_X, x)
    c._put(_Y, y)
    copy(_Z, _ONE)
    zs = []
    for m in range(teeth * blocks):
        if m:
            for _ in range(span):
                c._double()
        copy(slots[m], _X)
        copy(slots[m] + 1, _Y)
        zs.append(c._get(_Z))
    _make_affine(c, slots, zs)


def build_blocks(c, geometry, x, y, emit=None):
    """The comb table of (x, y). Without emit, all of it in c's work buffer from slot
    BUILD on; with emit, one block at a time in a work buffer of its own (the one-bit
    entries of every block after it), emit(block bytes) after each."""
    # entry(u) = entry(u without its top bit) + entry(top bit), kept Jacobian (Z in
    # z_of) until a batch of them is made affine at once; small batches keep the
    # integers alive at a time, and so the heap needed, low.
    teeth, blocks, span = geometry
    per_block = (1 << teeth) - 1
    singles = _BUILD + 2 * per_block  # with emit: where the one-bit entries wait
    work = c._work
    copy = c._copy
    try:
        if emit is not None:
            c._work = bytearray((singles + 2 * teeth * blocks) << 5)
            c._fe.W = c._work
            c._put(_ONE, 1)
            _single_entries(c, geometry, x, y, [singles + 2 * m for m in range(teeth * blocks)])
        else:
            _single_entries(c, geometry, x, y, [
                _BUILD + 2 * (per_block * (m % blocks) + (1 << (m // blocks)) - 1)
                for m in range(teeth * blocks)])
        for block in range(blocks):
            first = _BUILD if emit is not None else _BUILD + 2 * per_block * block
            if emit is not None:
                for row in range(teeth):
                    e = first + 2 * ((1 << row) - 1)
                    m = singles + 2 * (row * blocks + block)
                    copy(e, m)
                    copy(e + 1, m + 1)
            z_of = [1] * (per_block + 1)
            pending = []
            top = 1
            for pattern in range(2, per_block + 1):
                if pattern & (pattern - 1) == 0:
                    top = pattern
                    continue
                low = first + 2 * ((pattern ^ top) - 1)
                high = first + 2 * (top - 1)
                copy(_X, low)
                copy(_Y, low + 1)
                c._put(_Z, z_of[pattern ^ top])
                c._add_affine(high, high + 1)
                e = first + 2 * (pattern - 1)
                copy(e, _X)
                copy(e + 1, _Y)
                z_of[pattern] = c._get(_Z)
                pending.append(pattern)
                if len(pending) == _BATCH or pattern == per_block:
                    _make_affine(c, [first + 2 * (u - 1) for u in pending],
                                 [z_of[u] for u in pending])
                    for u in pending:
                        z_of[u] = 1
                    pending = []
            if emit is not None:
                emit(memoryview(c._work)[_BUILD << 5:singles << 5])
    finally:
        c._work = work
        c._fe.W = work


def write_table(c, path, geometry, x, y, head):
    """The comb table of (x, y) in geometry, written to path after its header head
    and followed by the SHA-256 of both, through a temporary file and a rename, so
    that a power cut leaves the old file or the new one."""
    import os

    tmp = path + ".tmp"
    digest = sha256()
    with open(tmp, "wb") as f:
        f.write(head)
        digest.update(head)

        def emit(entries):
            f.write(entries)
            digest.update(entries)

        build_blocks(c, geometry, x, y, emit)
        f.write(digest.digest())
    os.rename(tmp, path)
