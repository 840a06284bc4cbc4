"""RFC 6979 nonces of the firmware, retries included, against python-ecdsa's."""

from __future__ import annotations

import hashlib
import random

from ecdsa.rfc6979 import generate_k
from support.firmware_support import MPY_TESTS, run_micropython
from nanotoll.protocol.signing import SECP256K1_N


def test_first_three_nonce_candidates_match_rfc6979() -> None:
    rng = random.Random(6979)
    cases = [(rng.randrange(1, SECP256K1_N), rng.randbytes(32)) for _ in range(20)]
    cases.append((1, b"\xff" * 32))  # a digest above n: reduced mod n first
    stdin = "".join(f"{key:064x} {digest.hex()}\n" for key, digest in cases)
    result = run_micropython(MPY_TESTS / "nonces.py", stdin=stdin)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(cases)
    for (key, digest), line in zip(cases, lines, strict=True):
        expected = [
            generate_k(SECP256K1_N, key, hashlib.sha256, digest, retry_gen=i) for i in range(3)
        ]
        assert [int(word, 16) for word in line.split()] == expected
