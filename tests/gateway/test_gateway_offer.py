"""A reload's offer: its catalog's seq goes above the running one, renewals count up from
there, and requests priced from the replaced catalog are served at its prices until its
valid_until, then answered PRICE_CHANGED (docs/operator.md, reloading)."""

from __future__ import annotations

from pathlib import Path

from nanotoll.chain.cache import ChannelCache, MemoryChannels
from nanotoll.gateway.catalog import overlap_of
from nanotoll.gateway.offer import Offer
from nanotoll.gateway.pipeline import Pipeline
from nanotoll.gateway.rules import Rules
from nanotoll.gateway.serve import ProviderContext
from nanotoll.ledger.sqlite import SQLiteLedger
from nanotoll.protocol.errors import ErrorCode
from nanotoll.protocol.messages import decode_response
from support.gateway_support import PROVIDER_KEY, Device, hex_address, make_config
from support.pipeline_rig import NOW, state

ANCHOR = NOW - NOW % 3600


def offer(tmp_path: Path, price: int, floor: int = 0, now: int = NOW) -> Offer:
    config = make_config(tmp_path, catalog={"seq": 3, "validity": 3600, "products": [
        {"name": "weather", "price": price}]})
    return Offer(config.catalog, ProviderContext(PROVIDER_KEY, Device(1).separator), ANCHOR,
                 now, floor)


def test_the_reloaded_catalog_outranks_the_running_one_and_keeps_counting(tmp_path: Path
                                                                          ) -> None:
    running = offer(tmp_path, 1500)
    first = running.catalog_at(NOW)
    reloaded = offer(tmp_path, 2000, floor=first.seq)
    catalog = reloaded.catalog_at(NOW)
    assert catalog.seq == first.seq + 1
    assert [p.unit_price for p in catalog.products] == [2000]
    later = reloaded.catalog_at(NOW + 3600 - overlap_of(3600))  # the next renewal window
    assert later.seq == catalog.seq + 1
    running.close()
    reloaded.close()


def test_the_replaced_prices_hold_until_their_catalog_expires(tmp_path: Path) -> None:
    clock = [float(NOW)]
    running = offer(tmp_path, 1500)
    old = running.catalog_at(NOW)
    channels = ChannelCache(MemoryChannels(state(1, expiry=NOW + 30 * 86_400)))
    rules = Rules(hex_address(PROVIDER_KEY), Device(1).separator, old, running.providers,
                  channels, 3600)
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    pipeline = Pipeline(rules, ledger, PROVIDER_KEY, clock=lambda: clock[0])
    reloaded = offer(tmp_path, 2000, floor=old.seq)
    new = reloaded.catalog_at(NOW)
    rules.set_offer(new, reloaded.providers)
    device = Device(1)

    def buy(seq: int, price: int) -> ErrorCode:
        params = {"lat": 1, "lon": 2, "t": int(clock[0])}
        payload = device.request(params=params, price=price, seq=seq)
        return decode_response(pipeline.handle(device.topic, payload).response).code

    assert buy(old.seq, 1500) == ErrorCode.OK  # priced just before the reload
    assert buy(new.seq, 2000) == ErrorCode.OK
    assert buy(new.seq, 1500) == ErrorCode.PRICE_CHANGED
    clock[0] = old.valid_until
    assert buy(old.seq, 1500) == ErrorCode.PRICE_CHANGED  # the old offer has run out
    assert buy(new.seq, 2000) == ErrorCode.OK
    ledger.close()
    running.close()
    reloaded.close()
