# Signed cumulative vouchers (docs/protocol.md section 2).
#
#   signer = VoucherSigner(secret, chain_id, contract)   # once per channel domain
#   wire = signer.sign_voucher(channel, cumulative)       # 78 bytes of CBOR
#
# Packed voucher, 76 bytes, big-endian:
#   channelId u32 | cumulativeAmount u64 | r (32) | yParity << 255 | s (32)
# On the wire it is one CBOR byte string: 0x58 0x4c and the 76 bytes.

from micropython import const
from struct import pack_into

import eip712
import secp256k1

_PACKED_LEN = const(76)
_WIRE_LEN = const(78)
_WIRE_HEAD = const(b"\x58\x4c")  # CBOR byte string, one-byte length 76


class VoucherError(ValueError):
    pass


def pack(channel_id, cumulative, signature):
    """The 76 packed bytes of a voucher."""
    eip712.check_channel_id(channel_id)
    eip712.check_amount(cumulative)
    secp256k1.split_signature(signature)
    return channel_id.to_bytes(4, "big") + cumulative.to_bytes(8, "big") + bytes(signature)


def unpack(raw):
    """(channel_id, cumulative, signature) of 76 packed or 78 wire bytes."""
    if len(raw) == _WIRE_LEN and raw[:2] == _WIRE_HEAD:
        raw = raw[2:]
    if len(raw) != _PACKED_LEN:
        raise VoucherError("a voucher is 76 bytes (78 as CBOR)")
    channel_id = int.from_bytes(raw[0:4], "big")
    cumulative = int.from_bytes(raw[4:12], "big")
    try:
        eip712.check_channel_id(channel_id)
        eip712.check_amount(cumulative)
        secp256k1.split_signature(raw[12:76])
    except ValueError as exc:
        raise VoucherError(str(exc))
    return channel_id, cumulative, bytes(raw[12:76])


class VoucherSigner:
    """A device key bound to one EIP-712 domain (chain id, escrow contract).

    The domain separator is computed here, once; each voucher then costs two
    keccak-256 and one signature. Raises ValueError (secp256k1.InvalidKey for
    the key) on bad arguments, never signs out-of-range values.
    """

    def __init__(self, secret, chain_id, verifying_contract):
        secp256k1.check_private_key(secret)
        self._secret = bytes(secret)
        self.domain = eip712.Domain(chain_id, verifying_contract)
        self.separator = self.domain.separator
        self._address = None
        self._wire = bytearray(_WIRE_LEN)
        self._wire[0:2] = _WIRE_HEAD

    @property
    def address(self):
        """The signer's 20-byte address (one k*G on first use)."""
        if self._address is None:
            self._address = secp256k1.address(self._secret)
        return self._address

    def digest(self, channel_id, cumulative):
        return self.domain.voucher_digest(channel_id, cumulative)

    def sign_voucher(self, channel_id, cumulative):
        """The voucher as it goes on the wire: 78 bytes, a CBOR byte string."""
        signature = secp256k1.sign(self._secret, self.domain.voucher_digest(channel_id, cumulative))
        wire = self._wire
        pack_into(">IQ", wire, 2, channel_id, cumulative)
        wire[14:78] = signature
        return bytes(wire)

    def sign_voucher_packed(self, channel_id, cumulative):
        """The same voucher as its 76 packed bytes (the CBOR byte string's content)."""
        return self.sign_voucher(channel_id, cumulative)[2:]

    def check_voucher(self, raw):
        """(channel_id, cumulative) of a voucher this key signed in this domain.

        raw is 76 packed or 78 wire bytes; VoucherError if malformed or signed
        by another key or for another domain.
        """
        channel_id, cumulative, signature = unpack(raw)
        try:
            signer = secp256k1.recover_address(self.digest(channel_id, cumulative), signature)
        except ValueError as exc:
            raise VoucherError(str(exc))
        if signer != self.address:
            raise VoucherError("voucher not signed by this key for this domain")
        return channel_id, cumulative

