"""``nanotoll device log``: the board's purchase log (``firmware/purchase_log.py``), read
over the REPL, each receipt verified offline against the provider's address, exported as
JSON or CSV.

A record is 213 bytes: seq u32 | time u32 | provider (20) | product length u8 | product
(32, zero padded) | price u64 | cumulative u64 | request hash (32) | data hash (32) |
receipt signature (64) | the first 8 bytes of sha256 of all that. A record whose check
fails was torn by a power cut while it was written; it is counted, not exported.
"""

from __future__ import annotations

import csv
import hashlib
import io
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..protocol.eip712 import domain_separator, receipt_digest
from ..protocol.signing import checksum_address, recover_signer
from .repl import BoardExecError, DeviceError, Repl

RECORD = 213
BODY = 205
LOG_FILE = "purchases.log"

_READ = """
import json, binascii
c = json.load(open({config!r}))
out = {{'chain_id': c['chain_id'], 'escrow': c['escrow'], 'channel': c['channel'],
        'provider': c['provider'], 'entries': c.get('purchase_log', 0), 'records': []}}
try:
    f = open(c.get('state_dir', '/state') + '/' + {log!r}, 'rb')
    while True:
        r = f.read({size})
        if len(r) < {size}:
            break
        out['records'].append(binascii.hexlify(r).decode())
    f.close()
except OSError:
    pass
print(json.dumps(out))
"""


@dataclass(frozen=True, slots=True)
class Purchase:
    seq: int
    time: int  # unix seconds on the board's clock (0: not set)
    provider: str
    product: str
    price: int
    cumulative: int
    request_hash: str
    data_hash: str
    signature: str
    verified: bool  # the receipt recovers to the provisioned provider


def decode_record(raw: bytes) -> tuple[Any, ...] | None:
    """The record's fields, or None for a torn one."""
    if len(raw) != RECORD or hashlib.sha256(raw[:BODY]).digest()[:8] != raw[BODY:]:
        return None
    seq, when = struct.unpack_from(">II", raw, 0)
    length = raw[28]
    if length > 32:
        return None
    price, cumulative = struct.unpack_from(">QQ", raw, 61)
    return (seq, when, raw[8:28], raw[29:29 + length].decode(), price, cumulative,
            raw[77:109], raw[109:141], raw[141:205])


def purchases(export: Mapping[str, Any]) -> tuple[list[Purchase], int]:
    """The log's intact records, oldest first, each receipt checked; and the torn count."""
    separator = domain_separator(int(export["chain_id"]), str(export["escrow"]))
    provider = bytes.fromhex(str(export["provider"]).removeprefix("0x"))
    channel = int(export["channel"])
    rows = []
    torn = 0
    for text in export["records"]:
        fields = decode_record(bytes.fromhex(text))
        if fields is None:
            torn += 1
            continue
        seq, when, who, product, price, cumulative, rhash, dhash, sig = fields
        try:
            signer = recover_signer(receipt_digest(separator, channel, cumulative, rhash, dhash),
                                    sig)
        except ValueError:
            signer = b""
        rows.append(Purchase(seq, when, checksum_address(who), product, price, cumulative,
                             "0x" + rhash.hex(), "0x" + dhash.hex(), "0x" + sig.hex(),
                             signer == provider == who))
    rows.sort(key=lambda row: row.seq)
    return rows, torn


def read_log(repl: Repl, config: str = "/config.json") -> dict[str, Any]:
    """The board's config essentials and its raw records."""
    try:
        return dict(repl.exec_json(_READ.format(config=config, log=LOG_FILE, size=RECORD)))
    except BoardExecError as exc:
        if "ENOENT" in exc.board_error or "Errno 2" in exc.board_error:
            raise DeviceError("the board is not provisioned (no /config.json): run "
                              "`nanotoll device provision`") from exc
        raise


def render_csv(rows: Sequence[Purchase]) -> str:
    out = io.StringIO()
    names = list(Purchase.__dataclass_fields__)
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    return out.getvalue()


def as_document(export: Mapping[str, Any], rows: Sequence[Purchase], torn: int
                ) -> dict[str, Any]:
    return {"chain_id": export["chain_id"], "escrow": export["escrow"],
            "channel": export["channel"], "provider": export["provider"],
            "entries": export["entries"], "torn": torn,
            "purchases": [asdict(row) for row in rows]}
