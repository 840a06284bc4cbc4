# nanotoll device: crash-safe channel state in ONE record with a checksum.
#
# Record on flash:  b"NTS2" | JSON body | sha256(both)
# (earlier firmware wrote b"NTS1" | body length, 2 bytes big-endian | JSON body |
# sha256(all three); such a record still loads. The length went because the body had to
# be formatted twice to write it first: once to size it, once to write it.)
#
# A write goes to a temp file (write, flush, close) and is renamed over the record:
# on littlefs and POSIX the rename is atomic, so a power cut leaves either the old or
# the new record. The agent writes the record BEFORE a voucher leaves the device.
#
# Boot: a record with a good checksum is resumed. A record that is present but does
# not verify marks the store corrupt: the agent refuses to sign until a verified
# resync replaces it. No record at all means a fresh (or wiped) device: it starts at
# zero and the gateway's STALE_VOUCHER answer fast-forwards it.

import os
import json
from binascii import hexlify, unhexlify
from hashlib import sha256
from micropython import const

_MAGIC = const(b"NTS2")
_MAGIC_V1 = const(b"NTS1")
_MAX_BODY = const(4096)
_MAX_RECORD = const(_MAX_BODY + 6 + 32)  # the largest either version of the record can be
_HISTORY = const(64)  # rate-limit entries kept: unix time and amount
# History times are kept in RAM as seconds since this epoch (2023-11-14): a unix time is
# past 2^30, a big int of 32 bytes on a 32-bit board, and 64 entries of them took 4 KB.
HISTORY_EPOCH = const(1700000000)
_HEX_CHUNK = const(32)  # pending bytes hexlified at a time


class State:
    """The channel's state as the device knows it.

    cumulative  highest cumulative amount ever signed (never goes down)
    acked       highest cumulative confirmed by a receipt or a verified resync
    spent       budget counted as spent: every unit a signed voucher exposes
    request_id  last request id used
    pending     bytes of the last request not yet answered (b"" when none)
    by_product  spent per product name
    history     [t, amount, t, amount, ...]: recent purchases for the rate limits, oldest
                first, t in seconds since HISTORY_EPOCH (unix times in the record). One
                flat list of small ints: a tuple an entry would be 0.75 K more at 64 entries
    seq         record write counter
    """

    def __init__(self, channel, history=None):
        self.channel = channel
        self.cumulative = 0
        self.acked = 0
        self.spent = 0
        self.request_id = 0
        self.pending = b""
        self.by_product = {}
        self.history = new_history() if history is None else history
        self.seq = 0

    @classmethod
    def from_json(cls, text):
        d = json.loads(text)
        if d.get("v") != 1:
            raise ValueError("record version")
        s = cls(d["ch"], new_history(d["hist"]))  # not a fresh list's room made first
        s.cumulative = d["cum"]
        s.acked = d["ack"]
        s.spent = d["spent"]
        s.request_id = d["rid"]
        s.pending = unhexlify(d["pend"])
        s.by_product = d["by"]
        s.seq = d["seq"]
        for v in (s.channel, s.cumulative, s.acked, s.spent, s.request_id, s.seq):
            if not isinstance(v, int) or v < 0:
                raise ValueError("record field")
        for v in s.by_product.values():
            if not isinstance(v, int) or v < 0:
                raise ValueError("record: spent per product")
        if s.acked > s.cumulative:
            raise ValueError("record: acked above cumulative")
        return s

    def copy(self):
        # Field by field: a JSON round trip would make ~400-byte strings mid-purchase.
        # The history list is shared, not copied (64 entries' room again): only
        # record_purchase() changes it, and the agent takes that back when the record
        # it was for is not written.
        s = State(self.channel, self.history)
        s.cumulative = self.cumulative
        s.acked = self.acked
        s.spent = self.spent
        s.request_id = self.request_id
        s.pending = self.pending
        s.by_product = dict(self.by_product)
        s.seq = self.seq
        return s


def _body_pieces(state):
    # The JSON body in small pieces: a body-sized string grown piece by piece is the
    # allocation that fails first on a fragmented heap, so none is ever built. A
    # generator rather than sink classes: class objects would stay in the heap.
    # Pieces are formatted as bytes, never as str: each new str is first looked up
    # among the interned names (every dynamic qstr pool, scanned one by one), which
    # made a str piece cost the board several times a bytes one.
    yield (
        b'{"v": 1, "ch": %d, "cum": %d, "ack": %d, "spent": %d, "rid": %d, "seq": %d, "pend": "'
        % (state.channel, state.cumulative, state.acked, state.spent, state.request_id, state.seq)
    )
    pending = state.pending
    for i in range(0, len(pending), _HEX_CHUNK):
        yield hexlify(pending[i : i + _HEX_CHUNK])
    yield b'", "by": {'
    sep = b""
    for name in state.by_product:
        yield b"%s%s: %d" % (sep, json.dumps(name).encode(), state.by_product[name])
        sep = b", "
    yield b'}, "hist": ['
    sep = b""
    history = state.history
    for i in range(max(0, len(history) - 2 * _HISTORY), len(history), 2):  # no slice copy
        yield b"%s[%d, %d]" % (sep, history[i] + HISTORY_EPOCH, history[i + 1])
        sep = b", "
    yield b"]}"


def record_purchase(history, now, amount):
    """Add a purchase of amount units at unix time now to history, in place: entries
    that left the hour go, and at most _HISTORY stay, as the record keeps.

    In place because a new list is one block of 512 bytes: on a fragmented heap the
    allocation a purchase failed on first. A list made by new_history() never grows
    past its room, so this allocates nothing. Undo with forget_last_purchase()."""
    at = now - HISTORY_EPOCH
    first = 0
    end = len(history)
    while first < end and at - history[first] >= 3600:
        first += 2  # appended in time order: the hour's entries are a suffix
    n = (end - first) // 2
    if n >= _HISTORY:
        # The oldest entries fold into the next one, so their units stay counted until
        # that later entry leaves the hour (a rate limit counted late, never early) and
        # a device buying hundreds of times an hour keeps a fixed-size list.
        into = first + 2 * (n - _HISTORY + 1)
        folded = 0
        for i in range(first + 1, into + 2, 2):
            folded += history[i]
        history[into + 1] = folded
        first = into
    if first:
        del history[:first]  # a slice deleted in place: the list keeps its room
    history.append(at)
    history.append(amount)


def forget_last_purchase(history):
    """Take back the purchase record_purchase() added last (its record write failed).
    Entries it dropped or folded stay so: they were out of the hour or still counted."""
    del history[-2:]


def new_history(pairs=()):
    """A history list with room for _HISTORY entries, holding pairs [(unix time, amount),
    ...]: it never needs to grow (a grown list is a new block twice the size)."""
    if len(pairs) > _HISTORY:
        raise ValueError("record: history of %d entries" % len(pairs))
    history = [0] * (2 * _HISTORY)
    for i in range(len(pairs)):
        t, amount = pairs[i]
        if not isinstance(t, int) or not isinstance(amount, int) or amount < 0:
            raise ValueError("record: history entry")
        history[2 * i] = t - HISTORY_EPOCH
        history[2 * i + 1] = amount
    del history[2 * len(pairs) :]
    return history


def decode_record(raw):
    """The State in raw, or ValueError when the bytes do not verify."""
    if len(raw) > _MAX_RECORD:
        raise ValueError("record too large")
    if len(raw) >= 4 + 32 and raw[:4] == _MAGIC:
        start = 4
    elif len(raw) >= 6 + 32 and raw[:4] == _MAGIC_V1:
        start = 6
        if len(raw) != 6 + (raw[4] << 8 | raw[5]) + 32:
            raise ValueError("bad record length")
    else:
        raise ValueError("bad record header")
    end = len(raw) - 32
    view = memoryview(raw)
    if sha256(view[:end]).digest() != raw[end:]:
        raise ValueError("bad record checksum")
    return State.from_json(raw[start:end].decode())


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _read(path):
    with open(path, "rb") as f:
        # The size first: a larger file is refused, not read whole. (read(n) would
        # allocate n bytes, whatever the file's size.)
        if f.seek(0, 2) > _MAX_RECORD:
            raise ValueError("record too large")
        f.seek(0)
        return f.read()


class Store:
    """The state record of one channel under directory `root`.

    After load(): `state` is the resumed (or fresh) State; `corrupt` is a reason string
    when a record exists but does not verify (then `state` is None).
    """

    def __init__(self, root, channel, name="state"):
        self.root = root
        self.channel = channel
        self.path = root + "/" + name + ".rec"
        self.tmp = root + "/" + name + ".tmp"
        self.state = None
        self.corrupt = None
        self.writes = 0

    def load(self):
        self.state = None
        self.corrupt = None
        if _exists(self.path):
            try:
                state = decode_record(_read(self.path))
            except (ValueError, KeyError, TypeError, OSError) as exc:
                self.corrupt = str(exc) or type(exc).__name__
                return None
        elif _exists(self.tmp):
            # Cut between removing the old record and the rename (non-atomic file
            # systems): a complete temp record is the newest state; a torn one was
            # never acted on, since nothing is sent before the rename.
            try:
                state = decode_record(_read(self.tmp))
                os.rename(self.tmp, self.path)
            except (ValueError, KeyError, TypeError) as exc:
                state = State(self.channel)
        else:
            state = State(self.channel)
        if state.channel != self.channel:
            # The device was provisioned with another channel: start it from zero.
            state = State(self.channel)
        self.state = state
        return state

    def save(self, state):
        """Write `state` durably; when this returns the record on flash is `state`."""
        state.seq += 1
        # the file first: its object is the largest allocation of a purchase's record
        # write, and a hole that fits it is more likely before the smaller ones
        f = open(self.tmp, "wb")
        h = sha256(_MAGIC)
        size = 0
        try:
            f.write(_MAGIC)
            for piece in _body_pieces(state):
                size += len(piece)
                if size > _MAX_BODY:
                    # the temp record stays without its checksum: load() ignores it
                    raise ValueError("state record too large")
                f.write(piece)
                h.update(piece)
            f.write(h.digest())
            f.flush()
        finally:
            f.close()
        try:
            os.rename(self.tmp, self.path)
        except OSError:
            # File systems whose rename does not replace (FAT): remove, then rename.
            # A cut in between leaves only the complete temp record; load() takes it.
            os.remove(self.path)
            os.rename(self.tmp, self.path)
        self.state = state
        self.corrupt = None
        self.writes += 1

    def replace_after_resync(self, state):
        """The only way out of a corrupt record: a state built from a verified resync."""
        self.save(state)
