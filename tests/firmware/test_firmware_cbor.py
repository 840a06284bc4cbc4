"""The firmware's strict CBOR under MicroPython against the CPython reference.

Random valid messages, the same messages damaged byte by byte, and random bytes
go through both decoders: they must accept the same items, re-encode them to the
same bytes, and reject the rest for the same reason.
"""

from __future__ import annotations

import random
from typing import Any

from support.firmware_support import MPY_TESTS, run_micropython
from nanotoll.protocol import cbor as reference

SCRIPT = MPY_TESTS / "cbor_batch.py"


def _text(rng: random.Random) -> str:
    alphabet = "az09_ -éß€😀\u07ff\u0800\uffff\U00010000\U0010ffff"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))


def _value(rng: random.Random, depth: int) -> Any:
    kinds = ["int", "neg", "big", "bytes", "text", "bool", "null"]
    if depth < 7:
        kinds += ["array", "map"]
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice(
            [
                0,
                1,
                23,
                24,
                255,
                256,
                65535,
                65536,
                2**32 - 1,
                2**32,
                2**64 - 1,
                rng.randrange(0, 2**64),
            ]
        )
    if kind == "neg":
        return -rng.choice(
            [
                1,
                24,
                25,
                256,
                257,
                65536,
                65537,
                2**32,
                2**32 + 1,
                2**64,
                rng.randrange(1, 2**64 + 1),
            ]
        )
    if kind == "big":
        return rng.randrange(0, 1 << rng.choice([8, 16, 32, 64]))
    if kind == "bytes":
        return rng.randbytes(rng.choice([0, 1, 23, 24, 76, 255, 256, 300]))
    if kind == "text":
        return _text(rng)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "array":
        return [_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 3, 24, 25]))]
    keys: dict[Any, Any] = {}
    for _ in range(rng.randrange(0, 6)):
        key = rng.choice([rng.randrange(-300, 70000), _text(rng), rng.randbytes(rng.randrange(4))])
        keys[key] = _value(rng, depth + 1)
    return keys


def _items(rng: random.Random) -> list[bytes]:
    items = []
    for _ in range(300):
        encoded = reference.dumps(_value(rng, 1))
        items.append(encoded)
        damaged = bytearray(encoded)
        for _ in range(rng.randrange(1, 3)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        items.append(bytes(damaged))
        items.append(encoded[: rng.randrange(len(encoded) + 1)])
        items.append(encoded + rng.randbytes(rng.randrange(1, 3)))
    for _ in range(600):
        items.append(rng.randbytes(rng.randrange(0, 12)))
    for _ in range(300):
        # text strings with random, mostly invalid, UTF-8 inside
        body = rng.randbytes(rng.randrange(1, 6))
        items.append(bytes([0x60 | len(body)]) + body)
    items += [b"\x81" * depth + b"\x00" for depth in range(1, 12)]
    items.append(b"\x59\x20\x00" + bytes(8192))
    items.append(b"\x41\x00" * 2 + b"\x00" * 8191)
    return items


def _reference_outcome(item: bytes) -> str:
    try:
        return "OK " + reference.dumps(reference.loads(item)).hex()
    except reference.CBORError as exc:
        return "ERR " + exc.reason


def test_firmware_decoder_agrees_with_the_reference() -> None:
    items = _items(random.Random(8949))
    result = run_micropython(SCRIPT, stdin="".join("x" + item.hex() + "\n" for item in items))
    assert result.returncode == 0, result.stderr
    outcomes = result.stdout.splitlines()
    assert len(outcomes) == len(items)
    accepted = 0
    for item, got in zip(items, outcomes, strict=True):
        assert got == _reference_outcome(item), item.hex()
        accepted += got.startswith("OK")
    # the batch must exercise both sides
    assert 300 <= accepted <= len(items) - 600
