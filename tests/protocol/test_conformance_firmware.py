"""The conformance suite's messages through the firmware, on MicroPython's unix port.

Two levels: the firmware's CBOR decoder gives the CPython decoder's verdict on every
mutated message (the same item, or the same refusal reason); and the firmware's agent
accepts a catalog or a purchase's response exactly when the spec accepts it and it is
the one the device waits for, and signs no request whose params the spec refuses.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from eth_utils import keccak
from nanotoll.protocol import cbor
from nanotoll.protocol.errors import ErrorCode
from support.firmware_support import MPY_TESTS, VECTORS, run_micropython
from support.gateway_support import CHAIN_ID, DEVICE_KEY, ESCROW
from support.shapes import (
    CHANNEL,
    PROVIDER,
    SAMPLES,
    Case,
    Raw,
    all_cases,
    encode,
    param_value_rule,
    request_bytes,
)


@functools.cache
def cases() -> tuple[Case, ...]:
    return tuple(all_cases())


def python_cbor_verdict(data: bytes) -> str:
    try:
        return "OK " + cbor.dumps(cbor.loads(data)).hex()
    except cbor.CBORError as exc:
        return "ERR " + exc.reason


def test_the_firmware_cbor_decoder_agrees_on_every_mutated_message() -> None:
    datas = sorted({case.data for case in cases()})
    result = run_micropython(MPY_TESTS / "cbor_batch.py",
                             stdin="".join(f"x{data.hex()}\n" for data in datas))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(datas)
    wrong = [f"{data.hex()[:80]}: firmware {got}, CPython {python_cbor_verdict(data)}"
             for data, got in zip(datas, lines, strict=True)
             if got != python_cbor_verdict(data)]
    assert not wrong, f"{len(wrong)} disagreements:\n" + "\n".join(wrong[:40])


def device_verdict(case: Case) -> str:
    """The spec's answer for a device: it takes a message that decodes and is the one it
    waits for (its provider, its channel, amount and request, a valid signature)."""
    accepted = case.verdict == ErrorCode.OK and case.binding_kept
    if case.kind == "response":  # an error response is no purchase either
        accepted = accepted and cbor.loads(case.data)[2] == 0
    return "ok" if accepted else "refused"


def run_agent(tmp_path: Path, lines: list[str]) -> list[str]:
    args = [str(tmp_path), DEVICE_KEY.hex(), str(CHAIN_ID), ESCROW[2:], PROVIDER.hex(),
            str(CHANNEL), request_bytes().hex()]
    result = run_micropython(MPY_TESTS / "conformance_mp.py", *args, stdin="".join(lines),
                             timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    return result.stdout.splitlines()


def test_the_firmware_agent_takes_exactly_what_the_spec_accepts(tmp_path: Path) -> None:
    chosen = [case for case in cases() if case.kind in ("catalog", "response")]
    verdicts = run_agent(tmp_path, [f"{case.kind} x{case.data.hex()}\n" for case in chosen])
    assert len(verdicts) == len(chosen)
    wrong = [f"{case.name}: firmware {got}, spec {device_verdict(case)}"
             for case, got in zip(chosen, verdicts, strict=True) if got != device_verdict(case)]
    assert not wrong, f"{len(wrong)} disagreements:\n" + "\n".join(wrong[:60])
    taken = {case.kind for case, got in zip(chosen, verdicts, strict=True) if got == "ok"}
    assert taken == {"catalog", "response"}  # both kinds do get accepted


def test_the_firmware_signs_no_request_with_params_the_spec_refuses(tmp_path: Path) -> None:
    samples = [sample for sample in SAMPLES if not isinstance(sample.value, Raw)]
    lines = [f"params x{encode({'alt': s.value, 'lat': 1, 'lon': 2}).hex()}\n" for s in samples]
    verdicts = run_agent(tmp_path, lines)
    wrong = []
    for sample, got in zip(samples, verdicts, strict=True):
        want = "signed" if param_value_rule(sample.value) == ErrorCode.OK else "refused BAD_PARAMS"
        if got != want:
            wrong.append(f"params value {sample.label}: firmware {got}, want {want}")
    assert not wrong, "\n".join(wrong)


def test_the_template_receipt_is_for_the_template_request() -> None:
    response = cbor.loads(next(c.data for c in cases() if c.name == "response template = as is"))
    assert response[3][1][2] == keccak(request_bytes())


def test_the_firmware_refuses_the_invalid_message_vectors(tmp_path: Path) -> None:
    """tests/vectors/cbor_invalid.json "messages": catalogs and responses are not taken,
    params the spec refuses are not signed (the firmware reads no requests)."""
    cases = json.loads((VECTORS / "cbor_invalid.json").read_text())["messages"]
    lines, names = [], []
    for case in cases:
        raw = bytes.fromhex(case["hex"])
        if case["kind"] == "policy":
            continue  # test_conformance_policy.py applies them on the device
        if case["kind"] != "request":
            lines.append(f"{case['kind']} x{raw.hex()}\n")
        elif "params" in case["name"]:
            lines.append(f"params x{cbor.dumps(cbor.loads(raw)[3]).hex()}\n")
        else:
            continue
        names.append(case["name"])
    assert len(names) >= 15
    verdicts = run_agent(tmp_path, lines)
    wrong = [f"{name}: {got}" for name, got in zip(names, verdicts, strict=True)
             if not got.startswith("refused")]
    assert not wrong, "\n".join(wrong)
