"""Public-key recovery by the firmware under MicroPython against coincurve."""

from __future__ import annotations

import random

from coincurve import PrivateKey
from support.firmware_support import MPY_TESTS, run_micropython
from nanotoll.protocol.signing import HALF_N, SECP256K1_N, sign_compact

SECP256K1_P = 2**256 - 2**32 - 977
LAMBDA = 0x5363AD4CC05C30E0A5261C028812645A122E22EA20816678DF02967C1B23BD72  # endomorphism


def _recover(pairs: list[tuple[bytes, bytes]]) -> list[str]:
    stdin = "".join(f"{digest.hex()} {signature.hex()}\n" for digest, signature in pairs)
    result = run_micropython(MPY_TESTS / "recover_batch.py", stdin=stdin)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(pairs)
    return lines


def test_recovery_matches_coincurve_for_random_signatures() -> None:
    rng = random.Random(2098)
    keys, pairs = [], []
    digests = [bytes(32), SECP256K1_N.to_bytes(32, "big"), b"\xff" * 32]
    # keys at the edges, the endomorphism's lambda among them (the scalar that
    # multiplies R is split in two halves by it), then random ones
    edges = [1, 2, SECP256K1_N - 1, LAMBDA, SECP256K1_N - LAMBDA]
    for i in range(150):
        secret = edges[i] if i < len(edges) else rng.randrange(1, SECP256K1_N)
        key = PrivateKey(secret.to_bytes(32, "big"))
        digest = digests[i] if i < len(digests) else rng.randbytes(32)
        keys.append(key)
        pairs.append((digest, sign_compact(key.secret, digest)))
    parities = {signature[32] >> 7 for _, signature in pairs}
    assert parities == {0, 1}
    for key, line in zip(keys, _recover(pairs), strict=True):
        assert line == key.public_key.format(compressed=False)[1:].hex()


def test_recovery_refuses_bad_signatures() -> None:
    digest = bytes(range(32))
    good = sign_compact((7).to_bytes(32, "big"), digest)
    r = int.from_bytes(good[:32], "big")
    s = int.from_bytes(good[32:], "big") & ((1 << 255) - 1)
    # an x with no curve point: x^3 + 7 a non-square mod p
    x = next(x for x in range(1, 100) if pow(x**3 + 7, (SECP256K1_P - 1) // 2, SECP256K1_P) != 1)
    bad = [
        good[:32] + (HALF_N + 1).to_bytes(32, "big"),  # high s
        good[:32] + bytes(32),  # s = 0
        bytes(32) + good[32:],  # r = 0
        SECP256K1_N.to_bytes(32, "big") + good[32:],  # r = n
        x.to_bytes(32, "big") + s.to_bytes(32, "big"),  # r not on the curve
    ]
    lines = _recover([(digest, signature) for signature in bad])
    assert all(line == "ERROR InvalidSignature" for line in lines), lines
    assert r and _recover([(digest, good)])[0] != "ERROR InvalidSignature"
