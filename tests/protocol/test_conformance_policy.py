"""Conformance of the owner-signed policy: every field, every CBOR type and boundary in
that position (tests/support/policy_shapes.py), judged by CPython's ``decode_policy`` and
by the firmware's keeper on the unix port.

The firmware must reach the spec's verdict, reason included, and a refused policy must
leave the device as it was. CPython's ``decode_policy`` reads the bytes and checks the
limits (budget within the deposit) but knows no device, so it must take exactly the
well-formed, consistent policies, write them back to the same bytes, and recover the
owner exactly from the policies the owner signed.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path

from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.policy import PolicyError, decode_policy
from nanotoll.protocol.signing import SignatureError
from support.firmware_support import MPY_TESTS, VECTORS, run_micropython
from support.gateway_support import CHAIN_ID, ESCROW
from support.policy_shapes import (
    APPLIED_SEQ,
    FIELDS,
    OWNER,
    REASONS,
    SIGNED,
    PolicyCase,
    policy_cases,
    signed,
    template,
)
from support.shapes import CHANNEL, SAMPLES, SEPARATOR, encode


@functools.cache
def cases() -> tuple[PolicyCase, ...]:
    return tuple(policy_cases())


def cpython_verdict(data: bytes) -> str:
    try:
        policy = decode_policy(data)
    except PolicyError:
        return "refused"
    except Exception as exc:  # anything but PolicyError is a crash, and a finding
        return f"crash {exc!r}"
    if policy.encode() != data:
        return "accepted, written back differently"
    try:
        owner = policy.signer(SEPARATOR) == OWNER
    except (SignatureError, ValueError):
        owner = False
    return "owner's" if owner else "another signer's"


def spec_cpython_verdict(case: PolicyCase) -> str:
    if not case.consistent:
        return "refused"
    return "owner's" if case.owner_signed else "another signer's"


def test_decode_policy_takes_exactly_the_consistent_policies() -> None:
    wrong = [f"{case.name}: {got}, spec says {spec}" for case in cases()
             if (got := cpython_verdict(case.data)) != (spec := spec_cpython_verdict(case))]
    assert not wrong, f"{len(wrong)} disagreements:\n" + "\n".join(wrong[:60])


def run_keeper(tmp_path: Path, datas: list[bytes]) -> list[str]:
    in_force = encode(signed(template(seq=APPLIED_SEQ)))
    result = run_micropython(
        MPY_TESTS / "policy_conformance_mp.py", str(tmp_path), OWNER.hex(), str(CHAIN_ID),
        ESCROW[2:], str(CHANNEL), str(SIGNED),
        stdin=in_force.hex() + "\n" + "".join(f"x{data.hex()}\n" for data in datas),
        timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(datas)
    return lines


def want(case: PolicyCase) -> str:
    return "applied" if case.reason == "applied" else f"refused {case.reason}"


def test_the_firmware_reaches_the_spec_verdict_and_a_refusal_changes_nothing(
        tmp_path: Path) -> None:
    verdicts = run_keeper(tmp_path, [case.data for case in cases()])
    wrong = [f"{case.name}: firmware {got}, spec {want(case)}"
             for case, got in zip(cases(), verdicts, strict=True) if got != want(case)]
    assert not wrong, f"{len(wrong)} disagreements:\n" + "\n".join(wrong[:60])


def test_every_field_meets_every_sample_and_every_reason_occurs() -> None:
    per_field = Counter(case.field for case in cases())
    for name, _ in FIELDS:
        assert per_field[name] == len(SAMPLES), name
    assert set(REASONS) == {case.reason for case in cases()}
    assert {True, False} == {case.consistent for case in cases()}


def test_the_invalid_policy_vectors_are_refused_as_malformed(tmp_path: Path) -> None:
    """tests/vectors/cbor_invalid.json, kind "policy": the firmware refuses each as
    malformed (CPython's check is in test_vectors_python.py)."""
    invalid = [case for case in json.loads((VECTORS / "cbor_invalid.json").read_text())
               ["messages"] if case["kind"] == "policy"]
    assert len(invalid) >= 5
    assert all(case["code"] == ErrorCode.MALFORMED.name for case in invalid)
    verdicts = run_keeper(tmp_path, [bytes.fromhex(case["hex"]) for case in invalid])
    assert verdicts == ["refused malformed"] * len(invalid), list(zip(
        [case["name"] for case in invalid], verdicts, strict=True))
