"""A gateway pipeline on a real SQLite ledger, channels from an in-memory reader: what the
rule and pipeline tests drive."""

from __future__ import annotations

import time
from pathlib import Path

from nanotoll.chain.cache import ChannelCache, MemoryChannels
from nanotoll.chain.channel import ChannelState
from nanotoll.gateway.catalog import build_catalog
from nanotoll.gateway.pipeline import Outcome, Pipeline
from nanotoll.gateway.rules import Rules
from nanotoll.gateway.serve import ProviderContext, build_providers
from nanotoll.ledger.sqlite import SQLiteLedger
from nanotoll.protocol.messages import Response, decode_response
from nanotoll.protocol.signing import address_of

from support.gateway_support import (
    DEVICE_KEY,
    OTHER_KEY,
    PROVIDER_KEY,
    Device,
    hex_address,
    make_config,
)

NOW = int(time.time())


def state(channel_id: int, *, signer: bytes = DEVICE_KEY, payee: bytes = PROVIDER_KEY,
          deposit: int = 1_000_000, paid: int = 0, expiry: int = NOW + 86_400) -> ChannelState:
    return ChannelState(channel_id, address_of(signer), address_of(payee), "0x" + "11" * 20,
                        deposit, paid, expiry, route=1)


class Rig:
    """Channels 1 (plain), 2 (pays another provider), 3 (expires inside the margin),
    4 (a 5,000 deposit) and 5 (9,000 already paid on chain)."""

    def __init__(self, tmp_path: Path) -> None:
        self.config = make_config(tmp_path)
        self.channels = MemoryChannels(
            state(1), state(2, payee=OTHER_KEY), state(3, expiry=NOW + 3_000),
            state(4, deposit=5_000), state(5, paid=9_000))
        self.ledger = SQLiteLedger(tmp_path / "ledger.db")
        separator = Device(1).separator
        catalog = build_catalog(self.config.catalog, PROVIDER_KEY, separator, NOW)
        providers = build_providers(self.config.catalog.products,
                                    ProviderContext(PROVIDER_KEY, separator))
        self.rules = Rules(hex_address(PROVIDER_KEY), separator, catalog, providers,
                           ChannelCache(self.channels), 3600)
        self.pipeline = Pipeline(self.rules, self.ledger, PROVIDER_KEY)

    def send(self, device: Device, payload: bytes, topic: str | None = None
             ) -> tuple[Outcome, Response]:
        outcome = self.pipeline.handle(topic or device.topic, payload)
        return outcome, decode_response(outcome.response)
