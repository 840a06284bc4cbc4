"""Nothing the spec refuses is ever charged: every mutated request of the conformance
suite driven through the gateway's request pipeline, on a real SQLite ledger.

The voucher in every mutated request is the device's own valid signature for a real
channel, so only the schema stands between the request and a charge.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nanotoll.chain.channels import ChannelCache, ChannelState, MemoryChannels
from nanotoll.gateway.catalog import build_catalog
from nanotoll.gateway.pipeline import Pipeline
from nanotoll.gateway.rules import Rules
from nanotoll.gateway.serve import ProviderContext, build_providers
from nanotoll.ledger.sqlite import SQLiteLedger
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import decode_response
from nanotoll.protocol.signing import address_of
from nanotoll.protocol.topics import request_topic
from support.gateway_support import DEVICE_KEY, PROVIDER_KEY, hex_address, make_config
from support.shapes import CATALOG_SEQ, CHANNEL, CUMULATIVE, SEPARATOR, all_cases, request_bytes

TOPIC = request_topic(hex_address(PROVIDER_KEY), hex_address(DEVICE_KEY))
SCHEMA_CODES = {ErrorCode.MALFORMED, ErrorCode.TOO_LARGE, ErrorCode.UNSUPPORTED_VERSION}


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    now = int(time.time())
    config = make_config(tmp_path, catalog={"seq": CATALOG_SEQ})
    channel = ChannelState(CHANNEL, address_of(DEVICE_KEY), address_of(PROVIDER_KEY),
                           "0x" + "11" * 20, 10**9, 0, now + 86_400, route=1)
    catalog = build_catalog(config.catalog, PROVIDER_KEY, SEPARATOR, now)
    providers = build_providers(config.catalog.products, ProviderContext(PROVIDER_KEY, SEPARATOR))
    rules = Rules(hex_address(PROVIDER_KEY), SEPARATOR, catalog, providers,
                  ChannelCache(MemoryChannels(channel)), 3600)
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    yield Pipeline(rules, ledger, PROVIDER_KEY)
    ledger.close()


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
