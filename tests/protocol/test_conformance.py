"""Conformance by construction: every field of every message, every CBOR type and every
boundary in that position (tests/support/shapes.py), judged by the CPython decoders.

The strict decoder must give the spec's verdict (accept, or refuse with the spec's
code); the fast request reader may decline anything, but what it takes must be a request
the spec accepts, read as the strict decoder reads it.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable

import pytest
from nanotoll.protocol import messages
from nanotoll.protocol.errors import ErrorCode, ProtocolError
from support.shapes import SAMPLES, Case, all_cases

DECODERS: dict[str, Callable[[bytes], object]] = {
    "request": messages.decode_request,
    "response": messages.decode_response,
    "catalog": messages.decode_catalog,
}


@functools.cache
def cases() -> tuple[Case, ...]:
    return tuple(all_cases())


def verdict(decode: Callable[[bytes], object], data: bytes) -> ErrorCode | str:
    try:
        decode(data)
    except ProtocolError as exc:
        return exc.code
    except Exception as exc:  # anything but ProtocolError is a crash, and a finding
        return f"crash {exc!r}"
    return ErrorCode.OK


def disagreements(decode: Callable[[bytes], object], kind: str) -> list[str]:
    found = []
    for case in cases():
        if case.kind == kind:
            got = verdict(decode, case.data)
            if got != case.verdict:
                shown = got.name if isinstance(got, ErrorCode) else got
                found.append(f"{case.name}: {shown}, spec says {case.verdict.name}")
    return found


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_the_decoder_gives_the_spec_verdict(kind: str) -> None:
    found = disagreements(DECODERS[kind], kind)
    assert not found, f"{len(found)} disagreements:\n" + "\n".join(found[:60])


def test_the_strict_request_decoder_alone_gives_the_spec_verdict() -> None:
    """decode_request tries the fast reader first; without it, the strict path answers."""
    found = disagreements(messages._decode_request_strictly, "request")
    assert not found, "\n".join(found[:60])


def test_the_fast_reader_takes_only_what_the_spec_accepts_and_reads_it_the_same() -> None:
    taken = 0
    for case in cases():
        if case.kind != "request":
            continue
        fast = messages._read_common_request(case.data)
        if fast is None:
            continue
        taken += 1
        assert case.verdict == ErrorCode.OK, case.name
        assert fast == messages._decode_request_strictly(case.data), case.name
    assert taken >= 40  # the integer-params requests: the reader is not declining everything


def test_every_field_meets_every_sample_and_every_verdict_occurs() -> None:
    per_field = Counter((case.kind, case.field) for case in cases())
    sampled = [field for field, count in per_field.items() if count == len(SAMPLES)]
    assert len(sampled) >= 30
    verdicts = {(case.kind, case.verdict) for case in cases()}
    for kind in DECODERS:
        for code in (ErrorCode.OK, ErrorCode.MALFORMED, ErrorCode.TOO_LARGE,
                     ErrorCode.UNSUPPORTED_VERSION):
            assert (kind, code) in verdicts, (kind, code)
    kinds = {type(sample.value).__name__ for sample in SAMPLES}
    assert {"int", "bytes", "str", "list", "dict", "bool", "NoneType", "Raw"} <= kinds


def test_the_known_finding_is_refused() -> None:
    """A request whose version is text was served and charged; params null too."""
    named = {case.name: case for case in cases()}
    for name in ("request version = text 'a'", "request version = true",
                 "request params value = null", "request params value = array [[1]]",
                 "response receipt channel_id = true", "catalog unit_price = true"):
        assert verdict(DECODERS[named[name].kind], named[name].data) == ErrorCode.MALFORMED, name
