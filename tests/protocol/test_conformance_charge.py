"""Nothing the spec refuses is ever charged: every mutated request of the conformance
suite driven through the gateway's request pipeline, on a real SQLite ledger.

The voucher in every mutated request is the device's own valid signature for a real
channel, so only the schema stands between the request and a charge.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nanotoll.gateway.pipeline import Pipeline
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import decode_response
from support.gateway_support import Device
from support.pipeline_rig import Rig
from support.shapes import CHANNEL, CUMULATIVE, all_cases, request_bytes

SCHEMA_CODES = {ErrorCode.MALFORMED, ErrorCode.TOO_LARGE, ErrorCode.UNSUPPORTED_VERSION}


TOPIC = Device(CHANNEL).topic


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    rig = Rig(tmp_path)  # channel 1 is the shapes' channel: same signer, payee and domain
    yield rig.pipeline
    rig.ledger.close()


def test_refused_requests_get_the_spec_code_and_charge_nothing(pipeline: Pipeline) -> None:
    refused = [case for case in all_cases()
               if case.kind == "request" and case.verdict != ErrorCode.OK]
    assert len(refused) > 500
    wrong = []
    for case in refused:
        outcome = pipeline.handle(TOPIC, case.data)
        if outcome.code != case.verdict or outcome.increment:
            wrong.append(f"{case.name}: {outcome.code.name}, charged {outcome.increment}")
        assert decode_response(outcome.response).code == outcome.code
    assert not wrong, "\n".join(wrong[:60])
    assert pipeline.ledger.lookup(CHANNEL) is None
    assert pipeline.ledger.totals()["purchases"] == 0
    # The same voucher still buys once the request is well formed: the rig can charge.
    outcome = pipeline.handle(TOPIC, request_bytes())
    assert outcome.code == ErrorCode.OK and outcome.increment == CUMULATIVE
    assert pipeline.ledger.totals()["purchases"] == 1


def test_accepted_shapes_pass_the_schema_rule(pipeline: Pipeline) -> None:
    """What the spec accepts is never refused as MALFORMED, TOO_LARGE or a version:
    it goes on to the later rules (an unknown product, other params, a stale voucher)."""
    accepted = [case for case in all_cases()
                if case.kind == "request" and case.verdict == ErrorCode.OK]
    assert len(accepted) > 100
    wrong = [f"{case.name}: {outcome.code.name}" for case in accepted
             if (outcome := pipeline.handle(TOPIC, case.data)).code in SCHEMA_CODES]
    assert not wrong, "\n".join(wrong[:60])
