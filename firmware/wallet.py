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


def _unhex(text):
    from binascii import unhexlify

    return unhexlify(text[2:] if text[:2] in ("0x", "0X") else text)


class Provider:
    """The provider as provisioned: its 20-byte address and, when the config has it,
    its 64-byte public key (x || y), which must hash to that address: ValueError
    otherwise, so that a wrong key is refused at boot. With the key, catalogs and
    receipts are verified against it (with its comb table when there is one);
    without it, their signer is recovered and compared with the address."""

    def __init__(self, address, public=None, comb=None):
        if public is not None and (len(public) != 64 or keccak256(public)[12:] != address):
            raise ValueError("the provider's public key does not hash to its address")
        self.key = secp256k1.PublicKey(public, comb) if public is not None else None
        self.address = address

    def signed(self, digest, signature):
        if self.key is not None:
            return self.key.verify(digest, signature)
        return secp256k1.recover_address(digest, signature) == self.address


def use_tables(folder, provider, public_hex=None, log=print, rom="/rom/g.tbl"):
    """The Provider for a provisioned address and key, with the flash comb tables in
    use: G's from the ROMFS image when it carries one, else folder/g.tbl; the
    provider key's in folder/<address>.tbl. A table in the folder that is missing,
    cut short or corrupt is (re)built; a bad one in ROMFS is passed over for the
    folder's, or, without a folder, refused (TableError: nothing is signed); each
    step is logged. A provider key that does not hash to its address is refused
    (ValueError). Without a folder or ROMFS table, the RAM comb signs and the key is
    checked without a table of its own."""
    import os

    public = _unhex(public_hex) if public_hex else None
    Provider(provider, public)  # refuse a wrong key before any table work
    try:
        os.stat(rom)
        in_rom = True
    except OSError:
        in_rom = False
    if in_rom:
        try:
            log("crypto: comb table", rom, secp256k1.use_table(rom, rebuild=False))
        except secp256k1.TableError as exc:
            log("crypto: comb table in ROMFS refused:", exc)
            if not folder:
                raise
            in_rom = False
    if not folder:
        return Provider(provider, public)
    try:
        os.mkdir(folder)
    except OSError:
        pass  # there already
    if not in_rom:
        where = folder + "/g.tbl"
        log("crypto: comb table", where, secp256k1.use_table(where))
    comb = None
    if public is not None:
        where = folder + "/" + hexaddr(provider) + ".tbl"
        try:
            comb = secp256k1.open_table(where, public)
            status = "ok"
        except (OSError, ValueError) as exc:
            secp256k1.write_table(where, public)
            comb = secp256k1.open_table(where, public)
            status = "rebuilt (%s)" % exc
        log("crypto: provider key table", where, status)
    return Provider(provider, public, comb)


class Wallet:
    """The device key bound to one EIP-712 domain (chain id, escrow contract), and
    the provider whose catalogs and receipts it checks (a Provider, optional)."""

    def __init__(self, secret, chain_id, escrow, provider=None):
        self._signer = _voucher.VoucherSigner(secret, chain_id, escrow)
        self.separator = self._signer.separator
        self.address = self._signer.address  # 20 bytes
        self.provider = provider

    def sign_voucher(self, channel, cumulative):
        """The 76 packed voucher bytes for (channel, cumulative)."""
        return self._signer.sign_voucher_packed(channel, cumulative)

    def own_voucher(self, raw):
        """(channel, cumulative) of a 76-byte voucher signed by this key in this domain;
        ValueError otherwise."""
        if len(raw) != 76:
            raise ValueError("a voucher has 76 bytes")
        return self._signer.check_voucher(raw)

    def _signed_by(self, address, digest, signature):
        provider = self.provider
        if provider is None or provider.address != address:
            provider = Provider(address)
        return provider.signed(digest, signature)

    def receipt_signed_by(self, address, channel, cumulative, request_hash, data_hash,
                          signature):
        """Whether the 20-byte address (the provisioned provider: its key) signed it."""
        digest = eip712.receipt_digest(self.separator, channel, cumulative, request_hash, data_hash)
        return self._signed_by(address, digest, signature)

    def error_signed_by(self, address, channel, request_hash, code, detail_hash, signature):
        """Whether the provider at the 20-byte address signed this error response."""
        digest = eip712.error_digest(self.separator, channel, request_hash, code, detail_hash)
        return self._signed_by(address, digest, signature)

    def catalog_signed_by(self, address, seq, valid_from, valid_until, products_hash,
                          signature):
        digest = eip712.catalog_digest(self.separator, seq, valid_from, valid_until, products_hash)
        return self._signed_by(address, digest, signature)
