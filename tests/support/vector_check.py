"""Check the shared vectors with the CPython reference; returns every mismatch found.

Used by test_vectors_python.py on the real files and by test_vectors_mutation.py on a
copy with one byte changed, which must produce at least one mismatch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nanotoll.protocol import cbor, eip712
from nanotoll.protocol.signing import address_of, recover_address, sign_compact
from nanotoll.protocol.voucher import pack, unpack

from support import paths as _paths

VECTORS_DIR = _paths.VECTORS_DIR


def vouchers_path() -> Path:
    return Path(os.environ.get("NANOTOLL_VECTORS", VECTORS_DIR / "vouchers.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _hex(text: str) -> bytes:
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def check_voucher(vector: dict[str, Any]) -> list[str]:
    name = vector["name"]
    problems: list[str] = []

    def expect(field: str, got: bytes | str, want: bytes | str) -> None:
        if got != want:
            problems.append(f"{name}: {field} differs")

    key = _hex(vector["private_key"])
    channel, amount = vector["channel_id"], int(vector["cumulative"])
    separator = eip712.domain_separator(vector["chain_id"], vector["verifying_contract"])
    expect("signer", address_of(key), vector["signer"])
    expect("domain_separator", separator, _hex(vector["domain_separator"]))
    expect("struct_hash", eip712.voucher_struct_hash(channel, amount), _hex(vector["struct_hash"]))
    digest = eip712.voucher_digest(separator, channel, amount)
    expect("digest", digest, _hex(vector["digest"]))
    signature = sign_compact(key, digest)
    expect("signature", signature, _hex(vector["signature"]))
    wire = pack(channel, amount, signature)
    expect("wire", wire, _hex(vector["wire"]))
    expect("cbor", cbor.dumps(wire), _hex(vector["cbor"]))
    # The receiving side: parse what is on the wire and recover who signed it.
    try:
        parsed = unpack(cbor.loads(_hex(vector["cbor"])))
        expect("recovered signer", recover_address(parsed.digest(separator), parsed.signature),
               vector["signer"])
        expect("parsed channel", str(parsed.channel_id), str(channel))
        expect("parsed amount", str(parsed.cumulative), vector["cumulative"])
    except ValueError as exc:
        problems.append(f"{name}: wire form does not parse: {exc}")
    return problems


def check_vouchers(path: Path | None = None) -> list[str]:
    data = load(path or vouchers_path())
    problems = []
    for vector in data["vouchers"]:
        try:
            problems += check_voucher(vector)
        except (ValueError, KeyError) as exc:
            problems.append(f"{vector.get('name')}: {exc}")
    return problems
