# EIP-712 hashing for the nanotoll domain (docs/protocol.md section 2): the
# domain separator, and the digests of Voucher, Receipt, ErrorReceipt, Catalog and Policy.
#
# The functions mirror gateway/nanotoll/protocol/eip712.py. Domain keeps the
# separator of one (chain, contract) and hashes vouchers into preallocated
# buffers, so signing a voucher allocates only the two 32-byte hashes.

from binascii import unhexlify
from micropython import const
from struct import pack_into

from keccak import keccak256

_MAX_CHANNEL_ID = const(0xFFFFFFFF)
_MAX_AMOUNT = const(0xFFFFFFFFFFFFFFFF)

# The struct types' hashes, in one tuple: each module-level name would be one more
# entry in the board's qstr pool for good.
_VOUCHER = const(0)
_RECEIPT = const(1)
_ERROR = const(2)
_CATALOG = const(3)
_POLICY = const(4)
_TYPEHASH = (
    keccak256(b"Voucher(uint32 channelId,uint64 cumulativeAmount)"),
    keccak256(b"Receipt(uint32 channelId,uint64 cumulativeAmount,bytes32 requestHash,"
              b"bytes32 dataHash)"),
    keccak256(b"ErrorReceipt(uint32 channelId,bytes32 requestHash,uint16 code,"
              b"bytes32 detailHash)"),
    keccak256(b"Catalog(uint64 seq,uint64 validFrom,uint64 validUntil,bytes32 productsHash)"),
    keccak256(
        b"Policy(uint32 channelId,uint64 seq,uint64 deposit,uint64 budget,uint64 expiry,"
        b"uint64 expiryMargin,uint64 maxUnitPrice,uint64 perHour,uint32 perMinute,"
        b"bytes32 providersHash,bytes32 capsHash)"
    ),
)


def _is_int(value):
    # bool is an int subclass; True must not pass for channel 1
    return isinstance(value, int) and not isinstance(value, bool)


def check_channel_id(channel_id):
    if not _is_int(channel_id) or not 0 < channel_id <= _MAX_CHANNEL_ID:
        raise ValueError("channel id must be an integer in 1..4294967295")
    return channel_id


def check_amount(amount):
    if not _is_int(amount) or not 0 < amount <= _MAX_AMOUNT:
        raise ValueError("cumulative amount must be an integer in 1..18446744073709551615")
    return amount


def _check_uint64(name, value):
    if not _is_int(value) or not 0 <= value <= _MAX_AMOUNT:
        raise ValueError("catalog " + name + " must be a uint64")


def _check_hash(name, value):
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise ValueError(name + " must be 32 bytes")


def address_bytes(address):
    """20 address bytes from bytes or a hex string with or without 0x."""
    if isinstance(address, str):
        text = address[2:] if address[:2] in ("0x", "0X") else address
        if len(text) != 40:
            raise ValueError("an address is 40 hex digits")
        address = unhexlify(text)
    if not isinstance(address, (bytes, bytearray)) or len(address) != 20:
        raise ValueError("an address is 20 bytes")
    return bytes(address)


def domain_separator(chain_id, verifying_contract):
    """keccak256 of the nanotoll EIP-712 domain; compute once per channel."""
    if not _is_int(chain_id) or chain_id <= 0 or chain_id >> 256:
        raise ValueError("chain id must be a positive uint256")
    # the domain's type, name and version hashes: needed once per domain
    return keccak256(
        keccak256(
            b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
        )
        + keccak256(b"nanotoll")
        + keccak256(b"1")
        + chain_id.to_bytes(32, "big")
        + bytes(12)
        + address_bytes(verifying_contract)
    )


def typed_digest(separator, struct_hash):
    typed = bytearray(66)
    typed[0] = 0x19
    typed[1] = 0x01
    typed[2:34] = separator
    typed[34:] = struct_hash
    return keccak256(typed)


def voucher_struct_hash(channel_id, cumulative):
    check_channel_id(channel_id)
    check_amount(cumulative)
    return keccak256(
        _TYPEHASH[_VOUCHER] + channel_id.to_bytes(32, "big") + cumulative.to_bytes(32, "big")
    )


def voucher_digest(separator, channel_id, cumulative):
    return typed_digest(separator, voucher_struct_hash(channel_id, cumulative))


# Receipt, ErrorReceipt and Catalog are a type hash and four 32-byte words: each is
# filled into one buffer, not concatenated a word at a time (a copy per word, and
# receipts and catalogs are hashed at a purchase's heap peak).


def receipt_digest(separator, channel_id, cumulative, request_hash, data_hash):
    check_channel_id(channel_id)
    check_amount(cumulative)
    _check_hash("request hash", request_hash)
    _check_hash("data hash", data_hash)
    struct = bytearray(160)
    struct[:32] = _TYPEHASH[_RECEIPT]
    pack_into(">I", struct, 60, channel_id)
    pack_into(">Q", struct, 88, cumulative)
    struct[96:128] = request_hash
    struct[128:] = data_hash
    return typed_digest(separator, keccak256(struct))


def error_digest(separator, channel_id, request_hash, code, detail_hash):
    # channel 0: the provider's answer to a request that named no channel
    if not _is_int(channel_id) or not 0 <= channel_id <= _MAX_CHANNEL_ID:
        raise ValueError("error channel id out of range")
    if not _is_int(code) or not 1 <= code <= 0xFFFF:
        raise ValueError("error code out of range")
    _check_hash("request hash", request_hash)
    _check_hash("detail hash", detail_hash)
    struct = bytearray(160)
    struct[:32] = _TYPEHASH[_ERROR]
    pack_into(">I", struct, 60, channel_id)
    struct[64:96] = request_hash
    pack_into(">H", struct, 126, code)
    struct[128:] = detail_hash
    return typed_digest(separator, keccak256(struct))


def catalog_digest(separator, seq, valid_from, valid_until, products_hash):
    _check_uint64("seq", seq)
    _check_uint64("valid_from", valid_from)
    _check_uint64("valid_until", valid_until)
    _check_hash("products hash", products_hash)
    struct = bytearray(160)
    struct[:32] = _TYPEHASH[_CATALOG]
    pack_into(">Q", struct, 56, seq)
    pack_into(">Q", struct, 88, valid_from)
    pack_into(">Q", struct, 120, valid_until)
    struct[128:] = products_hash
    return typed_digest(separator, keccak256(struct))


# Policy integers in the type's order: (name, largest value)
POLICY_UINTS = (
    ("channelId", _MAX_CHANNEL_ID),
    ("seq", _MAX_AMOUNT),
    ("deposit", _MAX_AMOUNT),
    ("budget", _MAX_AMOUNT),
    ("expiry", _MAX_AMOUNT),
    ("expiryMargin", _MAX_AMOUNT),
    ("maxUnitPrice", _MAX_AMOUNT),
    ("perHour", _MAX_AMOUNT),
    ("perMinute", _MAX_CHANNEL_ID),
)


def policy_digest(separator, values, providers_hash, caps_hash):
    """The digest the owner signs; values are the nine integers of POLICY_UINTS."""
    if len(values) != len(POLICY_UINTS):
        raise ValueError("a policy has 9 integers")
    parts = [_TYPEHASH[_POLICY]]
    for i in range(len(POLICY_UINTS)):
        value = values[i]
        if not _is_int(value) or not 0 <= value <= POLICY_UINTS[i][1]:
            raise ValueError("policy " + POLICY_UINTS[i][0] + " out of range")
        parts.append(value.to_bytes(32, "big"))
    _check_hash("providers hash", providers_hash)
    _check_hash("caps hash", caps_hash)
    parts.append(providers_hash)
    parts.append(caps_hash)
    return typed_digest(separator, keccak256(b"".join(parts)))


class Domain:
    """One (chain id, contract): the separator, computed once, and its digests."""

    def __init__(self, chain_id, verifying_contract):
        self.chain_id = chain_id
        self.verifying_contract = address_bytes(verifying_contract)
        self.separator = domain_separator(chain_id, verifying_contract)
        # typehash | uint256 channel | uint256 amount, and 0x1901 | separator | struct hash
        self._struct = bytearray(_TYPEHASH[_VOUCHER] + bytes(64))
        self._typed = bytearray(b"\x19\x01" + self.separator + bytes(32))

    def voucher_digest(self, channel_id, cumulative):
        check_channel_id(channel_id)
        check_amount(cumulative)
        struct = self._struct
        pack_into(">I", struct, 60, channel_id)
        pack_into(">Q", struct, 88, cumulative)
        self._typed[34:66] = keccak256(struct)
        return keccak256(self._typed)

    def receipt_digest(self, channel_id, cumulative, request_hash, data_hash):
        return receipt_digest(self.separator, channel_id, cumulative, request_hash, data_hash)

    def catalog_digest(self, seq, valid_from, valid_until, products_hash):
        return catalog_digest(self.separator, seq, valid_from, valid_until, products_hash)
