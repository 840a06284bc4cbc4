# Checks of tests/vectors/ against the firmware modules, run under MicroPython
# (the unix port through test_vectors.py, the emulated board through mpremote).
# Every check returns a list of problems, empty when the vector holds.

from binascii import hexlify, unhexlify

import cbor
import eip712
import secp256k1
import voucher
from keccak import keccak256


def unhex(text):
    return unhexlify(text[2:] if text[:2] == "0x" else text)


def hexaddr(raw):
    return "0x" + hexlify(raw).decode()


def from_json(value):
    # messages.json writes byte strings as {"$bytes": hex}
    if isinstance(value, dict):
        if len(value) == 1 and "$bytes" in value:
            return unhexlify(value["$bytes"])
        return {key: from_json(value[key]) for key in value}
    if isinstance(value, list):
        return [from_json(item) for item in value]
    return value


class Problems:
    """What the checks of one vector found, each line naming the vector."""

    def __init__(self, name):
        self.name = name
        self.found = []

    def add(self, text):
        self.found.append(self.name + ": " + text)

    def expect(self, field, got, want):
        if got != want:
            self.add(field + " differs")


def check_voucher(vector):
    problems = Problems(vector["name"])
    expect = problems.expect
    key = unhex(vector["private_key"])
    channel = vector["channel_id"]
    amount = int(vector["cumulative"])
    signer = voucher.VoucherSigner(key, vector["chain_id"], vector["verifying_contract"])
    expect("signer", hexaddr(signer.address), vector["signer"].lower())
    expect("domain_separator", signer.separator, unhex(vector["domain_separator"]))
    expect(
        "domain_separator (function)",
        eip712.domain_separator(vector["chain_id"], vector["verifying_contract"]),
        unhex(vector["domain_separator"]),
    )
    expect("struct_hash", eip712.voucher_struct_hash(channel, amount), unhex(vector["struct_hash"]))
    digest = signer.digest(channel, amount)
    expect("digest", digest, unhex(vector["digest"]))
    expect("digest (function)", eip712.voucher_digest(signer.separator, channel, amount), digest)
    signature = secp256k1.sign(key, digest)
    expect("signature", signature, unhex(vector["signature"]))
    wire = signer.sign_voucher(channel, amount)
    expect("cbor", wire, unhex(vector["cbor"]))
    expect("wire", voucher.pack(channel, amount, signature), unhex(vector["wire"]))
    expect("cbor (dumps)", cbor.dumps(unhex(vector["wire"])), unhex(vector["cbor"]))
    # the receiving side: parse the wire bytes and recover who signed them
    try:
        parsed = voucher.unpack(cbor.loads(unhex(vector["cbor"])))
        expect("parsed voucher", parsed[:2], (channel, amount))
        recovered = secp256k1.recover_address(digest, parsed[2])
        expect("recovered signer", hexaddr(recovered), vector["signer"].lower())
    except ValueError as exc:
        problems.add("wire form does not parse: " + str(exc))
    return problems.found


def check_message(separator, vector):
    problems = Problems(vector["name"])
    expect = problems.expect
    raw = unhex(vector["cbor"])
    value = from_json(vector["value"])
    try:
        decoded = cbor.loads(raw)
    except ValueError as exc:
        problems.add("does not decode: " + str(exc))
        return problems.found
    expect("decoded value", decoded, value)
    expect("encoding", cbor.dumps(value), raw)
    kind = vector["kind"]
    signer = vector.get("signer", "").lower()
    if kind == "catalog":
        products_hash = keccak256(cbor.dumps(value[5]))
        expect("products_hash", products_hash, unhex(vector["products_hash"]))
        digest = eip712.catalog_digest(separator, value[2], value[3], value[4], products_hash)
        expect("digest", digest, unhex(vector["digest"]))
        expect("catalog signer", hexaddr(secp256k1.recover_address(digest, value[6])), signer)
        expect("provider field", hexaddr(value[1]), signer)
    elif kind == "request":
        expect("request_hash", keccak256(raw), unhex(vector["request_hash"]))
        channel, amount, signature = voucher.unpack(value[6])
        digest = eip712.voucher_digest(separator, channel, amount)
        expect("digest", digest, unhex(vector["digest"]))
        expect("voucher signer", hexaddr(secp256k1.recover_address(digest, signature)), signer)
    elif kind == "response" and value[2] == 0:
        data, receipt = value[3]
        channel, amount, request_hash, data_hash, signature = receipt
        expect("data_hash", keccak256(data), data_hash)
        digest = eip712.receipt_digest(separator, channel, amount, request_hash, data_hash)
        expect("digest", digest, unhex(vector["digest"]))
        expect("receipt signer", hexaddr(secp256k1.recover_address(digest, signature)), signer)
    elif kind == "response":
        _, detail, channel, request_hash, signature = value[3]
        detail_hash = keccak256(cbor.dumps(detail))
        expect("detail_hash", detail_hash, unhex(vector["detail_hash"]))
        digest = eip712.error_digest(separator, channel, request_hash, value[2], detail_hash)
        expect("digest", digest, unhex(vector["digest"]))
        expect("error signer", hexaddr(secp256k1.recover_address(digest, signature)), signer)
    return problems.found


def check_invalid(case):
    name = case["name"]
    try:
        cbor.loads(unhex(case["hex"]))
    except cbor.CBORError as exc:
        if exc.reason != case["reason"]:
            return [name + ": rejected as " + exc.reason + ", expected " + case["reason"]]
        return []
    except Exception as exc:  # a crash is not a clear error
        return [name + ": raised " + repr(exc) + " instead of CBORError"]
    return [name + ": accepted, expected " + case["reason"]]
