# nanotoll device: the owner-signed spending policy (docs/protocol.md section 3.5),
# delivered as a retained message on nt/1/{provider}/policy/{device}.
#
# A policy is applied only when it decodes strictly, its signature recovers to the
# owner recorded at provisioning, its channel id is this device's, its seq is above the
# last applied one and its limits agree (budget <= deposit, deposit >= what the device
# has already signed). Otherwise the policy in force stays and the reason is raised.
#
# Crash safety: the signed bytes themselves are the record. They go to policy.tmp
# (write, flush, close), which is renamed over policy.rec; a power cut leaves the old
# record or the new one. At boot the record is verified again before it is used, so a
# damaged one falls back to the provisioned policy, never to a mix of two.

import os
import cbor
import eip712
from keccak import keccak256
from policy import Policy
from wallet import Provider, hexaddr

VERSION = 1
MAX_POLICY_BYTES = 1024
_FIELDS = 14
_MAX_LIST = 16
_U64 = 0xFFFFFFFFFFFFFFFF


class PolicyRefused(ValueError):
    """A policy that is not applied. `reason` is one word (malformed, channel, seq,
    signature, deposit, limits); the message says more."""

    def __init__(self, message, reason="malformed"):
        super().__init__(message)
        self.reason = reason


def _uint(value, maximum, what):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise PolicyRefused("policy " + what + " out of range")
    return value


def _ascending(keys, what):
    if len(keys) > _MAX_LIST:
        raise PolicyRefused("policy " + what + ": too many entries")
    for i in range(1, len(keys)):
        if keys[i - 1] >= keys[i]:
            raise PolicyRefused("policy " + what + ": not unique and ascending")


def decode(data):
    """(integers, providers, provider caps, product caps, signature) from the wire bytes."""
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyRefused("policy too large")
    try:
        value = cbor.loads(data, MAX_POLICY_BYTES)
    except ValueError as exc:
        raise PolicyRefused("policy is not strict CBOR: %s" % exc)
    # `true` equals 1 in Python: a version is an integer, never a boolean
    if not isinstance(value, list) or len(value) != _FIELDS or isinstance(value[0], bool) or value[0] != VERSION:
        raise PolicyRefused("policy shape or version")
    uints = eip712.POLICY_UINTS
    ints = tuple(_uint(value[1 + i], uints[i][1], uints[i][0]) for i in range(len(uints)))
    # channelId, seq, deposit, expiry: at least 1 (docs/protocol.md 3.5)
    if not (ints[0] and ints[1] and ints[2] and ints[4]):
        raise PolicyRefused("policy channelId, seq, deposit and expiry must be at least 1")
    providers = value[10]
    pcaps = value[11]
    prod = value[12]
    signature = value[13]
    if not isinstance(providers, list) or not isinstance(pcaps, list) or not isinstance(prod, list):
        raise PolicyRefused("policy lists")
    for a in providers:
        if not isinstance(a, bytes) or len(a) != 20:
            raise PolicyRefused("policy providers: 20-byte addresses")
    for pair in pcaps:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], bytes) or len(pair[0]) != 20:
            raise PolicyRefused("policy provider caps: [address, cap] pairs")
        _uint(pair[1], _U64, "cap")
    for pair in prod:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
            raise PolicyRefused("policy product caps: [name, cap] pairs")
        if not 1 <= len(pair[0].encode()) <= 32:
            raise PolicyRefused("policy product caps: names of 1 to 32 bytes")
        _uint(pair[1], _U64, "cap")
    _ascending(providers, "providers")
    _ascending([p[0] for p in pcaps], "provider caps")
    _ascending([p[0].encode() for p in prod], "product caps")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise PolicyRefused("policy signature: 64 bytes")
    return ints, providers, pcaps, prod, signature


def providers_hash(providers):
    return keccak256(b"".join(providers)) if providers else bytes(32)


def caps_hash(pcaps, prod):
    if not pcaps and not prod:
        return bytes(32)
    parts = [bytes((len(pcaps),))]
    for address, cap in pcaps:
        parts.append(address + cap.to_bytes(8, "big"))
    for name, cap in prod:
        raw = name.encode()
        parts.append(bytes((len(raw),)) + raw + cap.to_bytes(8, "big"))
    return keccak256(b"".join(parts))


def digest(separator, decoded):
    ints, providers, pcaps, prod, _ = decoded
    return eip712.policy_digest(separator, ints, providers_hash(providers), caps_hash(pcaps, prod))


def to_policy(decoded):
    """The decoded fields as policy.Policy (whose constructor checks budget <= deposit)."""
    ints, providers, pcaps, prod, _ = decoded
    d = {
        "deposit": ints[2],
        "budget": ints[3],
        "expiry": ints[4],
        "expiry_margin": ints[5],
        "provider_caps": {hexaddr(a): c for a, c in pcaps},
        "product_caps": {n: c for n, c in prod},
    }
    # zero means "no such limit" on the wire; None in policy.Policy
    if ints[6]:
        d["max_unit_price"] = ints[6]
    if ints[7]:
        d["per_hour"] = ints[7]
    if ints[8]:
        d["per_minute"] = ints[8]
    if providers:
        d["providers"] = [hexaddr(a) for a in providers]
    return Policy(d)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _read(path):
    with open(path, "rb") as f:
        return f.read()


class OwnerPolicy:
    """The owner's signed policy for one channel, kept in `root`/policy.rec.

    After load(): `policy` is the applied Policy (None: none applied yet, the
    provisioned one holds) and `seq` its seq (0 when none)."""

    def __init__(self, root, owner, channel, separator):
        self.path = root + "/policy.rec"
        self.tmp = root + "/policy.tmp"
        self.owner = Provider(owner)  # 20-byte address; signatures are recovered
        self.owner_address = owner
        self.channel = channel
        self.separator = separator
        self.policy = None
        self.seq = 0
        self.raw = None  # the signed bytes in force
        self.problem = None  # why a record found at boot was not used

    def check(self, data, cumulative):
        """(seq, Policy) if `data` may replace the policy in force; PolicyRefused if not."""
        decoded = decode(data)
        ints = decoded[0]
        if ints[0] != self.channel:
            raise PolicyRefused("policy for channel %d, this device pays from %d" % (ints[0], self.channel), "channel")
        if ints[1] <= self.seq:
            raise PolicyRefused("policy seq %d is not above the applied %d" % (ints[1], self.seq), "seq")
        try:
            owners = self.owner.signed(digest(self.separator, decoded), decoded[4])
        except ValueError:  # r of no curve point, s out of range: nobody's signature
            owners = False
        if not owners:
            raise PolicyRefused("policy not signed by the owner", "signature")
        if ints[2] < cumulative:
            raise PolicyRefused("policy deposit %d is below the %d already signed" % (ints[2], cumulative), "deposit")
        try:
            policy = to_policy(decoded)
        except ValueError as exc:
            raise PolicyRefused(str(exc), "limits")
        return ints[1], policy

    def apply(self, data, cumulative):
        """Check `data` and make it the policy in force, durably; returns the Policy."""
        seq, policy = self.check(data, cumulative)
        f = open(self.tmp, "wb")
        try:
            f.write(data)
            f.flush()
        finally:
            f.close()
        try:
            os.rename(self.tmp, self.path)
        except OSError:
            # rename that does not replace (FAT): a cut in between leaves the complete
            # temp file, which load() verifies and takes
            os.remove(self.path)
            os.rename(self.tmp, self.path)
        self.seq = seq
        self.policy = policy
        self.raw = bytes(data)
        return policy

    def load(self, cumulative):
        """Resume the applied policy; a record that does not verify is set aside."""
        self.policy = None
        self.seq = 0
        self.raw = None
        self.problem = None
        for path in (self.path, self.tmp):
            if not _exists(path):
                continue
            try:
                data = _read(path)
                seq, policy = self.check(data, cumulative)
            except (PolicyRefused, OSError) as exc:
                self.problem = "%s: %s" % (path, exc)
                continue
            if path == self.tmp:
                os.rename(self.tmp, self.path)
            self.seq = seq
            self.policy = policy
            self.raw = data
            return policy
        return None
