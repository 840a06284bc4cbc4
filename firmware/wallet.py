# nanotoll device: the agent's one doorway to the crypto core.
#
# The crypto core (keccak, secp256k1, eip712, cbor, voucher) is another module set;
# every name the agent uses from it is bound here and nowhere else.

from keccak import keccak256
import secp256k1
import eip712
import voucher as _voucher
import cbor

dumps = cbor.dumps
loads = cbor.loads

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def new_secret(randbytes):
    """A private key in 1..n-1 from the board's random source (rejection sampling)."""
    while True:
        raw = randbytes(32)
        if 1 <= int.from_bytes(raw, "big") < N:
            return bytes(raw)


def address_of(secret):
    return secp256k1.address(secret)


def hexaddr(raw):
    from binascii import hexlify

    return hexlify(raw).decode()


class Wallet:
    """The device key bound to one EIP-712 domain (chain id, escrow contract)."""

    def __init__(self, secret, chain_id, escrow):
        self._signer = _voucher.VoucherSigner(secret, chain_id, escrow)
        self.separator = self._signer.separator
        self.address = self._signer.address  # 20 bytes

    def sign_voucher(self, channel, cumulative):
        """The 76 packed voucher bytes for (channel, cumulative)."""
        return self._signer.sign_voucher_packed(channel, cumulative)

    def own_voucher(self, raw):
        """(channel, cumulative) of a 76-byte voucher signed by this key in this domain;
        ValueError otherwise."""
        if len(raw) != 76:
            raise ValueError("a voucher has 76 bytes")
        return self._signer.check_voucher(raw)

    def receipt_signer(self, channel, cumulative, request_hash, data_hash, signature):
        digest = eip712.receipt_digest(self.separator, channel, cumulative, request_hash, data_hash)
        return secp256k1.recover_address(digest, signature)

    def catalog_signer(self, seq, valid_from, valid_until, products_hash, signature):
        digest = eip712.catalog_digest(self.separator, seq, valid_from, valid_until, products_hash)
        return secp256k1.recover_address(digest, signature)
