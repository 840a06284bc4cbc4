# The purchase log on the firmware: six purchases into a ring of four, each with a
# receipt signed by the provider (firmware secp256k1), then a power cut at every flash
# operation of one more append on littlefs (a RAM block device).
#
#   micropython purchase_log_mp.py WORKDIR
#
# Leaves WORKDIR/purchases.log for the CPython reader and prints one JSON line.

import json
import sys
import vfs

import eip712
import purchase_log as PL
import secp256k1
from keccak import keccak256

CHAIN = 31337
ESCROW = b"\x95\xc6\x2b\x7b\xca\x32\x87\x5b\xad\x11\x94\xeb\x8c\x6a\x15\x82\x77\x36\x6f\xd9"
PROVIDER_KEY = b"\x11" * 32
PROVIDER = secp256k1.address(PROVIDER_KEY)
CHANNEL = 9
SEP = eip712.domain_separator(CHAIN, ESCROW)


def purchase(log, n):
    cum = 1500 * n
    rhash = keccak256(b"request %d" % n)
    dhash = keccak256(b"data %d" % n)
    sig = secp256k1.sign(PROVIDER_KEY, eip712.receipt_digest(SEP, CHANNEL, cum, rhash, dhash))
    return log.append(1767225600 + n, PROVIDER, "weather", 1500, cum, rhash, dhash, sig)


root = sys.argv[1]
log = PL.PurchaseLog(root + "/purchases.log", 4)
log.load()
for n in range(1, 7):
    purchase(log, n)
kept = [r[0] for r in log.records()]
again = PL.PurchaseLog(root + "/purchases.log", 4)
again.load()


class PowerCut(BaseException):
    pass


class RamFlash:
    def __init__(self, copy=None):
        self.data = bytearray(copy.data) if copy else bytearray(64 * 512)
        self.ops = 0
        self.cut = 0
        self.dead = False

    def _op(self):
        if self.dead:
            return False
        self.ops += 1
        if self.cut and self.ops >= self.cut:
            self.dead = True
            raise PowerCut()
        return True

    def readblocks(self, block, buf, offset=0):
        a = block * 512 + offset
        buf[:] = self.data[a : a + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        if self._op():
            a = block * 512 + (offset or 0)
            self.data[a : a + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:
            return 64
        if op == 5:
            return 512
        if op == 6 and self._op():
            self.data[arg * 512 : (arg + 1) * 512] = b"\xff" * 512
        return 0


def mount(flash, fresh=False):
    try:
        vfs.umount("/flash")
    except OSError:
        pass
    if fresh:
        vfs.VfsLfs2.mkfs(flash)
    vfs.mount(vfs.VfsLfs2(flash), "/flash")


def prepared():
    flash = RamFlash()
    mount(flash, fresh=True)
    book = PL.PurchaseLog("/flash/purchases.log", 4)
    for n in range(1, 6):  # wrapped once: the next append overwrites a slot
        purchase(book, n)
    return flash, book


flash, book = prepared()
start = flash.ops
purchase(book, 6)
ops = flash.ops - start
outcomes = {}
faults = []
for cut in range(1, ops + 2):
    flash, book = prepared()
    flash.cut = flash.ops + cut
    try:
        purchase(book, 6)
    except BaseException:
        if not flash.dead:
            raise
    mount(RamFlash(copy=flash))
    after = PL.PurchaseLog("/flash/purchases.log", 4)
    seqs = [r[0] for r in after.records()]
    key = "new" if seqs == [2, 3, 4, 5] else "old" if seqs == [1, 2, 3, 4] else "other"
    outcomes[key] = outcomes.get(key, 0) + 1
    if key == "other" or after.torn:
        faults.append("cut %d: seqs %r, torn %d" % (cut, seqs, after.torn))
print(json.dumps({"kept": kept, "next_seq": again.next_seq, "flash_ops_per_append": ops,
                  "outcomes": outcomes, "faults": faults}))
