#!/usr/bin/env python3
"""Regenerate tests/vectors/ from a fixed seed.

eth_account is the independent reference for EIP-712 digests and signatures; every
vector is also recomputed with nanotoll.protocol and coincurve, and the script stops if
any of them disagree. Run: .venv/bin/python tools/gen_vectors.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_utils import keccak, to_checksum_address

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "gateway"))

from nanotoll.protocol import cbor, eip712  # noqa: E402
from nanotoll.protocol.errors import ErrorCode, ProtocolError  # noqa: E402
from nanotoll.protocol.messages import (  # noqa: E402
    Product,
    Request,
    Response,
    decode_catalog,
    decode_request,
    decode_response,
    detail_hash,
    request_hash,
    sign_catalog,
    sign_error,
    sign_receipt,
)
from nanotoll.protocol.policy import PolicyError, decode_policy  # noqa: E402
from nanotoll.protocol.signing import SECP256K1_N, address_of, sign_compact  # noqa: E402
from nanotoll.protocol.voucher import pack, unpack  # noqa: E402
from policy_vectors import build_policies  # noqa: E402

SEED = b"nanotoll/vectors/v1"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z, the clock every vector is judged at
GATEWAY_EXPIRY_MARGIN = 3600  # seconds; docs/protocol.md "Rules"
VECTORS = ROOT / "tests" / "vectors"


def seeded(label: str, index: int) -> bytes:
    return keccak(SEED + label.encode() + index.to_bytes(4, "big"))


def seeded_key(index: int) -> bytes:
    return ((int.from_bytes(seeded("key", index), "big") % (SECP256K1_N - 1)) + 1).to_bytes(
        32, "big"
    )


def seeded_address(index: int) -> str:
    return to_checksum_address(seeded("contract", index)[-20:])


def hx(raw: bytes) -> str:
    return "0x" + raw.hex()


def reference_sign(
    key: bytes, chain_id: int, contract: str, channel_id: int, cumulative: int
) -> tuple[bytes, bytes]:
    """(digest, 64-byte compact signature) according to eth_account alone."""
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Voucher": [
                {"name": "channelId", "type": "uint32"},
                {"name": "cumulativeAmount", "type": "uint64"},
            ],
        },
        "primaryType": "Voucher",
        "domain": {
            "name": eip712.DOMAIN_NAME,
            "version": eip712.DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": contract,
        },
        "message": {"channelId": channel_id, "cumulativeAmount": cumulative},
    }
    signable = encode_typed_data(full_message=typed)
    signed = Account.sign_message(signable, private_key=key)
    digest = _hash_eip191_message(signable)
    parity = signed.v - 27
    compact = signed.r.to_bytes(32, "big") + ((parity << 255) | signed.s).to_bytes(32, "big")
    return digest, compact


def voucher_cases() -> list[dict[str, Any]]:
    """(name, key, chain, contract, channel, cumulative, deposit, expiry) for every vector."""
    cases: list[dict[str, Any]] = []

    def add(name: str, key: bytes, chain: int, contract: str, channel: int, amount: int,
            deposit: int | None = None, expiry: int = NOW + 30 * 86400) -> None:
        cases.append(dict(name=name, key=key, chain=chain, contract=contract, channel=channel,
                          amount=amount, deposit=amount if deposit is None else deposit,
                          expiry=expiry))

    anvil_contract = seeded_address(0)
    add("smallest amount", seeded_key(0), 31337, anvil_contract, 1, 1)
    add("largest amount", seeded_key(1), 31337, anvil_contract, 7, eip712.MAX_AMOUNT)
    add("largest channel id", seeded_key(2), 31337, anvil_contract, eip712.MAX_CHANNEL_ID, 10**6)
    add("amount 2^32-1", seeded_key(3), 31337, anvil_contract, 2, (1 << 32) - 1)
    add("amount 2^32", seeded_key(3), 31337, anvil_contract, 2, 1 << 32)
    add("private key 1", (1).to_bytes(32, "big"), 31337, anvil_contract, 3, 250)
    add("private key 2", (2).to_bytes(32, "big"), 31337, anvil_contract, 3, 500)
    add("private key n-1", (SECP256K1_N - 1).to_bytes(32, "big"), 31337, anvil_contract, 4, 750)
    add("contract 0x00..01", seeded_key(4), 31337, to_checksum_address("0x" + "00" * 19 + "01"),
        5, 1000)
    add("contract 0xff..ff", seeded_key(4), 31337, to_checksum_address("0x" + "ff" * 20), 5, 1000)
    for chain in (1, 10, 137, 8453, 84532, 11155111):
        add(f"chain {chain}", seeded_key(5), chain, anvil_contract, 9, 123_456)
    add("near expiry: inside the gateway margin", seeded_key(6), 31337, anvil_contract, 11, 5000,
        expiry=NOW + 600)
    add("near expiry: one second left", seeded_key(6), 31337, anvil_contract, 11, 6000,
        expiry=NOW + 1)
    add("expired at now", seeded_key(6), 31337, anvil_contract, 12, 7000, expiry=NOW)
    add("expiry just past the margin", seeded_key(6), 31337, anvil_contract, 13, 8000,
        expiry=NOW + GATEWAY_EXPIRY_MARGIN + 1)
    add("above the deposit", seeded_key(7), 31337, anvil_contract, 14, 10_001, deposit=10_000)
    add("exactly the deposit", seeded_key(7), 31337, anvil_contract, 15, 10_000, deposit=10_000)
    # A purchase sequence on one channel: a weather nowcast at 1,500 units, twelve times.
    for step in range(1, 13):
        add(f"sequence step {step}", seeded_key(8), 31337, anvil_contract, 21, 1500 * step,
            deposit=50_000_000)
    # Seeded random keys, channels, amounts and contracts.
    index = 0
    while len(cases) < 64:
        index += 1
        draw = int.from_bytes(seeded("case", index), "big")
        channel = (draw & 0xFFFFFFFF) or 1
        amount = ((draw >> 32) & ((1 << (8 * (1 + (draw >> 100) % 8))) - 1)) or 1
        add(f"random {index}", seeded_key(100 + index), 31337 if index % 3 else 8453,
            seeded_address(index), channel, amount)
    return cases


def gateway_verdict(case: dict[str, Any]) -> str:
    if case["expiry"] - NOW <= GATEWAY_EXPIRY_MARGIN:
        return ErrorCode.CHANNEL_EXPIRING.name
    if case["amount"] > case["deposit"]:
        return ErrorCode.OVERDRAFT.name
    return "ok"


def build_vouchers() -> dict[str, Any]:
    vouchers = []
    for case in voucher_cases():
        key, chain, contract = case["key"], case["chain"], case["contract"]
        channel, amount = case["channel"], case["amount"]
        digest, signature = reference_sign(key, chain, contract, channel, amount)
        separator = eip712.domain_separator(chain, contract)
        ours = eip712.voucher_digest(separator, channel, amount)
        if ours != digest or sign_compact(key, digest) != signature:
            raise SystemExit(f"reference and nanotoll.protocol disagree on {case['name']!r}")
        wire = pack(channel, amount, signature)
        encoded = cbor.dumps(wire)
        vouchers.append({
            "name": case["name"],
            "private_key": hx(key),
            "signer": address_of(key),
            "chain_id": chain,
            "verifying_contract": contract,
            "channel_id": channel,
            "cumulative": str(amount),
            "domain_separator": hx(separator),
            "struct_hash": hx(eip712.voucher_struct_hash(channel, amount)),
            "digest": hx(digest),
            "signature": hx(signature),
            "wire": hx(wire),
            "cbor": hx(encoded),
            "deposit": str(case["deposit"]),
            "expiry": case["expiry"],
            "now": NOW,
            "redeemable": case["expiry"] > NOW and amount <= case["deposit"],
            "gateway_verdict": gateway_verdict(case),
        })
    return {
        "version": 1,
        "generator": "tools/gen_vectors.py",
        "domain": {"name": eip712.DOMAIN_NAME, "version": eip712.DOMAIN_VERSION},
        "gateway_expiry_margin": GATEWAY_EXPIRY_MARGIN,
        "vouchers": vouchers,
    }


def to_json(value: Any) -> Any:
    """CBOR data model to JSON: byte strings become {"$bytes": hex}."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, list):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        # JSON keys are text; the protocol's maps only have text keys.
        return {key: to_json(item) for key, item in value.items()}
    return value


def message(name: str, kind: str, encoded: bytes, **extra: Any) -> dict[str, Any]:
    value = to_json(cbor.loads(encoded))
    return {"name": name, "kind": kind, "cbor": encoded.hex(), "value": value, **extra}


def build_messages() -> dict[str, Any]:
    chain, contract = 31337, seeded_address(0)
    separator = eip712.domain_separator(chain, contract)
    provider_key, device_key = seeded_key(900), seeded_key(901)
    provider = bytes.fromhex(address_of(provider_key)[2:])
    products = (
        Product("weather", 1500, "nowcast for a position, altitude and time"),
        Product("nav", 4000, "airspace, geofence and waypoint updates"),
        Product("route", 25000, "time-boxed corridor access grant"),
    )
    catalog = sign_catalog(provider_key, separator, provider, 3, NOW - 3600, NOW + 86400, products)
    out: list[dict[str, Any]] = [
        message("catalog", "catalog", catalog.encode(), signer=address_of(provider_key),
                digest=hx(catalog.digest(separator)), products_hash=hx(catalog.products_hash())),
    ]
    params = {
        "weather": {"lat": 52_520_008, "lon": 13_404_954, "alt": 120, "t": NOW + 300},
        "nav": {"box": [52_400_000, 13_200_000, 52_600_000, 13_600_000]},
        "route": {"corridor": "BER-N7", "from": NOW, "until": NOW + 900},
    }
    cumulative = 0
    for request_id, product in enumerate(products, start=1):
        cumulative += product.unit_price
        digest, signature = reference_sign(device_key, chain, contract, 77, cumulative)
        voucher = pack(77, cumulative, signature)
        request = Request(request_id, product.name, params[product.name], product.unit_price,
                          catalog.seq, unpack(voucher))
        encoded = request.encode()
        out.append(message(f"request {product.name}", "request", encoded,
                           signer=address_of(device_key), digest=hx(digest),
                           request_hash=hx(request_hash(encoded))))
        data = cbor.dumps({"product": product.name, "seq": request_id})
        receipt = sign_receipt(provider_key, separator, 77, cumulative, request_hash(encoded), data)
        response = Response(request_id, ErrorCode.OK, data=data, receipt=receipt)
        out.append(message(f"response {product.name}", "response", response.encode(),
                           signer=address_of(provider_key), digest=hx(receipt.digest(separator))))
    highest = pack(77, cumulative, reference_sign(device_key, chain, contract, 77, cumulative)[1])
    errors = [
        ProtocolError(ErrorCode.STALE_VOUCHER, "cumulative not above the last accepted", highest),
        ProtocolError(ErrorCode.PRICE_CHANGED, "catalog seq 3 is current", 3),
        ProtocolError(ErrorCode.UNDERPAID, "increment 1000 below price 1500"),
        ProtocolError(ErrorCode.MALFORMED, "trailing-bytes: 1 bytes after the item"),
    ]
    # An error answers the request whose hash it signs: the last request above, or for
    # MALFORMED that request with a byte appended (it names no channel: channel 0).
    for request_id, error in enumerate(errors, start=10):
        answered = encoded + b"\x00" if error.code == ErrorCode.MALFORMED else encoded
        channel = 0 if error.code == ErrorCode.MALFORMED else 77
        response = sign_error(provider_key, separator, request_id, error, channel,
                              request_hash(answered))
        out.append(message(f"error {error.code.name}", "response", response.encode(),
                           signer=address_of(provider_key),
                           digest=hx(response.error_digest(separator)),
                           detail_hash=hx(detail_hash(error.detail))))
    return {
        "version": 1,
        "chain_id": chain,
        "verifying_contract": contract,
        "domain_separator": hx(separator),
        "messages": out,
    }


def build_invalid(valid: dict[str, Any], policies: dict[str, Any]) -> dict[str, Any]:
    cases = [
        ("non-shortest uint in 1 byte", "1817", "non-shortest"),
        ("non-shortest uint in 2 bytes", "1900ff", "non-shortest"),
        ("non-shortest uint in 4 bytes", "1a0000ffff", "non-shortest"),
        ("non-shortest uint in 8 bytes", "1b00000000ffffffff", "non-shortest"),
        ("non-shortest length", "5801ff", "non-shortest"),
        ("half float", "f97e00", "float"),
        ("double float", "fb3ff0000000000000", "float"),
        ("indefinite array", "9f01ff", "indefinite"),
        ("indefinite byte string", "5f4101ff", "indefinite"),
        ("reserved additional info", "1c", "reserved"),
        ("tag", "c11a5f5e1000", "tag"),
        ("undefined", "f7", "simple-value"),
        ("duplicate map key", "a2616101616102", "duplicate-key"),
        ("unsorted map keys", "a2616201616101", "unsorted-keys"),
        ("trailing bytes", "0101", "trailing-bytes"),
        ("empty input", "", "truncated"),
        ("truncated array", "8301", "truncated"),
        ("truncated byte string", "584c00", "truncated"),
        ("invalid utf-8", "62c328", "bad-utf8"),
        ("nesting too deep", "81" * 9 + "00", "too-deep"),
        ("array too long", "990101", "too-large"),
        ("byte string over the size limit", "592001" + "00" * 4, "too-large"),
        ("map key an array", "a18001", "bad-key"),
    ]
    return {"version": 1, "max_depth": cbor.MAX_DEPTH, "max_items": cbor.MAX_ITEMS,
            "cases": [{"name": n, "hex": h, "reason": r} for n, h, r in cases],
            "messages": invalid_messages(valid) + invalid_policies(policies)}


def invalid_messages(valid: dict[str, Any]) -> list[dict[str, str]]:
    """Strict CBOR that a message decoder must refuse, each one field of a valid message
    of messages.json changed (the schema-mutation suite's findings among them)."""
    shapes = {m["name"]: cbor.loads(bytes.fromhex(m["cbor"])) for m in valid["messages"]}
    malformed, unsupported = ErrorCode.MALFORMED.name, ErrorCode.UNSUPPORTED_VERSION.name
    changes: list[tuple[str, str, tuple[Any, ...], Any, str]] = [
        ("request weather", "version as text", (0,), "1", malformed),
        ("request weather", "version true", (0,), True, malformed),
        ("request weather", "version null", (0,), None, malformed),
        ("request weather", "version 2", (0,), 2, unsupported),
        ("request weather", "params value null", (3, "lat"), None, malformed),
        ("request weather", "params value a nested array", (3, "lat"), [[1]], malformed),
        ("request weather", "params value an array holding a map", (3, "lat"), [{}], malformed),
        ("request weather", "params value an array holding null", (3, "lat"), [None], malformed),
        ("request weather", "params key of 17 characters", (3, "a" * 17), 1, malformed),
        ("response weather", "version true", (0,), True, malformed),
        ("response weather", "receipt channel true", (3, 1, 0), True, malformed),
        ("response weather", "receipt cumulative true", (3, 1, 1), True, malformed),
        ("response weather", "receipt request hash of 31 bytes", (3, 1, 2), bytes(31),
         malformed),
        ("error UNDERPAID", "error message of 201 characters", (3, 0), "m" * 201, malformed),
        ("error UNDERPAID", "detail on an error that carries none", (3, 1), 1, malformed),
        ("error PRICE_CHANGED", "PRICE_CHANGED without its seq", (3, 1), None, malformed),
        ("error STALE_VOUCHER", "STALE_VOUCHER detail of 75 bytes", (3, 1), bytes(75),
         malformed),
        ("error STALE_VOUCHER", "STALE_VOUCHER detail a voucher of channel 0", (3, 1),
         bytes(4) + bytes(range(1, 73)), malformed),
        ("error UNDERPAID", "error body without its signature (two elements)", (3,),
         ["underpaid", None], malformed),
        ("error UNDERPAID", "error channel true", (3, 2), True, malformed),
        ("error UNDERPAID", "error channel 2^32", (3, 2), 1 << 32, malformed),
        ("error UNDERPAID", "error request hash of 31 bytes", (3, 3), bytes(31), malformed),
        ("error UNDERPAID", "error signature of 63 bytes", (3, 4), bytes(63), malformed),
        ("error UNDERPAID", "error signature null", (3, 4), None, malformed),
        ("catalog", "version true", (0,), True, malformed),
        ("catalog", "unit price true", (5, 0, 1), True, malformed),
        ("catalog", "product name in capitals", (5, 0, 0), "Weather", malformed),
        ("catalog", "description of 65 characters", (5, 0, 2), "d" * 65, malformed),
        ("catalog", "provider of 19 bytes", (1,), bytes(19), malformed),
    ]
    out = []
    for source, name, path, value, code in changes:
        message = shapes[source]
        *parents, last = path
        holder = message = _deep_copy(message)
        for step in parents:
            holder = holder[step]
        holder[last] = value
        kind = source.split()[0].replace("error", "response")
        out.append({"name": f"{kind}: {name}", "kind": kind, "hex": cbor.dumps(message).hex(),
                    "code": code})
    return out


def invalid_policies(policies: dict[str, Any]) -> list[dict[str, str]]:
    """Owner-signed policies a device must refuse as ``malformed``, one field of the first
    policy of policies.json changed: what the schema-mutation suite found one decoder
    taking (a version ``true``, the integers that must be at least 1 set to 0)."""
    wire = cbor.loads(bytes.fromhex(policies["policies"][0]["wire"][2:]))
    changes = [("version true", 0, True), ("channelId 0", 1, 0), ("seq 0", 2, 0),
               ("deposit 0", 3, 0), ("expiry 0", 5, 0)]
    out = []
    for name, index, value in changes:
        changed = list(wire)
        changed[index] = value
        if name == "deposit 0":
            changed[4] = 0  # budget 0 too: only the deposit is wrong
        out.append({"name": f"policy: {name}", "kind": "policy",
                    "hex": cbor.dumps(changed).hex(), "code": ErrorCode.MALFORMED.name})
    return out


def _deep_copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    if isinstance(value, dict):
        return {key: _deep_copy(item) for key, item in value.items()}
    return value


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files differ")
    args = parser.parse_args()
    outputs = {
        "vouchers.json": render(build_vouchers()),
        "messages.json": render(build_messages()),
        "policies.json": render(build_policies()),
    }
    outputs["cbor_invalid.json"] = render(build_invalid(json.loads(outputs["messages.json"]),
                                                        json.loads(outputs["policies.json"])))
    for case in json.loads(outputs["cbor_invalid.json"])["cases"]:
        try:
            cbor.loads(bytes.fromhex(case["hex"]))
        except cbor.CBORError as exc:
            if exc.reason != case["reason"]:
                wrong = f"{case['name']}: reason {exc.reason}, want {case['reason']}"
                raise SystemExit(wrong) from exc
        else:
            raise SystemExit(f"{case['name']}: decoder accepted it")
    decoders = {"request": decode_request, "response": decode_response, "catalog": decode_catalog}
    for case in json.loads(outputs["cbor_invalid.json"])["messages"]:
        if case["kind"] == "policy":
            try:
                decode_policy(bytes.fromhex(case["hex"]))
            except PolicyError:
                continue
            raise SystemExit(f"{case['name']}: decode_policy accepted it")
        try:
            decoders[case["kind"]](bytes.fromhex(case["hex"]))
        except ProtocolError as exc:
            if exc.code.name != case["code"]:
                raise SystemExit(f"{case['name']}: {exc.code.name}, want {case['code']}") from exc
        else:
            raise SystemExit(f"{case['name']}: decoder accepted it")
    stale = []
    VECTORS.mkdir(parents=True, exist_ok=True)
    for name, text in outputs.items():
        path = VECTORS / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale vectors: {', '.join(stale)}; run tools/gen_vectors.py", file=sys.stderr)
        return 1
    print(f"vectors {'up to date' if args.check else 'written'} in {VECTORS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
