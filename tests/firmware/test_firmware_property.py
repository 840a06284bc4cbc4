"""Random keys and amounts signed by the firmware under MicroPython, checked on the host.

One MicroPython process signs the whole batch; every signature must verify under
coincurve, recover to the key's address, and equal eth_account's bytes.
"""

from __future__ import annotations

import random

from coincurve import PrivateKey, PublicKey
from eth_account import Account
from eth_utils import keccak
from support.firmware_support import MPY_TESTS, run_micropython
from nanotoll.protocol import eip712
from nanotoll.protocol.signing import HALF_N, SECP256K1_N

SCRIPT = MPY_TESTS / "sign_batch.py"
COUNT = 1000


def _eth_account_compact(key: bytes, digest: bytes) -> bytes:
    signed = Account._sign_hash(digest, key)
    parity = signed.v - 27
    return signed.r.to_bytes(32, "big") + ((parity << 255) | signed.s).to_bytes(32, "big")


def _der(r: int, s: int) -> bytes:
    def integer(value: int) -> bytes:
        raw = value.to_bytes(33, "big").lstrip(b"\0")
        if raw[0] & 0x80:
            raw = b"\0" + raw
        return b"\x02" + bytes([len(raw)]) + raw

    body = integer(r) + integer(s)
    return b"\x30" + bytes([len(body)]) + body


def _cases(rng: random.Random) -> list[tuple[bytes, int, str, int, int]]:
    edge_keys = [1, 2, 3, SECP256K1_N - 1, SECP256K1_N - 2, 1 << 255, (1 << 128) + 1]
    edge_amounts = [1, 2, (1 << 64) - 1, (1 << 63), (1 << 32), 1_000_000]
    edge_channels = [1, 2, (1 << 32) - 1, 1 << 31]
    cases = []
    for i in range(COUNT):
        key = edge_keys[i] if i < len(edge_keys) else rng.randrange(1, SECP256K1_N)
        chain = rng.choice([1, 10, 137, 31337, 11155111, (1 << 64) + 5, rng.randrange(1, 1 << 256)])
        contract = "0x" + rng.randbytes(20).hex()
        channel = edge_channels[i % len(edge_channels)] if i < 40 else rng.randrange(1, 1 << 32)
        amount = edge_amounts[i % len(edge_amounts)] if i < 40 else rng.randrange(1, 1 << 64)
        cases.append((key.to_bytes(32, "big"), chain, contract, channel, amount))
    return cases


def test_thousand_random_firmware_vouchers_verify_and_match_eth_account() -> None:
    rng = random.Random(20260101)
    cases = _cases(rng)
    stdin = "".join(f"{k.hex()} {c} {a} {ch} {amt}\n" for k, c, a, ch, amt in cases)
    result = run_micropython(SCRIPT, stdin=stdin, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == COUNT
    for (key, chain, contract, channel, amount), line in zip(cases, lines, strict=True):
        address_hex, digest_hex, wire_hex = line.split()
        wire = bytes.fromhex(wire_hex)
        # the reference digest, the wire layout, then the signature itself
        separator = eip712.domain_separator(chain, contract)
        digest = eip712.voucher_digest(separator, channel, amount)
        assert bytes.fromhex(digest_hex) == digest
        assert len(wire) == 78 and wire[:2] == b"\x58\x4c"
        assert int.from_bytes(wire[2:6], "big") == channel
        assert int.from_bytes(wire[6:14], "big") == amount
        signature = wire[14:]
        assert signature == _eth_account_compact(key, digest)
        r = int.from_bytes(signature[:32], "big")
        vs = int.from_bytes(signature[32:], "big")
        s, parity = vs & ((1 << 255) - 1), vs >> 255
        assert 1 <= s <= HALF_N and 1 <= r < SECP256K1_N
        recoverable = signature[:32] + s.to_bytes(32, "big") + bytes([parity])
        public = PublicKey.from_signature_and_message(recoverable, digest, hasher=None)
        assert public.format() == PrivateKey(key).public_key.format()
        assert PrivateKey(key).public_key.verify(_der(r, s), digest, hasher=None)
        assert bytes.fromhex(address_hex) == keccak(public.format(compressed=False)[1:])[-20:]
