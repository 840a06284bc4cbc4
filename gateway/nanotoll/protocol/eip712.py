"""EIP-712 hashing for the nanotoll domain: vouchers, receipts, error receipts, catalogs
and policies.

Everything here is pure hashing; keys and signatures live in ``signing``.
"""

from __future__ import annotations

from .keccak import keccak256

DOMAIN_NAME = "nanotoll"
DOMAIN_VERSION = "1"

DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
VOUCHER_TYPE = "Voucher(uint32 channelId,uint64 cumulativeAmount)"
RECEIPT_TYPE = (
    "Receipt(uint32 channelId,uint64 cumulativeAmount,bytes32 requestHash,bytes32 dataHash)"
)
ERROR_TYPE = "ErrorReceipt(uint32 channelId,bytes32 requestHash,uint16 code,bytes32 detailHash)"
CATALOG_TYPE = "Catalog(uint64 seq,uint64 validFrom,uint64 validUntil,bytes32 productsHash)"
POLICY_TYPE = (
    "Policy(uint32 channelId,uint64 seq,uint64 deposit,uint64 budget,uint64 expiry,"
    "uint64 expiryMargin,uint64 maxUnitPrice,uint64 perHour,uint32 perMinute,"
    "bytes32 providersHash,bytes32 capsHash)"
)

DOMAIN_TYPEHASH = keccak256(DOMAIN_TYPE.encode())
VOUCHER_TYPEHASH = keccak256(VOUCHER_TYPE.encode())
RECEIPT_TYPEHASH = keccak256(RECEIPT_TYPE.encode())
ERROR_TYPEHASH = keccak256(ERROR_TYPE.encode())
CATALOG_TYPEHASH = keccak256(CATALOG_TYPE.encode())
POLICY_TYPEHASH = keccak256(POLICY_TYPE.encode())

MAX_CHANNEL_ID = (1 << 32) - 1
MAX_AMOUNT = (1 << 64) - 1
MAX_ERROR_CODE = (1 << 16) - 1


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_bytes(address: str | bytes) -> bytes:
    if isinstance(address, bytes):
        raw = address
    else:
        text = address[2:] if address.startswith(("0x", "0X")) else address
        raw = bytes.fromhex(text)
    if len(raw) != 20:
        raise ValueError(f"an address has 20 bytes, got {len(raw)}")
    return raw


def _is_integer(value: object) -> bool:
    """An int and not a bool: ``true`` is no channel id or amount, though Python's
    ``True == 1``."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_channel_id(channel_id: int) -> int:
    if not _is_integer(channel_id) or not 1 <= channel_id <= MAX_CHANNEL_ID:
        raise ValueError(f"channel id must be in 1..{MAX_CHANNEL_ID}, got {channel_id!r}")
    return channel_id


def check_amount(amount: int) -> int:
    if not _is_integer(amount) or not 1 <= amount <= MAX_AMOUNT:
        raise ValueError(f"cumulative amount must be in 1..{MAX_AMOUNT}, got {amount!r}")
    return amount


def domain_separator(chain_id: int, verifying_contract: str | bytes) -> bytes:
    """keccak256 of the EIP-712 domain; compute once per (chain, contract) and keep it."""
    if not isinstance(chain_id, int) or chain_id <= 0:
        raise ValueError(f"chain id must be a positive integer, got {chain_id!r}")
    return keccak256(
        DOMAIN_TYPEHASH
        + keccak256(DOMAIN_NAME.encode())
        + keccak256(DOMAIN_VERSION.encode())
        + _word(chain_id)
        + bytes(12)
        + _address_bytes(verifying_contract)
    )


def typed_digest(separator: bytes, struct_hash: bytes) -> bytes:
    return keccak256(b"\x19\x01" + separator + struct_hash)


def voucher_struct_hash(channel_id: int, cumulative: int) -> bytes:
    check_channel_id(channel_id)
    check_amount(cumulative)
    return keccak256(VOUCHER_TYPEHASH + _word(channel_id) + _word(cumulative))


def voucher_digest(separator: bytes, channel_id: int, cumulative: int) -> bytes:
    return typed_digest(separator, voucher_struct_hash(channel_id, cumulative))


def receipt_digest(
    separator: bytes, channel_id: int, cumulative: int, request_hash: bytes, data_hash: bytes
) -> bytes:
    check_channel_id(channel_id)
    check_amount(cumulative)
    if len(request_hash) != 32 or len(data_hash) != 32:
        raise ValueError("request and data hashes have 32 bytes each")
    struct_hash = keccak256(
        RECEIPT_TYPEHASH + _word(channel_id) + _word(cumulative) + request_hash + data_hash
    )
    return typed_digest(separator, struct_hash)


def error_digest(
    separator: bytes, channel_id: int, request_hash: bytes, code: int, detail_hash: bytes
) -> bytes:
    """The digest of the provider's error receipt; ``channel_id`` 0 stands for a request
    that did not decode far enough to name its channel."""
    if not _is_integer(channel_id) or not 0 <= channel_id <= MAX_CHANNEL_ID:
        raise ValueError(f"error channel id must be in 0..{MAX_CHANNEL_ID}, got {channel_id!r}")
    if not _is_integer(code) or not 1 <= code <= MAX_ERROR_CODE:
        raise ValueError(f"error code must be in 1..{MAX_ERROR_CODE}, got {code!r}")
    if len(request_hash) != 32 or len(detail_hash) != 32:
        raise ValueError("request and detail hashes have 32 bytes each")
    struct_hash = keccak256(
        ERROR_TYPEHASH + _word(channel_id) + request_hash + _word(code) + detail_hash
    )
    return typed_digest(separator, struct_hash)


def catalog_digest(
    separator: bytes, seq: int, valid_from: int, valid_until: int, products_hash: bytes
) -> bytes:
    for name, value in (("seq", seq), ("valid_from", valid_from), ("valid_until", valid_until)):
        if not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT:
            raise ValueError(f"catalog {name} must be a uint64, got {value!r}")
    if len(products_hash) != 32:
        raise ValueError("products hash has 32 bytes")
    struct_hash = keccak256(
        CATALOG_TYPEHASH + _word(seq) + _word(valid_from) + _word(valid_until) + products_hash
    )
    return typed_digest(separator, struct_hash)


# Policy members in the order of POLICY_TYPE, with their largest values.
POLICY_UINTS = (
    ("channelId", MAX_CHANNEL_ID), ("seq", MAX_AMOUNT), ("deposit", MAX_AMOUNT),
    ("budget", MAX_AMOUNT), ("expiry", MAX_AMOUNT), ("expiryMargin", MAX_AMOUNT),
    ("maxUnitPrice", MAX_AMOUNT), ("perHour", MAX_AMOUNT), ("perMinute", MAX_CHANNEL_ID),
)


def policy_digest(separator: bytes, values: tuple[int, ...], providers_hash: bytes,
                  caps_hash: bytes) -> bytes:
    """The digest an owner signs: ``values`` are the nine integers of ``POLICY_UINTS``."""
    if len(values) != len(POLICY_UINTS):
        raise ValueError(f"a policy has {len(POLICY_UINTS)} integers, got {len(values)}")
    for (name, maximum), value in zip(POLICY_UINTS, values, strict=True):
        if not _is_integer(value) or not 0 <= value <= maximum:
            raise ValueError(f"policy {name} must be in 0..{maximum}, got {value!r}")
    if len(providers_hash) != 32 or len(caps_hash) != 32:
        raise ValueError("providers and caps hashes have 32 bytes each")
    struct_hash = keccak256(POLICY_TYPEHASH + b"".join(_word(v) for v in values)
                            + providers_hash + caps_hash)
    return typed_digest(separator, struct_hash)
