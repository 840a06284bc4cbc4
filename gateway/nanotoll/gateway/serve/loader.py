"""Finding and starting the product plugins a config names.

A product's ``kind`` is, in this order: a built-in's name, the name of an entry point in
the group ``nanotoll.products`` (an installed plugin package), or ``module:Class``. Every
way ends at a class built with a :class:`ProductContext`; the built-ins are found by
``module:Class`` like any other. Anything that goes wrong while loading or starting a
plugin is a :class:`ProductLoadError` naming the product and its kind: the gateway refuses
to start with it, and a reload that meets one keeps the products it runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from ...protocol.messages import PRODUCT_NAME
from .base import ENTRY_POINT_GROUP, ProductContext, ProductPlugin
from .guard import DEFAULT_TIMEOUT, GuardedProduct

BUILTINS: dict[str, str] = {
    "weather": "nanotoll.gateway.serve.weather:WeatherProvider",
    "nav": "nanotoll.gateway.serve.navigation:NavigationProvider",
    "navigation": "nanotoll.gateway.serve.navigation:NavigationProvider",
    "route": "nanotoll.gateway.serve.route:RouteProvider",
    "route_access": "nanotoll.gateway.serve.route:RouteProvider",
}
MAX_DESCRIPTION = 64


class ProductLoadError(ValueError):
    """A product whose plugin cannot be found, built or started."""


@dataclass(frozen=True, slots=True)
class ProductSpec:
    """What the config says of one product (price and description may be left to the
    plugin)."""

    name: str
    kind: str
    price: int | None = None
    description: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoadedProduct:
    name: str
    price: int
    description: str
    provider: GuardedProduct


def find_plugin(kind: str) -> Callable[[ProductContext], ProductPlugin]:
    """The plugin class (or factory) a ``kind`` names."""
    target = BUILTINS.get(kind)
    if target is None and ":" not in kind:
        found = entry_points(group=ENTRY_POINT_GROUP, name=kind)
        if not found:
            raise ProductLoadError(
                f"unknown kind {kind!r}: not a built-in ({', '.join(sorted(BUILTINS))}), "
                f"no entry point of that name in {ENTRY_POINT_GROUP}, not module:Class")
        try:
            return next(iter(found)).load()  # type: ignore[no-any-return]
        except Exception as exc:
            raise ProductLoadError(f"entry point {kind!r} of {ENTRY_POINT_GROUP} failed to "
                                   f"load: {type(exc).__name__}: {exc}") from exc
    module_name, _, attribute = (target or kind).partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ProductLoadError(f"cannot import {module_name}: {type(exc).__name__}: {exc}"
                               ) from exc
    try:
        return getattr(module, attribute)  # type: ignore[no-any-return]
    except AttributeError:
        raise ProductLoadError(f"{module_name} has no {attribute}") from None


def load_product(spec: ProductSpec, separator: bytes, sign: Callable[[bytes], bytes]
                 ) -> LoadedProduct:
    """Build and start one product's plugin; ProductLoadError names it on any failure."""
    try:
        plugin_class = find_plugin(spec.kind)
        plugin = plugin_class(ProductContext(spec.name, dict(spec.options), separator, sign))
        for attribute in ("params", "serve"):
            if not hasattr(plugin, attribute):
                raise ProductLoadError(f"the plugin has no {attribute}")
        price = spec.price if spec.price is not None else getattr(plugin, "price", None)
        if not isinstance(price, int) or isinstance(price, bool) or price < 1:
            raise ProductLoadError(f"no price: the config gives none and the plugin's is "
                                   f"{price!r}")
        description = spec.description if spec.description is not None \
            else str(getattr(plugin, "description", ""))
        if len(description) > MAX_DESCRIPTION:
            raise ProductLoadError(f"description longer than {MAX_DESCRIPTION} characters")
        start = getattr(plugin, "start", None)
        if start is not None:
            start()
    except ProductLoadError as exc:
        raise ProductLoadError(f"product {spec.name} (kind {spec.kind}): {exc}") from exc
    except Exception as exc:
        raise ProductLoadError(f"product {spec.name} (kind {spec.kind}): "
                               f"{type(exc).__name__}: {exc}") from exc
    return LoadedProduct(spec.name, price, description,
                         GuardedProduct(spec.name, plugin, spec.timeout,
                                        inline=spec.kind in BUILTINS))


def load_products(specs: Iterable[ProductSpec], separator: bytes,
                  sign: Callable[[bytes], bytes]) -> dict[str, LoadedProduct]:
    """Every product, or none: those started before a failure are stopped again."""
    loaded: dict[str, LoadedProduct] = {}
    try:
        for spec in specs:
            if not PRODUCT_NAME.fullmatch(spec.name):
                raise ProductLoadError(f"product name {spec.name!r} is not [a-z][a-z0-9_]{{0,31}}")
            loaded[spec.name] = load_product(spec, separator, sign)
    except BaseException:
        close_products(loaded.values())
        raise
    return loaded


def close_products(products: Iterable[LoadedProduct]) -> None:
    for product in products:
        product.provider.close()
