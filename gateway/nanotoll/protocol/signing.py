"""secp256k1 signatures in the 64-byte EIP-2098 form, low-s only, with coincurve.

Addresses are 20 raw bytes here; the checksummed text form (EIP-55) is built on top of
them for people and for web3, never compared on the request path.
"""

from __future__ import annotations

from coincurve import PrivateKey, PublicKey

from .keccak import keccak256

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


def public_key_address(public: PublicKey) -> bytes:
    """The 20-byte address of a public key: the last 20 bytes of keccak of (x, y)."""
    return keccak256(public.format(compressed=False)[1:])[-20:]


def checksum_address(address: bytes) -> str:
    """EIP-55 text of a 20-byte address: a hex letter is upper case where the same nibble
    of keccak of the lower-case hex is 8 or more."""
    if len(address) != 20:
        raise ValueError(f"an address has 20 bytes, got {len(address)}")
    text = address.hex()
    mask = keccak256(text.encode("ascii")).hex()[:40]
    return "0x" + "".join(c.upper() if int(m, 16) >= 8 else c
                          for c, m in zip(text, mask, strict=True))


class Signer:
    """A private key, parsed once: building a coincurve key derives its public key, a
    scalar multiplication that a signer kept for many signatures pays only here."""

    __slots__ = ("_key",)

    def __init__(self, secret: bytes) -> None:
        self._key = PrivateKey(check_private_key(secret))

    @property
    def address(self) -> bytes:
        return public_key_address(self._key.public_key)

    @property
    def checksum_address(self) -> str:
        return checksum_address(self.address)

    def sign(self, digest: bytes) -> bytes:
        """RFC 6979 deterministic ECDSA; returns r || (yParity << 255 | s)."""
        if len(digest) != 32:
            raise ValueError("digest has 32 bytes")
        rsv = self._key.sign_recoverable(digest, hasher=None)
        s = int.from_bytes(rsv[32:64], "big")
        # libsecp256k1 already emits low-s; the check keeps that a stated invariant.
        if s > HALF_N:
            raise SignatureError("signer produced a high-s signature")
        return rsv[:32] + ((rsv[64] << 255) | s).to_bytes(32, "big")


def address_of(secret: bytes) -> str:
    """The checksummed address of a private key."""
    return Signer(secret).checksum_address


def sign_compact(secret: bytes, digest: bytes) -> bytes:
    """:meth:`Signer.sign` with a key used once."""
    return Signer(secret).sign(digest)


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
    _, s, parity = split_compact(signature)
    rsv = signature[:32] + s.to_bytes(32, "big") + bytes((parity,))
    try:
        return PublicKey.from_signature_and_message(rsv, digest, hasher=None)
    except Exception as exc:  # coincurve raises a bare Exception on failure
        raise SignatureError(f"signature recovers to no key: {exc}") from exc


def recover_signer(digest: bytes, signature: bytes) -> bytes:
    """The 20-byte address that signed ``digest``."""
    return public_key_address(recover_public_key(digest, signature))


def recover_address(digest: bytes, signature: bytes) -> str:
    """The checksummed address that signed ``digest``."""
    return checksum_address(recover_signer(digest, signature))
