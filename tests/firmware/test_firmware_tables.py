"""The firmware's comb tables in flash and its verification against a known key,
under MicroPython's unix port, checked against coincurve."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from coincurve import PrivateKey, PublicKey
from nanotoll.protocol.signing import HALF_N, SECP256K1_N, sign_compact
from support.firmware_support import MPY_TESTS, run_micropython

SCRIPT = MPY_TESTS / "comb_tables.py"
TABLE_BYTES = 65392  # magic 16 + point 64 + 4 blocks * 255 entries * 64 + SHA-256 32
TEETH, BLOCKS, SPAN = 8, 4, 8
KEY = bytes(range(1, 33))
DIGEST = bytes(range(32))


def _run(*args: str, stdin: str | None = None) -> list[str]:
    result = run_micropython(SCRIPT, *args, stdin=stdin)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


@pytest.fixture(scope="module")
def g_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("comb") / "g.tbl"
    _run("write", str(path))
    return path


def _public(key: PrivateKey) -> bytes:
    return key.public_key.format(compressed=False)[1:]


def _entry_scalar(block: int, pattern: int) -> int:
    # entry (block, pattern) = the sum over the pattern's rows of 2^(span (row blocks + block))
    return sum(1 << (SPAN * (row * BLOCKS + block)) for row in range(TEETH)
               if pattern >> row & 1) % SECP256K1_N


def _entry(table: bytes, block: int, pattern: int) -> bytes:
    at = 80 + 64 * (block * 255 + pattern - 1)
    x, y = table[at:at + 32], table[at + 32:at + 64]
    return x[::-1] + y[::-1]  # little-endian in the table, big-endian in a public key


def test_g_table_layout_and_entries_match_coincurve(g_table: Path) -> None:
    data = g_table.read_bytes()
    assert len(data) == TABLE_BYTES
    assert data[:16] == b"nt-comb 8.4.8 v1"
    assert data[16:80] == _public(PrivateKey.from_int(1))
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]
    rng = random.Random(8)
    picks = [(0, 1), (3, 255), (1, 128), (2, 3)] + [(rng.randrange(4), rng.randrange(1, 256))
                                                    for _ in range(12)]
    for block, pattern in picks:
        expected = _public(PrivateKey.from_int(_entry_scalar(block, pattern)))
        assert _entry(data, block, pattern) == expected, (block, pattern)


def test_key_table_entries_are_multiples_of_the_key(tmp_path: Path) -> None:
    key = PrivateKey(bytes(range(7, 39)))
    path = tmp_path / "q.tbl"
    _run("write", str(path), _public(key).hex())
    data = path.read_bytes()
    assert data[16:80] == _public(key)
    for block, pattern in [(0, 1), (1, 77), (3, 255)]:
        point = PublicKey(key.public_key.format()).multiply(
            _entry_scalar(block, pattern).to_bytes(32, "big"))
        assert _entry(data, block, pattern) == point.format(compressed=False)[1:]


def test_signing_with_the_table_matches_coincurve(g_table: Path) -> None:
    lines = _run("boot", str(g_table), "0", KEY.hex(), DIGEST.hex())
    assert lines == ["status ok", "signature " + sign_compact(KEY, DIGEST).hex()]


def _damaged(g_table: Path, tmp_path: Path, how: str) -> Path:
    data = bytearray(g_table.read_bytes())
    if how == "flipped":
        data[40000] ^= 0x10
    elif how == "truncated":
        del data[-1000:]
    elif how == "header":
        data[20] ^= 0x01
    path = tmp_path / "g.tbl"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(("how", "reason"), [
    ("flipped", "checksum does not match"),
    ("truncated", "64392 bytes, not 65392"),
    ("header", "checksum does not match"),
])
def test_a_damaged_table_is_refused_and_nothing_is_signed(
        g_table: Path, tmp_path: Path, how: str, reason: str) -> None:
    path = _damaged(g_table, tmp_path, how)
    refused, signed = _run("boot", str(path), "0", KEY.hex(), DIGEST.hex())
    assert refused.startswith("refused no good comb table: ") and reason in refused
    assert signed.startswith("sign-refused ")


@pytest.mark.parametrize("how", ["flipped", "truncated", "missing"])
def test_a_damaged_table_is_rebuilt_and_says_so(g_table: Path, tmp_path: Path, how: str) -> None:
    path = tmp_path / "g.tbl" if how == "missing" else _damaged(g_table, tmp_path, how)
    status, signed = _run("boot", str(path), "1", KEY.hex(), DIGEST.hex())
    assert status.startswith("status rebuilt (")
    assert signed == "signature " + sign_compact(KEY, DIGEST).hex()
    assert path.read_bytes() == g_table.read_bytes()


def test_a_table_for_another_point_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "q.tbl"
    _run("write", str(other), _public(PrivateKey(KEY)).hex())
    refused, signed = _run("boot", str(other), "0", KEY.hex(), DIGEST.hex())
    assert refused.endswith("for another point or layout")
    assert signed.startswith("sign-refused ")


def _cases(key: PrivateKey, rng: random.Random) -> tuple[list[tuple[bytes, bytes]], list[int]]:
    """Signatures over random digests, each with whether it is the key's: its own,
    another key's, parity flipped (refused: recovery would find another key, so an offline
    check would refuse it too), s made high, r or s out of range, r changed."""
    other = PrivateKey(rng.randbytes(32))
    cases, expected = [], []
    for i in range(40):
        digest = rng.randbytes(32) if i else bytes(32)
        good = sign_compact(key.secret, digest)
        r = int.from_bytes(good[:32], "big")
        vs = int.from_bytes(good[32:], "big")
        s = vs & ((1 << 255) - 1)
        variants = [
            (good, 1),
            (sign_compact(other.secret, digest), 0),
            # the other parity: (r, s) still the key's, but recovery finds another key
            (good[:32] + (vs ^ (1 << 255)).to_bytes(32, "big"), 0),
            (good[:32] + ((vs & (1 << 255)) | (SECP256K1_N - s)).to_bytes(32, "big"), 0),
            (SECP256K1_N.to_bytes(32, "big") + good[32:], 0),
            (good[:32] + (HALF_N + 1).to_bytes(32, "big"), 0),
            (good, 1) if i % 2 else ((r ^ 1).to_bytes(32, "big") + good[32:], 0),
        ]
        for signature, valid in variants:
            cases.append((digest, signature))
            expected.append(valid)
    return cases, expected


def test_verify_accepts_the_keys_signatures_and_nothing_else(g_table: Path, tmp_path: Path) -> None:
    rng = random.Random(18)
    key = PrivateKey(rng.randbytes(32))
    public = _public(key).hex()
    table = tmp_path / "q.tbl"
    _run("write", str(table), public)
    cases, expected = _cases(key, rng)
    stdin = "".join(f"{digest.hex()} {signature.hex()}\n" for digest, signature in cases)
    # recovery, the key's table with the RAM comb for G, both tables in one run
    for args in ([public], [public, str(table)], [public, str(table), str(g_table)]):
        got = [int(line) for line in _run("verify", *args, stdin=stdin)]
        assert got == expected, args


@pytest.mark.parametrize("plain", [False, True], ids=["viper", "plain"])
def test_every_vector_holds_signing_with_the_flash_table(g_table: Path, plain: bool) -> None:
    result = run_micropython(MPY_TESTS / "test_vectors.py", env={
        "NANOTOLL_FIRMWARE_PLAIN": "1" if plain else "0",
        "NANOTOLL_COMB_TABLE": str(g_table),
    })
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "comb table ok"
    assert ("_field_plain" in lines[-1]) == plain
    assert lines[-1].endswith("- 0 problems")


BOOT = """
import sys, wallet, secp256k1
from binascii import unhexlify
rom, folder = sys.argv[1], sys.argv[2] or None
try:
    wallet.use_tables(folder, unhexlify(sys.argv[3]), None, print, rom)
except secp256k1.TableError as exc:
    print("boot refused")
try:
    secp256k1.sign(bytes(range(1, 33)), bytes(32))
    print("signed")
except secp256k1.TableError:
    print("sign refused")
"""


@pytest.mark.parametrize(("damaged", "folder", "expected"), [
    (False, False, ["crypto: comb table {rom} ok", "signed"]),
    (True, False, ["crypto: comb table in ROMFS refused:", "boot refused", "sign refused"]),
    (True, True, ["crypto: comb table in ROMFS refused:", "crypto: comb table {folder}/g.tbl "
                  "rebuilt (", "signed"]),
])
def test_boot_takes_the_romfs_table_or_passes_over_a_bad_one(
        g_table: Path, tmp_path: Path, damaged: bool, folder: bool, expected: list[str]) -> None:
    from nanotoll.bench.provider import PROVIDER_KEY, addr_hex

    rom = _damaged(g_table, tmp_path, "flipped") if damaged else g_table
    tables = tmp_path / "tables"
    script = tmp_path / "boot.py"
    script.write_text(BOOT)
    result = run_micropython(script, str(rom), str(tables) if folder else "",
                             addr_hex(PROVIDER_KEY))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(expected), lines
    for line, want in zip(lines, expected, strict=True):
        assert line.startswith(want.format(rom=rom, folder=tables)), (line, want)
