# nanotoll device: the purchase log, a bounded ring of fixed-size records on flash.
#
# One record per purchase whose receipt verified (docs/owner.md "The purchase log"):
#
#   seq u32 | time u32 | provider 20 | product length u8 | product 32 (zero padded)
#   | price u64 | cumulative u64 | request hash 32 | data hash 32 | receipt signature 64
#   | check 8 = sha256(everything before)[:8]                         (213 bytes)
#
# Record `seq` lives in slot seq % entries, written in place: the file never grows past
# `entries` records, and a power cut during a write can only tear that one slot, whose
# check then fails and which readers pass over. Every other record stays as it was.

import os
from hashlib import sha256
from micropython import const
from struct import pack, unpack_from

RECORD = const(213)
_BODY = const(205)
_NAME = const(32)


def encode(seq, when, provider, product, price, cumulative, request_hash, data_hash, signature):
    name = product.encode()
    if len(name) > _NAME or len(provider) != 20 or len(signature) != 64:
        raise ValueError("purchase record fields")
    body = (
        pack(">II", seq, when)
        + provider
        + bytes((len(name),))
        + name
        + bytes(_NAME - len(name))
        + pack(">QQ", price, cumulative)
        + request_hash
        + data_hash
        + signature
    )
    if len(body) != _BODY:
        raise ValueError("purchase record size")
    return body + sha256(body).digest()[:8]


def decode(raw):
    """The record's fields as a tuple, or None when its check fails (a torn write)."""
    if len(raw) != RECORD or sha256(raw[:_BODY]).digest()[:8] != raw[_BODY:]:
        return None
    seq, when = unpack_from(">II", raw, 0)
    n = raw[28]
    if n > _NAME:
        return None
    price, cumulative = unpack_from(">QQ", raw, 61)
    return (
        seq,
        when,
        bytes(raw[8:28]),
        bytes(raw[29 : 29 + n]).decode(),
        price,
        cumulative,
        bytes(raw[77:109]),
        bytes(raw[109:141]),
        bytes(raw[141:205]),
    )


class PurchaseLog:
    """The last `entries` purchases in file `path`."""

    def __init__(self, path, entries=64):
        self.path = path
        self.entries = entries
        self.next_seq = 0
        self.torn = 0  # slots whose check failed at the last scan

    def records(self):
        """Every intact record, oldest first."""
        out = []
        self.torn = 0
        try:
            f = open(self.path, "rb")
        except OSError:
            return out
        try:
            for _ in range(self.entries):
                raw = f.read(RECORD)
                if len(raw) < RECORD:
                    break
                rec = decode(raw)
                if rec is None:
                    self.torn += 1
                else:
                    out.append(rec)
        finally:
            f.close()
        out.sort(key=lambda r: r[0])
        return out

    def load(self):
        recs = self.records()
        self.next_seq = recs[-1][0] + 1 if recs else 0
        return len(recs)

    def _size(self):
        try:
            return os.stat(self.path)[6]
        except OSError:
            return -1

    def append(self, when, provider, product, price, cumulative, request_hash, data_hash, signature):
        seq = self.next_seq
        raw = encode(seq, when or 0, provider, product, price, cumulative, request_hash,
                     data_hash, signature)
        offset = (seq % self.entries) * RECORD
        size = self._size()
        f = open(self.path, "r+b" if size >= 0 else "wb")
        size = max(size, 0)
        try:
            if size >= offset:
                f.seek(offset)
            else:
                # a file shorter than the slot (lost tail): pad up to it
                f.seek(size)
                f.write(bytes(offset - size))
            f.write(raw)
            f.flush()
        finally:
            f.close()
        self.next_seq = seq + 1
        return seq
