"""secp256k1 signatures in the 64-byte EIP-2098 form, low-s only, with coincurve."""

from __future__ import annotations

from coincurve import PrivateKey, PublicKey
from eth_utils import keccak, to_checksum_address

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
HALF_N = SECP256K1_N // 2


class SignatureError(ValueError):
    """A signature that is malformed, high-s, or recovers to no key."""


def check_private_key(secret: bytes) -> bytes:
    if len(secret) != 32:
        raise ValueError(f"a private key has 32 bytes, got {len(secret)}")
    value = int.from_bytes(secret, "big")
    if not 1 <= value < SECP256K1_N:
        raise ValueError("private key must be in 1..n-1")
    return secret


def address_of_public_key(public: PublicKey) -> str:
    return to_checksum_address(keccak(public.format(compressed=False)[1:])[-20:])


def address_of(secret: bytes) -> str:
    return address_of_public_key(PrivateKey(check_private_key(secret)).public_key)


def sign_compact(secret: bytes, digest: bytes) -> bytes:
    """RFC 6979 deterministic ECDSA; returns r || (yParity << 255 | s)."""
    if len(digest) != 32:
        raise ValueError("digest has 32 bytes")
    rsv = PrivateKey(check_private_key(secret)).sign_recoverable(digest, hasher=None)
    r, s, v = rsv[:32], int.from_bytes(rsv[32:64], "big"), rsv[64]
    # libsecp256k1 already emits low-s; the check keeps that a stated invariant.
    if s > HALF_N:
        raise SignatureError("signer produced a high-s signature")
    return r + ((v << 255) | s).to_bytes(32, "big")


def split_compact(signature: bytes) -> tuple[int, int, int]:
    """(r, s, yParity) of a 64-byte EIP-2098 signature, rejecting out-of-range parts."""
    if len(signature) != 64:
        raise SignatureError(f"signature has 64 bytes, got {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    vs = int.from_bytes(signature[32:], "big")
    parity, s = vs >> 255, vs & ((1 << 255) - 1)
    if not 1 <= r < SECP256K1_N:
        raise SignatureError("signature r out of range")
    if not 1 <= s <= HALF_N:
        raise SignatureError("signature s is zero or high (only low-s is valid)")
    return r, s, parity


def recover_public_key(digest: bytes, signature: bytes) -> PublicKey:
    r, s, parity = split_compact(signature)
    rsv = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([parity])
    try:
        return PublicKey.from_signature_and_message(rsv, digest, hasher=None)
    except Exception as exc:  # coincurve raises a bare Exception on failure
        raise SignatureError(f"signature recovers to no key: {exc}") from exc


def recover_address(digest: bytes, signature: bytes) -> str:
    return address_of_public_key(recover_public_key(digest, signature))
