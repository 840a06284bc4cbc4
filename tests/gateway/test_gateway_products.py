"""Product plugins: found by kind (built-in, entry point, module:Class), checked by their
params schema, and served behind the guard: a plugin that raises, hangs, answers too much
or not bytes costs its request a PROVIDER_ERROR and charges nothing; one that fails to
load is refused with its name."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nanotoll.chain.cache import ChannelCache, MemoryChannels
from nanotoll.gateway.catalog import build_catalog
from nanotoll.gateway.config import ConfigError
from nanotoll.gateway.offer import Offer
from nanotoll.gateway.pipeline import Pipeline
from nanotoll.gateway.rules import Rules
from nanotoll.gateway.serve import BUILTINS, GuardedProduct, ProductLoadError, ProviderContext
from nanotoll.gateway.serve.base import ProductContext
from nanotoll.gateway.serve.loader import ProductSpec, load_product
from nanotoll.gateway.serve.params import Param, check_params
from nanotoll.ledger.sqlite import SQLiteLedger
from nanotoll.protocol import cbor
from nanotoll.protocol.errors import ErrorCode, ProtocolError
from nanotoll.protocol.messages import decode_response
from support.gateway_support import PROVIDER_KEY, Device, hex_address, make_config
from support.pipeline_rig import NOW, state
from support.sample_products import Echo, Hangs, NotBytes, Raises

SAMPLES = "support.sample_products"


def products(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "weather", "price": 1500}, *extra]


class Shop:
    """A pipeline whose catalog sells ``products`` (seq 3), on a SQLite ledger."""

    def __init__(self, tmp_path: Path, items: list[dict[str, Any]]) -> None:
        config = make_config(tmp_path, catalog={"seq": 3, "products": items})
        self.device = Device(1)
        separator = self.device.separator
        self.offer = Offer(config.catalog, ProviderContext(PROVIDER_KEY, separator), NOW, NOW)
        catalog = build_catalog(self.offer.config, PROVIDER_KEY, separator, NOW)
        self.ledger = SQLiteLedger(tmp_path / "ledger.db")
        rules = Rules(hex_address(PROVIDER_KEY), separator, catalog, self.offer.providers,
                      ChannelCache(MemoryChannels(state(1))), 3600)
        self.pipeline = Pipeline(rules, self.ledger, PROVIDER_KEY)

    def buy(self, product: str, params: dict[str, Any], price: int,
            cumulative: int | None = None) -> tuple[ErrorCode, bytes]:
        payload = self.device.request(product, params, price=price, cumulative=cumulative)
        outcome = self.pipeline.handle(self.device.topic, payload)
        response = decode_response(outcome.response)
        return response.code, response.data or b""

    def accepted(self) -> int:
        record = self.ledger.lookup(1)
        return record.cumulative if record else 0

    def close(self) -> None:
        self.offer.close()
        self.ledger.close()


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    shop = Shop(tmp_path, products(
        {"name": "echo", "kind": f"{SAMPLES}:Echo", "options": {"tag": "x"}},
        {"name": "raises", "kind": f"{SAMPLES}:Raises", "price": 10},
        {"name": "hangs", "kind": f"{SAMPLES}:Hangs", "price": 10, "timeout": 0.3},
        {"name": "large", "kind": f"{SAMPLES}:TooLarge", "price": 10},
        {"name": "notbytes", "kind": f"{SAMPLES}:NotBytes", "price": 10}))
    yield shop
    hangs = shop.offer.products["hangs"].provider.plugin
    assert isinstance(hangs, Hangs)
    hangs.release.set()
    shop.close()


def test_a_module_class_plugin_is_sold_at_its_own_price_with_its_options(shop: Shop) -> None:
    echo = shop.offer.products["echo"]
    assert (echo.price, echo.description) == (700, "params echoed")
    plugin = echo.provider.plugin
    assert isinstance(plugin, Echo) and plugin.started == 1
    code, data = shop.buy("echo", {"n": 5}, 700)
    assert code == ErrorCode.OK
    served = cbor.loads(data)
    assert (served["n"], served["tag"]) == (5, "x") and abs(served["t"] - time.time()) < 60
    assert shop.accepted() == 700
    shop.offer.close()
    assert plugin.stopped == 1


@pytest.mark.parametrize("params", [{}, {"n": -1}, {"n": "5"}, {"n": 5, "m": 1}])
def test_the_schema_refuses_bad_params_before_any_charge(shop: Shop,
                                                         params: dict[str, Any]) -> None:
    assert shop.buy("echo", params, 700)[0] == ErrorCode.BAD_PARAMS
    assert shop.accepted() == 0


@pytest.mark.parametrize("product", ["raises", "hangs", "large", "notbytes"])
def test_a_failing_plugin_is_provider_error_and_charges_nothing(shop: Shop,
                                                                product: str) -> None:
    started = time.monotonic()
    assert shop.buy(product, {"n": 1}, 10)[0] == ErrorCode.PROVIDER_ERROR
    assert time.monotonic() - started < 5
    assert shop.accepted() == 0
    # ... and the gateway goes on serving, the same product's neighbours included
    assert shop.buy("weather", {"lat": 1, "lon": 2}, 1500, cumulative=1500)[0] == ErrorCode.OK
    assert shop.accepted() == 1500


@pytest.mark.parametrize(("kind", "named"), [
    ("nonesuch", "unknown kind 'nonesuch'"),
    ("no.such.module:Thing", "cannot import no.such.module"),
    (f"{SAMPLES}:Missing", "has no Missing"),
    (f"{SAMPLES}:FailsToStart", "cannot open the data file"),
    (f"{SAMPLES}:NoPrice", "no price"),
])
def test_a_plugin_that_fails_to_load_is_named(tmp_path: Path, kind: str, named: str) -> None:
    with pytest.raises(ProductLoadError) as caught:
        Shop(tmp_path, products({"name": "extra", "kind": kind}))
    assert f"product extra (kind {kind})" in str(caught.value)
    assert named in str(caught.value)


def test_the_builtins_load_through_the_same_loader_and_run_inline() -> None:
    for kind in BUILTINS:
        loaded = load_product(ProductSpec(kind, kind), bytes(32), lambda d: bytes(64))
        assert loaded.price > 0 and loaded.provider.plugin.params
        assert loaded.provider.inline
        loaded.provider.close()
    plugin = load_product(ProductSpec("echo", f"{SAMPLES}:Echo"), bytes(32), lambda d: d)
    assert not plugin.provider.inline
    plugin.provider.close()


@pytest.mark.parametrize("plugin_class", [Raises, NotBytes])
def test_inline_failures_are_provider_error_too(plugin_class: type[Echo]) -> None:
    guarded = GuardedProduct("x", plugin_class(ProductContext("x")), inline=True)
    with pytest.raises(ProtocolError) as caught:
        guarded.serve({"n": 1}, NOW, bytes(20))
    assert caught.value.code == ErrorCode.PROVIDER_ERROR


def test_a_config_without_price_or_with_bad_options_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="options"):
        make_config(tmp_path, catalog={"seq": 1, "products": [
            {"name": "weather", "options": 3}]})
    config = make_config(tmp_path, catalog={"seq": 1, "products": [{"name": "weather"}]})
    assert config.catalog.products[0].price is None  # the plugin's price is used


def test_param_kinds() -> None:
    schema = {"a": Param("int", low=0, high=9), "b": Param("text", pattern="[A-Z]+"),
              "c": Param("ints", required=False, length=2, low=0, high=5)}
    check_params(schema, {"a": 9, "b": "XY", "c": [0, 5]})
    for bad in ({"a": True, "b": "X"}, {"a": 1, "b": "x"}, {"a": 1, "b": "X", "c": [1]},
                {"a": 1, "b": "X", "c": [1, 6]}, {"a": 1, "b": "X", 7: 1}):
        with pytest.raises(ProtocolError) as caught:
            check_params(schema, bad)
        assert caught.value.code == ErrorCode.BAD_PARAMS
